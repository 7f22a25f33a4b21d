"""The run registry: SQLite in ATLAS_HOME with WAL and a busy timeout, one short connection per operation.

Short connections keep it safe for several processes (the dashboard, training jobs, the CLI) at once; WAL lets
readers go on while a writer commits, and the busy timeout makes concurrent writers wait instead of failing.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from core.errors import RegistryError
from core.store.schema import ACTIVE_STATUSES, JOB_ACTIVE, SCHEMA, SCHEMA_VERSION
from core.utils import atlas_home

# The longest name a run may have: a rename as a training run's (core.training.config.MAX_NAME takes it from here).
MAX_NAME = 120

log = logging.getLogger(__name__)
BUSY_TIMEOUT_S = 30.0
_JSON_COLUMNS = {"config_json": "config", "final_metrics_json": "final_metrics", "metrics_json": "metrics",
                 "summary_json": "summary", "args_json": "args"}


def process_start(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (Linux), so a reused pid is not mistaken for ours."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int | None, start: int | None = None) -> bool:
    """Whether the process ``pid`` (started at ``start``, when known) still runs; zombies count as dead."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return True
    if fields[0] == "Z":
        return False
    return start is None or int(fields[19]) == start


def decode_row(row: sqlite3.Row) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in row.keys():
        value = row[key]
        if key in _JSON_COLUMNS:
            out[_JSON_COLUMNS[key]] = json.loads(value) if value else {}
        else:
            out[key] = value
    return out


class Registry:
    """Runs, per-epoch metrics, evaluations and jobs. ``Registry()`` opens (and creates) ``ATLAS_HOME/atlas.db``."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        self.home = Path(home).resolve() if home is not None else atlas_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.path = self.home / "atlas.db"
        self.runs_dir = self.home / "runs"
        with self.connect() as con:
            con.executescript(SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        con.row_factory = sqlite3.Row
        try:
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("PRAGMA journal_mode = WAL")
            con.execute("PRAGMA synchronous = NORMAL")
            con.execute("PRAGMA foreign_keys = ON")
            yield con
        finally:
            con.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # runs ---------------------------------------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        return self.runs_dir / run_id

    def create_run(self, run_id: str, *, or_ignore: bool = False, **fields: Any) -> dict[str, Any]:
        """Insert a run (see ``_insert_run`` for the fields); ``or_ignore`` keeps an existing one untouched."""
        with self.transaction() as con:
            self._insert_run(con, run_id, or_ignore=or_ignore, **fields)
        return self.get_run(run_id)

    def _insert_run(self, con: sqlite3.Connection, run_id: str, *, name: str, dataset: str, arch: str,
                    method: str, config: dict[str, Any], norm: str | None = None, eps: float | None = None,
                    status: str = "pending", source: str = "trained", readonly: bool = False,
                    checkpoint_path: str | None = None, final_metrics: dict[str, Any] | None = None,
                    run_dir: str | None = None, or_ignore: bool = False, created_at: float | None = None) -> None:
        now = time.time()
        con.execute(
            f"INSERT {'OR IGNORE ' if or_ignore else ''}INTO runs(id, name, dataset, arch, method, norm, eps,"
            " config_json, status, source, readonly, created_at, updated_at, checkpoint_path, final_metrics_json,"
            " run_dir) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (run_id, name, dataset, arch, method, norm, eps, json.dumps(config, sort_keys=True), status, source,
             int(readonly), created_at or now, now, checkpoint_path, json.dumps(final_metrics or {}),
             run_dir or str(self.run_dir(run_id))),
        )

    def claim_run(self, run_id: str, pid: int, **create_fields: Any) -> dict[str, Any]:
        """Atomically create the run if needed and mark it running under ``pid``.

        Refuses (RegistryError) when another live process is training it; a completed run is returned as it is,
        unclaimed, so the caller can see there is nothing to do.
        """
        now = time.time()
        with self.transaction() as con:
            row = con.execute("SELECT status, pid, pid_start FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                self._insert_run(con, run_id, status="pending", **create_fields)
            elif row["status"] in ("pending", "running") and row["pid"] != pid and pid_alive(row["pid"],
                                                                                              row["pid_start"]):
                raise RegistryError(f"run {run_id} is already being trained by process {row['pid']}")
            elif row["status"] == "completed":
                return self.get_run(run_id, con=con)
            con.execute("UPDATE runs SET status = 'running', pid = ?, pid_start = ?, started_at = ?, updated_at = ?,"
                        " error = NULL WHERE id = ?", (pid, process_start(pid), now, now, run_id))
            return self.get_run(run_id, con=con)

    def get_run(self, run_id: str, con: sqlite3.Connection | None = None) -> dict[str, Any]:
        if con is None:
            with self.connect() as own:
                row = own.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        else:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no run with id {run_id!r}; list them with `python -m core runs`")
        return decode_row(row)

    def find_run(self, run_id: str) -> dict[str, Any] | None:
        try:
            return self.get_run(run_id)
        except RegistryError:
            return None

    def list_runs(self, *, dataset: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        self.reconcile()
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if dataset is not None:
            query, args = query + " AND dataset = ?", [*args, dataset]
        if status is not None:
            query, args = query + " AND status = ?", [*args, status]
        with self.connect() as con:
            rows = con.execute(query + " ORDER BY created_at DESC", args).fetchall()
        return [decode_row(r) for r in rows]

    def update_run(self, run_id: str, **fields: Any) -> None:
        allowed = {"name", "status", "started_at", "finished_at", "epochs_done", "final_metrics", "checkpoint_path",
                   "pid", "pid_start", "error", "config"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update run fields {sorted(unknown)}")
        columns = {("final_metrics_json" if k == "final_metrics" else "config_json" if k == "config" else k):
                   (json.dumps(v, sort_keys=True) if k in ("final_metrics", "config") else v)
                   for k, v in fields.items()}
        columns["updated_at"] = time.time()
        sets = ", ".join(f"{k} = ?" for k in columns)
        with self.transaction() as con:
            cur = con.execute(f"UPDATE runs SET {sets} WHERE id = ?", [*columns.values(), run_id])
            if cur.rowcount == 0:
                raise RegistryError(f"no run with id {run_id!r}")

    def name_owner(self, dataset: str, name: str, *, exclude: str | None = None) -> str | None:
        """The id of another run of ``dataset`` called ``name`` (names are how people pick models), or None.
        "SmallCNN · ERM" and "digits SmallCNN · ERM" are one name: the hub's table drops the dataset in front, so a
        model renamed "SmallCNN · ERM" had a row that read exactly as the shipped ERM model's."""
        prefix = f"{dataset} "
        shown = name.strip().removeprefix(prefix)
        with self.connect() as con:
            rows = con.execute("SELECT id, name FROM runs WHERE dataset = ? AND id != ?",
                               (dataset, exclude or "")).fetchall()
        return next((row["id"] for row in rows if row["name"].removeprefix(prefix) == shown), None)

    def unique_name(self, dataset: str, name: str) -> str:
        """``name``, or ``name (2)``, ``name (3)``… when another run of ``dataset`` already has it."""
        name = name.strip()
        candidate, k = name, 2
        while self.name_owner(dataset, candidate) is not None:
            candidate, k = f"{name} ({k})", k + 1
        return candidate

    def rename_run(self, run_id: str, name: str) -> None:
        if not name.strip():
            raise RegistryError("a run's name cannot be empty")
        if len(name.strip()) > MAX_NAME:
            raise RegistryError(f"the name is {len(name.strip())} characters; at most {MAX_NAME}")
        run = self._require_writable(run_id, "rename")
        if name.strip() == run["name"]:
            return  # saving a name unchanged is no clash, even with a pair from before names were kept apart
        owner = self.name_owner(run["dataset"], name, exclude=run_id)
        if owner is not None:
            raise RegistryError(f"another {run['dataset']} model is already called {name.strip()!r} (run {owner}); "
                                "choose a name no other model of this dataset has")
        self.update_run(run_id, name=name.strip())

    def delete_run(self, run_id: str) -> None:
        """Delete a run's rows (its folder is left for the caller to remove). Shipped runs are refused."""
        run = self._require_writable(run_id, "delete")
        if run["status"] == "running" and pid_alive(run["pid"], run["pid_start"]):
            raise RegistryError(self._still_training(run_id, run["pid"]))
        with self.transaction() as con:
            con.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    def _still_training(self, run_id: str, pid: int) -> str:
        """Why a run cannot be deleted yet, and how to stop its training: a job is cancelled as a job (its run's pid
        is the job's process, or under torchrun one of its ranks); `python -m core train` is stopped where it runs."""
        with self.connect() as con:
            job = con.execute(f"SELECT id FROM jobs WHERE kind = 'train' AND (run_id = ? OR pid = ?) AND status IN "
                              f"({','.join('?' * len(JOB_ACTIVE))}) ORDER BY created_at DESC",
                              (run_id, pid, *JOB_ACTIVE)).fetchone()
        if job is not None:
            return (f"run {run_id} is still training in job {job['id']} (pid {pid}); cancel it first: its Cancel "
                    f"button on the Train page, or python -m core jobs cancel {job['id']} (it stops after its current "
                    "batch), then delete the run")
        return (f"run {run_id} is still being trained by process {pid}, not a job (`python -m core train` in a "
                f"terminal); stop it first: Ctrl-C in the terminal that trains it, or kill {pid} (it keeps its last "
                "finished epoch), then delete the run")

    def _require_writable(self, run_id: str, action: str) -> dict[str, Any]:
        run = self.get_run(run_id)
        if run["readonly"]:
            raise RegistryError(f"run {run_id!r} is a shipped model and cannot be {action}d")
        return run

    def reconcile(self) -> list[str]:
        """Mark runs whose training process died (SIGKILL, crash, reboot) as interrupted; return their ids."""
        with self.connect() as con:
            rows = con.execute("SELECT id, pid, pid_start FROM runs WHERE status IN (?, ?)",
                               ACTIVE_STATUSES).fetchall()
        dead = [(r["id"], r["pid"]) for r in rows if not pid_alive(r["pid"], r["pid_start"])]
        marked = []
        for run_id, pid in dead:
            with self.transaction() as con:
                # Only if nobody re-claimed the run since we looked (same pid, still active).
                cur = con.execute("UPDATE runs SET status = 'interrupted', pid = NULL, updated_at = ? WHERE id = ?"
                                  " AND pid IS ? AND status IN (?, ?)", (time.time(), run_id, pid, *ACTIVE_STATUSES))
            if cur.rowcount:
                log.warning("run %s lost its process; marked interrupted", run_id)
                marked.append(run_id)
        return marked

    # epochs -------------------------------------------------------------------------------------------------
    def add_epoch(self, run_id: str, epoch: int, metrics: dict[str, Any]) -> None:
        with self.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO epochs(run_id, epoch, metrics_json, created_at) VALUES (?,?,?,?)",
                (run_id, epoch, json.dumps(metrics, sort_keys=True), time.time()),
            )
            con.execute("UPDATE runs SET epochs_done = ?, updated_at = ? WHERE id = ?", (epoch, time.time(), run_id))

    def epochs(self, run_id: str) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute("SELECT * FROM epochs WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return [decode_row(r) for r in rows]

    def truncate_epochs(self, run_id: str, after: int) -> None:
        """Drop epochs past ``after`` (a resumed run recomputes them from its last checkpoint)."""
        with self.transaction() as con:
            con.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, after))
            con.execute("UPDATE runs SET epochs_done = MIN(epochs_done, ?) WHERE id = ?", (after, run_id))

    # evaluations --------------------------------------------------------------------------------------------
    def add_evaluation(self, eval_id: str, run_id: str, config: dict[str, Any], summary: dict[str, Any],
                       table_path: str | None = None) -> None:
        self.add_evaluations([(eval_id, run_id, config, summary, table_path)])

    def add_evaluations(self, rows: list[tuple[str, str, dict[str, Any], dict[str, Any], str | None]]) -> None:
        """Several (eval id, run id, config, summary, table path) rows in one transaction."""
        now = time.time()
        with self.transaction() as con:
            con.executemany(
                "INSERT OR REPLACE INTO evaluations(id, run_id, config_json, summary_json, table_path, created_at)"
                " VALUES (?,?,?,?,?,?)",
                [(eval_id, run_id, json.dumps(config, sort_keys=True), json.dumps(summary, sort_keys=True),
                  table_path, now) for eval_id, run_id, config, summary, table_path in rows],
            )

    def get_evaluation(self, eval_id: str) -> dict[str, Any] | None:
        with self.connect() as con:
            row = con.execute("SELECT * FROM evaluations WHERE id = ?", (eval_id,)).fetchone()
        return decode_row(row) if row else None

    def get_evaluations(self, eval_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """{id: row} of the given evaluations that exist, in one query."""
        ids = list(dict.fromkeys(eval_ids))
        if not ids:
            return {}
        with self.connect() as con:
            rows = con.execute(f"SELECT * FROM evaluations WHERE id IN ({', '.join('?' * len(ids))})", ids).fetchall()
        return {row["id"]: row for row in map(decode_row, rows)}

    def evaluations(self, run_id: str) -> list[dict[str, Any]]:
        with self.connect() as con:
            rows = con.execute("SELECT * FROM evaluations WHERE run_id = ? ORDER BY created_at", (run_id,)).fetchall()
        return [decode_row(r) for r in rows]
