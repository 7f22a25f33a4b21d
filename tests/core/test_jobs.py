"""Background jobs as real processes: run to completion, queue one at a time per device, cancel, die, fail."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Callable

import pytest

from core.errors import RegistryError
from core.jobs import (cancel_job, create_job, eta_seconds, get_job, list_jobs, reconcile_jobs, submit_job,
                       resumable_jobs, update_job)
from core.store import Registry
from core.training import TrainConfig

MOONS = dict(dataset="moons", arch="mlp", method="pgd-at", eps=0.05, batch_size=64, eval_n=64, eval_steps=3,
             attack_steps=3, device="cpu")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def job_args(**kw) -> dict:
    return TrainConfig(**{**MOONS, **kw}).to_dict()


@pytest.fixture
def registry(atlas_home, subprocess_env) -> Registry:
    os.environ["PYTHONPATH"] = subprocess_env["PYTHONPATH"]
    return Registry()


def test_a_job_trains_in_its_own_process_and_registers_the_run(registry: Registry) -> None:
    job_id = submit_job(registry, "train", job_args(epochs=2, seed=1))
    job = get_job(registry, job_id)
    assert job["pid"] != os.getpid() and job["status"] in ("queued", "running")
    wait_until(lambda: get_job(registry, job_id)["status"] == "completed", 180, "the job to complete")
    job = get_job(registry, job_id)
    assert job["progress"] == 1.0 and job["run_id"]
    run = registry.get_run(job["run_id"])
    assert run["status"] == "completed" and run["epochs_done"] == 2


def test_jobs_on_one_device_run_one_at_a_time(registry: Registry) -> None:
    ids = [submit_job(registry, "train", job_args(epochs=3, seed=10 + i)) for i in range(2)]
    overlap = []

    def all_done() -> bool:
        states = [get_job(registry, i)["status"] for i in ids]
        overlap.append(states.count("running") > 1)
        return all(s == "completed" for s in states)

    wait_until(all_done, 300, "both jobs")
    assert not any(overlap)
    first, second = (get_job(registry, i) for i in ids)
    assert second["started_at"] >= first["finished_at"] - 0.5


def test_cancel_stops_a_running_job_and_keeps_its_epochs(registry: Registry) -> None:
    job_id = submit_job(registry, "train", job_args(dataset="digits", arch="smallcnn", epochs=50, seed=3,
                                                    batch_size=32, attack_steps=5))
    wait_until(lambda: get_job(registry, job_id)["progress"] > 0.02, 240, "progress")
    assert eta_seconds(get_job(registry, job_id)) is not None
    cancel_job(registry, job_id)
    wait_until(lambda: get_job(registry, job_id)["status"] == "cancelled", 120, "the cancel")
    run = registry.get_run(get_job(registry, job_id)["run_id"])
    assert run["status"] == "cancelled" and run["pid"] is None


def test_a_killed_job_is_marked_interrupted(registry: Registry) -> None:
    job_id = submit_job(registry, "train", job_args(dataset="digits", arch="smallcnn", epochs=50, seed=4,
                                                    batch_size=32, attack_steps=5))
    wait_until(lambda: get_job(registry, job_id)["progress"] > 0.01, 240, "progress")
    os.killpg(get_job(registry, job_id)["pid"], signal.SIGKILL)
    wait_until(lambda: reconcile_jobs(registry) == [job_id] or get_job(registry, job_id)["status"] == "interrupted",
               30, "reconcile")
    assert get_job(registry, job_id)["status"] == "interrupted"
    assert registry.get_run(get_job(registry, job_id)["run_id"])["status"] == "interrupted"


def test_a_bad_job_fails_with_its_message(registry: Registry) -> None:
    job_id = submit_job(registry, "train", job_args(arch="smallcnn", epochs=1))
    wait_until(lambda: get_job(registry, job_id)["status"] == "failed", 120, "the failure")
    assert "does not fit moons" in get_job(registry, job_id)["error"]
    assert job_id in {j["id"] for j in list_jobs(registry)}
    assert list_jobs(registry, active_only=True) == []


def test_a_job_whose_loss_diverges_fails_with_the_reason_and_is_neither_resumable_nor_queued_again(
        registry: Registry) -> None:
    args = job_args(dataset="digits", arch="smallcnn", method="erm", lr=1e6, schedule="constant", epochs=2)
    job_id = submit_job(registry, "train", args)
    wait_until(lambda: get_job(registry, job_id)["status"] == "failed", 180, "the failure")
    assert get_job(registry, job_id)["error"].startswith("training diverged in epoch 1")
    assert resumable_jobs(registry) == []
    with pytest.raises(RegistryError, match="these settings diverged as run"):
        create_job(registry, "train", args)


def test_a_job_outlives_the_process_that_started_it(registry: Registry, subprocess_env: dict) -> None:
    """What a dashboard restart looks like: the submitting process exits, the job goes on and finishes."""
    import json
    import subprocess
    import sys

    config = json.dumps({**MOONS, "epochs": 2, "seed": 7})
    out = subprocess.run([sys.executable, "-m", "core", "jobs", "submit-train", config], env=subprocess_env,
                         capture_output=True, text=True, timeout=60, check=True)
    job_id = out.stdout.strip()
    wait_until(lambda: get_job(registry, job_id)["status"] == "completed", 180, "the orphaned job")
    assert registry.get_run(get_job(registry, job_id)["run_id"])["status"] == "completed"


def test_a_second_job_for_the_same_run_is_refused_while_the_first_is_active(registry: Registry) -> None:
    """Queued, never spawned: the refusal is decided in the registry, before any process starts."""
    first = create_job(registry, "train", job_args(epochs=2, seed=21))
    same_run = [{**job_args(epochs=2, seed=21), "name": "another name"}, job_args(epochs=2, seed=21, device="cuda"),
                {**job_args(epochs=2, seed=21), "processes": 2}]
    for args in same_run:
        with pytest.raises(RegistryError, match=f"job {first} is already queued .* would train the same run"):
            create_job(registry, "train", args)
    other = create_job(registry, "train", job_args(epochs=2, seed=22))
    assert {j["id"] for j in list_jobs(registry)} == {first, other}
    update_job(registry, first, status="interrupted")
    resumed = create_job(registry, "train", job_args(epochs=2, seed=21))
    assert get_job(registry, resumed)["status"] == "queued"


def test_a_queued_job_whose_options_no_longer_validate_does_not_block_new_ones(registry: Registry) -> None:
    """A job queued by an older version (here DALE on the patches' per-patch ℓ2, refused since) is not compared,
    instead of making every new submission fail with its error."""
    with registry.transaction() as con:
        con.execute("INSERT INTO jobs(id, kind, device, exclusive, args_json, status, created_at, log_path)"
                    " VALUES (?,?,?,?,?,?,?,?)",
                    ("old-job", "train", "cpu", 1, json.dumps({"dataset": "patches", "arch": "patchnet",
                                                               "method": "dale", "norm": "l2patch", "eps": 0.25}),
                     "queued", 0.0, str(registry.home / "jobs" / "old-job.log")))
    job = create_job(registry, "train", job_args(epochs=2, seed=23))
    assert get_job(registry, job)["status"] == "queued"


def test_the_time_left_counts_down_between_reports_instead_of_growing() -> None:
    """Extrapolated from the time elapsed now, the estimate grew while a long step ran without a report."""
    job = {"status": "running", "started_at": 100.0, "heartbeat_at": 110.0, "progress": 0.5}
    assert eta_seconds(job, now=110.0) == pytest.approx(10.0)
    assert eta_seconds(job, now=112.0) == pytest.approx(8.0), "2 s later, 2 s less, not more"
    assert eta_seconds(job, now=125.0) is None, "the step runs longer than the estimate: no number rather than 0"
    assert eta_seconds({**job, "progress": 0.005}, now=111.0) is None
    assert eta_seconds({**job, "status": "completed"}, now=111.0) is None


def test_a_report_that_repeats_the_progress_keeps_the_time_the_progress_last_moved(registry: Registry) -> None:
    """The multi-process loop reports the same epoch count every second; each report moved heartbeat_at, so the
    time left was again extrapolated from the time elapsed now and grew within every epoch."""
    from core.jobs.runner import JobControl

    job_id = create_job(registry, "eval", {"spec": {}})
    control = JobControl(registry, job_id)
    control.report(0.25, "epoch 1/4", force=True)
    moved = get_job(registry, job_id)["heartbeat_at"]
    time.sleep(0.05)
    control.report(0.25, "epoch 1/4", force=True)
    assert get_job(registry, job_id)["heartbeat_at"] == moved
    control.report(0.5, "epoch 2/4", force=True)
    job = get_job(registry, job_id)
    assert job["heartbeat_at"] > moved and job["progress"] == 0.5 and job["message"] == "epoch 2/4"
