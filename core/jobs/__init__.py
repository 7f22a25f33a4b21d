"""Background jobs: separate processes tracked in the registry (see queue.py and runner.py)."""

from core.jobs.queue import (cancel_job, create_job, eta_seconds, get_job, list_jobs, reconcile_jobs, spawn_job,
                             submit_job, try_start, update_job)

__all__ = ["cancel_job", "create_job", "eta_seconds", "get_job", "list_jobs", "reconcile_jobs", "spawn_job",
           "submit_job", "try_start", "update_job"]
