"""What a training job does with the run its settings name: a run id is the hash of the settings that decide the
weights (not the name or the device), so the same settings always name the same run. A completed run is not
trained again (the job is refused, see :func:`trained_run_problem`); an unfinished one (cancelled, failed,
interrupted) is resumed from its last finished epoch (:func:`resume_note` says so)."""

from __future__ import annotations

import logging
import time
from typing import Any, Mapping

from core.errors import AtlasError, TrainingDiverged
from core.store.registry import pid_alive
from core.store.schema import ACTIVE_STATUSES

log = logging.getLogger(__name__)
# Jobs that stopped before their run was complete: Resume continues the run from its last finished epoch.
RESUMABLE_JOB = ("cancelled", "failed", "interrupted")


def train_run_id(args: Mapping[str, Any]) -> str:
    """The run a training job's arguments train: the hash of what decides the weights (not the name, the device,
    the speed options or the number of processes)."""
    from core.training import TrainConfig, run_id_for

    return run_id_for(TrainConfig.from_dict({k: v for k, v in args.items() if k != "processes"}))


def job_run_id(job: Mapping[str, Any]) -> str | None:
    """The run a training job trains (set once it started; else from its arguments), or None when its arguments no
    longer validate (a job queued by an older version)."""
    if job["run_id"]:
        return job["run_id"]
    try:
        return train_run_id(job["args"])
    except AtlasError as exc:
        log.warning("job %s: cannot tell which run it trains (%s)", job["id"], exc)
        return None


def _when(run: Mapping[str, Any]) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(run["finished_at"] or run["updated_at"]))


def _epochs(run: Mapping[str, Any]) -> Any:
    return (run["config"] or {}).get("epochs", "?")


def diverged(run: Mapping[str, Any]) -> bool:
    """Whether ``run`` (a registry row) failed because its loss diverged (the same settings would diverge again)."""
    return run["status"] == "failed" and (run["error"] or "").startswith(f"{TrainingDiverged.__name__}: ")


def ended_at_chance(run: Mapping[str, Any]) -> bool:
    """Whether ``run`` (a registry row) completed at chance level: it learned nothing usable, and its final metrics'
    warning says why and what to change (core.training.epoch.chance_warning)."""
    return bool((run.get("final_metrics") or {}).get("at_chance"))


def trained_run_problem(run: Mapping[str, Any] | None) -> str | None:
    """Why a new training job must not be queued for ``run`` (the registry row its settings name), or None: the run
    is completed (training it again would change nothing; at chance level, the message says so and why), its loss
    diverged (it would again), or a live process outside the job queue trains it."""
    if run is None:
        return None
    if run["status"] == "completed" and ended_at_chance(run):
        return (f"these settings were already trained as run {run['id']} ('{run['name']}', completed {_when(run)}), "
                f"and {run['final_metrics']['warning']} (A new name alone does not make another run.)")
    if run["status"] == "completed":
        return (f"these settings were already trained as run {run['id']} ('{run['name']}', completed {_when(run)}): "
                "change the seed or a setting to train another model (a new name alone does not), or analyse that "
                "run: it is listed with the other models")
    if diverged(run):
        return (f"these settings diverged as run {run['id']} ('{run['name']}'): {run['error'].split(': ', 1)[1]} "
                f"To try them once more anyway, delete that run first: `python -m core runs delete {run['id']}`.")
    if run["status"] in ACTIVE_STATUSES and pid_alive(run["pid"], run["pid_start"]):
        return (f"run {run['id']} ('{run['name']}') is being trained right now by process {run['pid']} "
                f"({run['epochs_done']} of {_epochs(run)} epochs done): wait for it to finish, or stop that process "
                "and start these settings again to resume it")
    return None


def resume_note(run: Mapping[str, Any] | None, name: str = "") -> str | None:
    """What a job queued for an unfinished ``run`` will do, for the user (None for a new run): it continues the run
    from its last finished epoch, under the run's own name (``name``: the one typed for the new job)."""
    if run is None or run["status"] == "completed":
        return None
    done = run["epochs_done"]
    state = (f"{run['status']} after {done} of {_epochs(run)} epochs" if done else
             f"{run['status']} before its first epoch finished")
    note = f"Resumes run {run['id']} ('{run['name']}', {state}): training goes on from epoch {done + 1}."
    if name.strip() and name.strip() != run["name"]:
        note += f" The run keeps its name '{run['name']}' (rename it in the Model hub)."
    return note
