"""Background jobs: separate processes tracked in the registry (see queue.py and runner.py); what a training job
does with a run that already exists (reuse.py)."""

from core.jobs.queue import (cancel_job, count_jobs, create_job, eta_seconds, get_job, kept_epochs, list_jobs,
                             never_started, reconcile_jobs, resumable_jobs, resume_text, resumed_by, spawn_job,
                             submit_job, try_start, update_job, waiting_for)
from core.jobs.reuse import (RESUMABLE_JOB, ended_at_chance, job_run_id, resume_note, train_run_id,
                             trained_run_problem)

__all__ = ["RESUMABLE_JOB", "cancel_job", "count_jobs", "create_job", "ended_at_chance", "eta_seconds", "get_job",
           "job_run_id", "kept_epochs", "list_jobs", "never_started", "reconcile_jobs", "resumable_jobs",
           "resume_note", "resume_text", "resumed_by", "spawn_job", "submit_job", "train_run_id",
           "trained_run_problem", "try_start", "update_job", "waiting_for"]
