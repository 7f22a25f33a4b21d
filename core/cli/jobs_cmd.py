"""``python -m core jobs list|cancel|submit-train|run``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from core.errors import ConfigError
from core.jobs import cancel_job, eta_seconds, list_jobs, submit_job
from core.jobs.runner import run_job
from core.store import Registry


def run(args: argparse.Namespace) -> int:
    registry = Registry()
    if args.action == "list":
        jobs = list_jobs(registry)
        if args.json:
            print(json.dumps(jobs, sort_keys=True, default=str))
            return 0
        print_jobs(jobs)
        return 0
    if args.action == "cancel":
        cancel_job(registry, args.job_id)
        print(f"cancelling job {args.job_id}")
        return 0
    if args.action == "submit-train":
        from core.training import TrainConfig

        try:
            config = TrainConfig.from_dict(json.loads(args.config_json))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config_json is not valid JSON: {exc}") from exc
        from core.training.preflight import preflight

        preflight(config)
        job_id = submit_job(registry, "train", config.to_dict(), device=config.device)
        print(job_id)
        return 0
    status = run_job(args.job_id, registry)
    return 0 if status in ("completed", "cancelled") else 1


def _detail(job: dict[str, Any]) -> str:
    """What the job says beyond its status: a failed job's error, else its last message unless that only repeats
    the status (a finished job's message is its final status: "cancelled 17.4% cancelled" read twice)."""
    if job["status"] == "failed" and job["error"]:
        return next(iter(job["error"].strip().splitlines()), "")  # one row per job, even for an error of several lines
    message = job["message"] or ""
    return "" if message == job["status"] else message


def print_jobs(jobs: list[dict[str, Any]]) -> None:
    """The jobs as a table under a header, columns as wide as their values: id, kind, status, progress, time left,
    run and what the job last said."""
    if not jobs:
        print("no jobs (the dashboard's background work and `python -m core jobs submit-train` make them)")
        return
    header = ("id", "kind", "status", "progress", "eta", "run", "detail")
    rows = []
    for job in jobs:
        eta = eta_seconds(job)
        rows.append((job["id"], job["kind"], job["status"], f"{job['progress']:.1%}",
                     "-" if eta is None else f"{eta:.0f} s", job["run_id"] or "-", _detail(job)))
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {3, 4}
    for row in [header, *rows]:
        print(" ".join(cell.rjust(w) if i in right else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
