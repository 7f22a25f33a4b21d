"""What the queue says about jobs that wait or stopped, read from the registry alone: a resume job cancelled while
still queued never ran (it kept nothing and took no run over), the job a queued one waits for, and what a queued or
running job does with the unfinished run it resumes. Jobs and runs are written straight into the registry; no job
process is started."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from core.jobs import (create_job, get_job, kept_epochs, never_started, reconcile_jobs, resumable_jobs, resume_text,
                       resumed_by, train_run_id, update_job, waiting_for)
from core.store import Registry
from core.store.registry import process_start
from core.training import TrainConfig


def train_args(**fields: object) -> dict:
    return TrainConfig(**{"dataset": "digits", "method": "pgd-at", "eps": 0.1, "epochs": 2, **fields}).to_dict()


def ran(registry: Registry, job_id: str, status: str, *, epochs: int) -> str:
    """The job started, trained ``epochs`` epochs of its run and stopped with ``status``; its run's id."""
    args = get_job(registry, job_id)["args"]
    run_id = train_run_id(args)
    update_job(registry, job_id, status="running", started_at=time.time(), run_id=run_id)
    if registry.find_run(run_id) is None:
        registry.create_run(run_id, name="lecture", dataset="digits", arch=args["arch"], method=args["method"],
                            norm=args["norm"], eps=args["eps"], config=args, status="running")
    done = registry.get_run(run_id)["epochs_done"]
    for epoch in range(done + 1, done + epochs + 1):
        registry.add_epoch(run_id, epoch, {"epoch": epoch, "loss": 1.0, "clean_acc": 0.5})
    registry.update_run(run_id, status=status)
    update_job(registry, job_id, status=status, finished_at=time.time())
    return run_id


def cancelled_while_queued(registry: Registry, args: dict) -> str:
    """A job queued and cancelled before its turn came, as the job process leaves it (try_start)."""
    job_id = create_job(registry, "train", args)
    update_job(registry, job_id, status="cancelled", finished_at=time.time())
    return job_id


def test_a_resume_job_cancelled_while_queued_took_nothing_over(atlas_home: Path) -> None:
    """The tester's steps: a job trains 1 epoch and is cancelled; its Resume is queued behind another job and
    cancelled there. The resume job's card said "Kept 1 of 2 epochs" (the run's, not its own) and the first job's
    "Resumed since by job …", as if that job had trained its run on: it never ran."""
    registry = Registry(atlas_home)
    args = train_args(seed=3)
    first = create_job(registry, "train", args)
    ran(registry, first, "cancelled", epochs=1)
    resume = cancelled_while_queued(registry, args)

    assert never_started(get_job(registry, resume)) and not never_started(get_job(registry, first))
    assert kept_epochs(registry, get_job(registry, resume)) is None, "it kept nothing: it never ran"
    assert kept_epochs(registry, get_job(registry, first)) == 1
    assert first not in resumed_by(registry), "nothing took its run over"
    assert [j["id"] for j in resumable_jobs(registry)] == [first], "its Resume stays where the epochs are"


def test_a_job_that_ran_after_a_cancelled_resume_takes_both_over(atlas_home: Path) -> None:
    registry = Registry(atlas_home)
    args = train_args(seed=4)
    first = create_job(registry, "train", args)
    ran(registry, first, "cancelled", epochs=1)
    void = cancelled_while_queued(registry, args)
    second = create_job(registry, "train", args)
    ran(registry, second, "interrupted", epochs=1)

    taken = resumed_by(registry)
    assert taken[first]["id"] == second and taken[void]["id"] == second and second not in taken
    assert [j["id"] for j in resumable_jobs(registry)] == [second]
    assert kept_epochs(registry, get_job(registry, second)) == 2


def test_a_run_whose_every_job_stopped_while_queued_is_resumed_from_the_newest(atlas_home: Path) -> None:
    """No job of the run ever ran (a fresh run, queued and cancelled twice): the newest one keeps the Resume, as
    before."""
    registry = Registry(atlas_home)
    args = train_args(seed=5)
    older = cancelled_while_queued(registry, args)
    newer = cancelled_while_queued(registry, args)
    assert [j["id"] for j in resumable_jobs(registry)] == [newer]
    assert resumed_by(registry) == {older: get_job(registry, newer)}


def test_a_queued_job_says_which_job_it_waits_for(atlas_home: Path) -> None:
    registry = Registry(atlas_home)
    running = create_job(registry, "train", train_args(seed=6))
    # This test's own process stands for the running job's: alive, as pid_alive checks it.
    update_job(registry, running, status="running", started_at=time.time(), pid=os.getpid(),
               pid_start=process_start(os.getpid()))
    queued = create_job(registry, "train", train_args(seed=7))
    update_job(registry, queued, pid=os.getpid(), pid_start=process_start(os.getpid()))
    later = create_job(registry, "train", train_args(seed=8))
    parallel = create_job(registry, "train", train_args(seed=9), exclusive=False)
    other_device = create_job(registry, "train", train_args(seed=10), device="cuda")

    assert waiting_for(registry, get_job(registry, queued))["id"] == running
    assert waiting_for(registry, get_job(registry, later))["id"] == running, "the running one first"
    assert waiting_for(registry, get_job(registry, parallel)) is None
    assert waiting_for(registry, get_job(registry, other_device)) is None
    update_job(registry, running, status="completed", finished_at=time.time())
    assert waiting_for(registry, get_job(registry, later))["id"] == queued, "then the one queued before it"
    assert waiting_for(registry, get_job(registry, queued)) is None


def test_what_a_resume_job_says_follows_its_state_and_its_run(atlas_home: Path) -> None:
    """The form's "Resumes run … from epoch N" was written once: it stayed after the job was cancelled, and kept
    its epoch when the run moved on."""
    registry = Registry(atlas_home)
    args = {**train_args(seed=11, epochs=3), "name": "a new name"}
    first = create_job(registry, "train", args)
    run_id = ran(registry, first, "cancelled", epochs=1)
    resume = create_job(registry, "train", args)
    assert resume_text(registry, get_job(registry, resume)) == (
        f"Resumes run {run_id} ('lecture', cancelled after 1 of 3 epochs): training goes on from epoch 2. The run "
        "keeps its name 'lecture' (rename it in the Model hub).")
    registry.add_epoch(run_id, 2, {"epoch": 2, "loss": 1.0, "clean_acc": 0.5})  # e.g. `python -m core train`
    registry.update_run(run_id, status="interrupted")
    assert "interrupted after 2 of 3 epochs): training goes on from epoch 3." in resume_text(
        registry, get_job(registry, resume))
    registry.truncate_epochs(run_id, 1)

    update_job(registry, resume, status="running", started_at=time.time(), run_id=run_id)
    registry.update_run(run_id, status="running")
    time.sleep(0.01)
    registry.add_epoch(run_id, 2, {"epoch": 2, "loss": 1.0, "clean_acc": 0.5})
    assert resume_text(registry, get_job(registry, resume)) == (
        f"Job `{resume}` resumed run {run_id} ('lecture') from epoch 2: epoch 1 was trained before it.")
    update_job(registry, resume, status="cancelled", finished_at=time.time())
    assert resume_text(registry, get_job(registry, resume)) is None

    fresh = create_job(registry, "train", train_args(seed=12))
    assert resume_text(registry, get_job(registry, fresh)) is None, "a new run resumes nothing"


def test_a_job_whose_process_died_while_it_was_being_cancelled_reads_cancelled(atlas_home: Path) -> None:
    """Cancel in the first seconds after Start: SIGTERM ends the job's process before its handler is in place, and
    the card called the job the user had cancelled "interrupted", in red."""
    registry = Registry(atlas_home)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process that has ended, as the job's had
    cancelling = create_job(registry, "train", train_args(seed=13))
    crashed = create_job(registry, "train", train_args(seed=14))
    update_job(registry, cancelling, status="cancelling", pid=gone.pid)
    update_job(registry, crashed, status="running", started_at=time.time(), pid=gone.pid)
    assert sorted(reconcile_jobs(registry)) == sorted([cancelling, crashed])
    assert get_job(registry, cancelling)["status"] == "cancelled" and get_job(registry, crashed)["status"] == \
        "interrupted"
    assert never_started(get_job(registry, cancelling)) and get_job(registry, cancelling)["finished_at"]
