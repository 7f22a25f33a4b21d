"""Jobs in the registry: submit, list, claim a turn (one running job per device), progress, cancel, reconcile.

A job is a separate process (``python -m core jobs run ID``, see runner.py) in its own session, so it outlives
page switches, browser reloads and dashboard restarts, and cancel can end its whole process group.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from core.errors import AtlasError, RegistryError
from core.jobs.reuse import (RESUMABLE_JOB, diverged, job_run_id, resume_note, train_run_id,
                             trained_run_problem)
from core.store.registry import Registry, decode_row, pid_alive, process_start
from core.store.schema import JOB_ACTIVE
from core.utils import REPO_ROOT

log = logging.getLogger(__name__)


def create_job(registry: Registry, kind: str, args: dict[str, Any], device: str = "cpu",
               exclusive: bool = True) -> str:
    """Queue a job. Exclusive jobs run one at a time per device; a non-exclusive one starts at once.

    A training job is refused (RegistryError) while another queued or running job trains the same run (both would
    end in that one run, one of them for nothing), when the run is already completed, and while a process outside
    the queue trains it (see core/jobs/reuse.py). An unfinished run is resumed from its last finished epoch."""
    run_id = train_run_id(args) if kind == "train" else None
    if run_id is not None:
        reconcile_jobs(registry)
        registry.reconcile()
    job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    log_path = registry.home / "jobs" / f"{job_id}.log"
    with registry.transaction() as con:
        if run_id is not None:
            _refuse_same_run(con, run_id)
            row = con.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if (problem := trained_run_problem(None if row is None else decode_row(row))) is not None:
                raise RegistryError(problem)
        con.execute("INSERT INTO jobs(id, kind, device, exclusive, args_json, status, created_at, log_path)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    (job_id, kind, device, int(exclusive), json.dumps(args, sort_keys=True), "queued", time.time(),
                     str(log_path)))
    return job_id


def _refuse_same_run(con: Any, run_id: str) -> None:
    rows = con.execute(f"SELECT id, status, args_json FROM jobs WHERE kind = 'train' AND status IN "
                       f"({','.join('?' * len(JOB_ACTIVE))}) ORDER BY created_at", JOB_ACTIVE).fetchall()
    for row in rows:
        try:
            other = train_run_id(json.loads(row["args_json"]))
        except AtlasError as exc:  # a job queued by an older version whose options no longer validate
            log.warning("job %s: cannot tell which run it trains (%s); not compared", row["id"], exc)
            continue
        if other == run_id:
            raise RegistryError(f"job {row['id']} is already {row['status']} with these settings and would train the "
                                f"same run ({run_id}); a different name or device does not make a new run. Wait "
                                "for it or cancel it, or change the seed or a hyper-parameter")


def spawn_job(registry: Registry, job_id: str) -> int:
    """Start the job's process in a new session (its own process group); return its pid."""
    job = get_job(registry, job_id)
    log_path = Path(job["log_path"])
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ATLAS_HOME": str(registry.home), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "core", "jobs", "run", job_id], cwd=REPO_ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                start_new_session=True)
    update_job(registry, job_id, pid=proc.pid, pid_start=process_start(proc.pid))
    return proc.pid


def submit_job(registry: Registry, kind: str, args: dict[str, Any], device: str = "cpu",
               exclusive: bool = True) -> str:
    job_id = create_job(registry, kind, args, device, exclusive)
    spawn_job(registry, job_id)
    return job_id


def get_job(registry: Registry, job_id: str) -> dict[str, Any]:
    with registry.connect() as con:
        row = con.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise RegistryError(f"no job with id {job_id!r}")
    return decode_row(row)


def list_jobs(registry: Registry, *, active_only: bool = False, limit: int | None = 50,
              kind: str | None = None) -> list[dict[str, Any]]:
    """The most recent jobs first (``limit`` None: all), only active ones or only those of ``kind`` when asked."""
    reconcile_jobs(registry)
    where, params = _where(active_only, kind)
    with registry.connect() as con:
        rows = con.execute(f"SELECT * FROM jobs {where} ORDER BY created_at DESC LIMIT ?",
                           (*params, -1 if limit is None else limit)).fetchall()
    return [decode_row(r) for r in rows]


def count_jobs(registry: Registry, *, active_only: bool = False, kind: str | None = None) -> int:
    where, params = _where(active_only, kind)
    with registry.connect() as con:
        return int(con.execute(f"SELECT COUNT(*) FROM jobs {where}", params).fetchone()[0])


def _where(active_only: bool, kind: str | None) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    if active_only:
        clauses.append(f"status IN ({','.join('?' * len(JOB_ACTIVE))})")
        params.extend(JOB_ACTIVE)
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def never_started(job: dict[str, Any]) -> bool:
    """Whether ``job`` stopped (cancelled, failed, interrupted) while it was still queued: it never ran, so it
    trained nothing and took no run over."""
    return job["status"] in RESUMABLE_JOB and not job["started_at"]


def _train_jobs(registry: Registry) -> list[tuple[dict[str, Any], str]]:
    """Every training job, newest first, with the run it trains (jobs whose run cannot be told are left out)."""
    with registry.connect() as con:
        jobs = [decode_row(r) for r in con.execute("SELECT * FROM jobs WHERE kind = 'train'"
                                                   " ORDER BY created_at DESC").fetchall()]
    return [(job, run_id) for job in jobs if (run_id := job_run_id(job)) is not None]


def _carriers(jobs: list[tuple[dict[str, Any], str]]) -> dict[str, dict[str, Any]]:
    """{run id: the job that carries the run on}: its newest job that ran or is still to run, or, when every job of
    the run stopped while queued, the newest of those. A job cancelled while queued took nothing over: the job
    before it still carries the run (its card keeps the Resume; it read "resumed since" by a job that never ran)."""
    carriers: dict[str, dict[str, Any]] = {}
    for job, run_id in jobs:
        held = carriers.get(run_id)
        if held is None or (never_started(held) and not never_started(job)):
            carriers[run_id] = job
    return carriers


def resumable_jobs(registry: Registry) -> list[dict[str, Any]]:
    """Training jobs whose Resume continues their run, newest first, however old: cancelled, failed or interrupted;
    their run not completed; the job that carries their run (no newer job for it, but for jobs stopped while queued:
    that one is resumed instead); a failed job only once its run exists (one that failed before its run was
    registered has no epoch to go on from and would fail again); not a job whose run was deleted since, nor one
    whose run diverged (TrainingDiverged)."""
    reconcile_jobs(registry)
    registry.reconcile()
    jobs = _train_jobs(registry)
    with registry.connect() as con:
        runs = con.execute("SELECT id, status, error FROM runs").fetchall()
    run_status = {r["id"]: r["status"] for r in runs}
    # A run whose loss diverged would diverge again from its last checkpoint with the same settings.
    gone_wrong = {r["id"] for r in runs if diverged(r)}
    out = []
    for run_id, job in _carriers(jobs).items():
        status = run_status.get(run_id)
        if job["run_id"] and status is None:
            continue  # its run was deleted: nothing to go on from (Resume started it over without a word)
        if run_id in gone_wrong:
            continue
        if job["status"] in RESUMABLE_JOB and status != "completed" and (status or job["status"] != "failed"):
            out.append(job)
    return sorted(out, key=lambda job: job["created_at"], reverse=True)


def resumed_by(registry: Registry) -> dict[str, dict[str, Any]]:
    """{training job id: the job that carries its run on now}, for every job that a newer one for its run followed
    (a Resume, or the same settings queued again): such a stopped job is no open problem any more, the newer job
    carries its run on. A newer job that was cancelled while queued does not count: it never ran. Jobs whose run
    cannot be told (options that no longer validate) are left out."""
    jobs = _train_jobs(registry)
    carriers = _carriers(jobs)
    return {job["id"]: carriers[run_id] for job, run_id in jobs
            if job["created_at"] < carriers[run_id]["created_at"]}


def kept_epochs(registry: Registry, job: dict[str, Any]) -> int | None:
    """How many finished epochs a stopped (cancelled, failed, interrupted) training job left its run: the run's
    epochs recorded before the job ended, which a Resume goes on from (the run's own count has moved on once a
    newer job resumed it). 0 for a job stopped before its run existed; None for any other job, for one that stopped
    while queued (it kept nothing: the epochs are its run's, from earlier jobs; see :func:`never_started`), or when
    its run was deleted since."""
    if job["kind"] != "train" or job["status"] not in RESUMABLE_JOB or not job["finished_at"] or never_started(job):
        return None
    run_id = job_run_id(job)
    if run_id is None:
        return None
    with registry.connect() as con:
        if con.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
            return None if job["run_id"] else 0
        return _epochs_before(con, run_id, job["finished_at"])


def _epochs_before(con: Any, run_id: str, when: float) -> int:
    row = con.execute("SELECT MAX(epoch) FROM epochs WHERE run_id = ? AND created_at <= ?", (run_id, when)).fetchone()
    return int(row[0] or 0)


def resume_text(registry: Registry, job: dict[str, Any]) -> str | None:
    """What a queued or running training job does with its run when that run was started before it, as the
    registry says now: a queued one where it will go on from (:func:`resume_note`), a running one the epoch it went
    on from. None for a new run, and for a job that is neither queued nor running (once it is cancelled, nothing
    resumes)."""
    if job["kind"] != "train" or job["status"] not in ("queued", "running"):
        return None
    run_id = job_run_id(job)
    run = None if run_id is None else registry.find_run(run_id)
    if run is None:
        return None
    if job["status"] == "queued":
        return resume_note(run, job["args"].get("name") or "")
    with registry.connect() as con:
        kept = _epochs_before(con, run_id, job["started_at"])
    if not kept:
        return None
    return (f"Job `{job['id']}` resumed run {run_id} ('{run['name']}') from epoch {kept + 1}: "
            f"{'epoch 1 was' if kept == 1 else f'epochs 1–{kept} were'} trained before it.")


def waiting_for(registry: Registry, job: dict[str, Any]) -> dict[str, Any] | None:
    """The job that a queued exclusive ``job`` waits for: the one running on its device, else the oldest one queued
    there before it (first come, first served); None when it waits for none (its process is about to start it)."""
    if job["status"] != "queued" or not job["exclusive"]:
        return None
    with registry.connect() as con:
        ahead = _ahead(con, job["id"], job["device"], job["created_at"])
    return next((decode_row(row) for row in ahead if pid_alive(row["pid"], row["pid_start"])), None)


def update_job(registry: Registry, job_id: str, **fields: Any) -> None:
    allowed = {"status", "pid", "pid_start", "progress", "message", "started_at", "finished_at", "heartbeat_at",
               "error", "run_id"}
    if set(fields) - allowed:
        raise ValueError(f"cannot update job fields {sorted(set(fields) - allowed)}")
    sets = ", ".join(f"{k} = ?" for k in fields)
    with registry.transaction() as con:
        con.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*fields.values(), job_id))


def try_start(registry: Registry, job_id: str) -> str:
    """Take the device if it is this job's turn: 'running', 'wait', or the job's final status if it ended."""
    with registry.transaction() as con:
        job = con.execute("SELECT status, device, exclusive, created_at FROM jobs WHERE id = ?",
                          (job_id,)).fetchone()
        if job["status"] == "cancelling":
            con.execute("UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ?", (time.time(), job_id))
            return "cancelled"
        if job["status"] != "queued":
            return job["status"]
        if job["exclusive"] and _device_taken(con, job_id, job["device"], job["created_at"]):
            return "wait"
        now = time.time()
        con.execute("UPDATE jobs SET status = 'running', started_at = ?, heartbeat_at = ? WHERE id = ?",
                    (now, now, job_id))
    return "running"


def _device_taken(con: Any, job_id: str, device: str, created_at: float) -> bool:
    """Another exclusive job runs on the device, or an older exclusive one waits for it (first come first served)."""
    return any(pid_alive(r["pid"], r["pid_start"]) for r in _ahead(con, job_id, device, created_at))


def _ahead(con: Any, job_id: str, device: str, created_at: float) -> list[Any]:
    """The exclusive jobs before this one on the device, alive or not: running ones first, then the queued ones
    submitted before it, oldest first."""
    return con.execute("SELECT * FROM jobs WHERE device = ? AND exclusive = 1 AND ((status IN ('running', "
                       "'cancelling') AND id != ?) OR (status = 'queued' AND created_at < ?))"
                       " ORDER BY status = 'queued', created_at", (device, job_id, created_at)).fetchall()


def cancel_job(registry: Registry, job_id: str) -> None:
    """Ask the job to stop: it finishes its batch, keeps its last epoch and exits. SIGTERM to its group too."""
    job = get_job(registry, job_id)
    if job["status"] not in JOB_ACTIVE:
        raise RegistryError(f"job {job_id} is already {job['status']}")
    update_job(registry, job_id, status="cancelling")
    if pid_alive(job["pid"], job["pid_start"]):
        try:
            os.killpg(job["pid"], signal.SIGTERM)
        except ProcessLookupError:
            log.info("job %s ended before the cancel arrived", job_id)


def reconcile_jobs(registry: Registry) -> list[str]:
    """Jobs whose process died (killed, crashed, machine restarted) become 'interrupted'; 'cancelled' when they were
    being cancelled: a cancel in the first seconds after Start ends the process by SIGTERM before its handler is in
    place, and the card showed a red "interrupted" for a job the user had cancelled."""
    with registry.connect() as con:
        rows = con.execute(f"SELECT id, pid, pid_start FROM jobs WHERE status IN "
                           f"({','.join('?' * len(JOB_ACTIVE))})", JOB_ACTIVE).fetchall()
    marked = []
    for row in rows:
        if row["pid"] is None or pid_alive(row["pid"], row["pid_start"]):
            continue
        with registry.transaction() as con:
            cur = con.execute("UPDATE jobs SET status = CASE status WHEN 'cancelling' THEN 'cancelled' ELSE"
                              " 'interrupted' END, finished_at = ? WHERE id = ? AND pid IS ?"
                              f" AND status IN ({','.join('?' * len(JOB_ACTIVE))})",
                              (time.time(), row["id"], row["pid"], *JOB_ACTIVE))
        if cur.rowcount:
            marked.append(row["id"])
    if marked:
        registry.reconcile()
    return marked


def eta_seconds(job: dict[str, Any], now: float | None = None) -> float | None:
    """Remaining seconds, extrapolated from the progress at the last report and counted down since (None until
    there is progress to go on, and once the count runs out before the next report).

    Extrapolating from the time elapsed now, as before, made the estimate grow while a long step ran without a
    report (an ensemble attack's batch: "44 s left", then 62 s, for a minute)."""
    if job["status"] != "running" or not job["started_at"] or job["progress"] <= 0.01:
        return None
    reported = job["heartbeat_at"] or job["started_at"]
    left = (reported - job["started_at"]) * (1 - job["progress"]) / job["progress"] - ((now or time.time()) - reported)
    return left if left > 0 else None
