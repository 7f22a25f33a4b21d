"""``python -m core jobs list|cancel|submit-train|run``."""

from __future__ import annotations

import argparse
import json

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
        for job in jobs:
            eta = eta_seconds(job)
            print(f"{job['id']:<24} {job['kind']:<6} {job['status']:<11} {job['progress']:>6.1%} "
                  f"{'' if eta is None else f'ETA {eta:.0f} s':<10} {job['message'] or job['error'] or ''}")
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
