"""SQLite schema of the run registry. Bump SCHEMA_VERSION and add a migration when it changes."""

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    dataset TEXT NOT NULL,
    arch TEXT NOT NULL,
    method TEXT NOT NULL,
    norm TEXT,
    eps REAL,
    config_json TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT 'trained',
    readonly INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    updated_at REAL NOT NULL,
    epochs_done INTEGER NOT NULL DEFAULT 0,
    final_metrics_json TEXT NOT NULL DEFAULT '{}',
    checkpoint_path TEXT,
    run_dir TEXT,
    pid INTEGER,
    pid_start INTEGER,
    error TEXT
);
CREATE INDEX IF NOT EXISTS runs_dataset ON runs(dataset);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    metrics_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS evaluations (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    config_json TEXT NOT NULL,
    summary_json TEXT NOT NULL,
    table_path TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    run_id TEXT,
    kind TEXT NOT NULL,
    device TEXT NOT NULL DEFAULT 'cpu',
    exclusive INTEGER NOT NULL DEFAULT 1,
    args_json TEXT NOT NULL,
    status TEXT NOT NULL,
    pid INTEGER,
    pid_start INTEGER,
    log_path TEXT,
    progress REAL NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    heartbeat_at REAL,
    error TEXT
);
"""

RUN_STATUSES = ("pending", "running", "completed", "cancelled", "interrupted", "failed", "shipped", "imported")
ACTIVE_STATUSES = ("pending", "running")
JOB_STATUSES = ("queued", "running", "cancelling", "completed", "cancelled", "failed", "interrupted")
JOB_ACTIVE = ("queued", "running", "cancelling")
