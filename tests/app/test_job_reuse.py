"""Settings that name a run which already exists: a completed run is refused before queueing (it "completed" in 2 s
with the old run and an empty log), an unfinished one is resumed and the form says so; and older jobs that can be
resumed stay reachable in the jobs panel. Jobs and runs are written straight into the registry; no job process is
started (spawn_job is replaced), so nothing trains."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.errors import RegistryError
from core.jobs import create_job, list_jobs, resumable_jobs, train_run_id, update_job
from core.store import Registry
from core.store.registry import process_start
from core.training import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture(autouse=True)
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the jobs that would have been started: submit_job queues them but starts no process."""
    started: list[str] = []
    monkeypatch.setattr("core.jobs.queue.spawn_job", lambda registry, job_id: started.append(job_id) or 0)
    return started


def open_train() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception, at.exception
    return at


def start(at: AppTest, **fields: object) -> AppTest:
    for key, value in fields.items():
        widget = at.text_input(key=key) if key == "train_name" else at.number_input(key=key)
        widget.set_value(value)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    return at


def add_run(registry: Registry, args: dict, *, name: str, status: str, epochs_done: int) -> str:
    """The run that ``args`` train, as training would have left it."""
    run_id = train_run_id(args)
    registry.create_run(run_id, name=name, dataset=args["dataset"], arch=args["arch"], method=args["method"],
                        norm=args["norm"], eps=args["eps"], config=args, status=status)
    registry.update_run(run_id, epochs_done=epochs_done, finished_at=time.time() if status == "completed" else None)
    return run_id


def train_args(**fields: object) -> dict:
    return TrainConfig(**{"dataset": "digits", "method": "pgd-at", "eps": 0.1, "epochs": 2, **fields}).to_dict()


def test_settings_of_a_completed_run_are_refused_before_queueing(atlas_home: Path, spawned: list[str]) -> None:
    """The tester's steps: PGD-AT, ε 0.1, 2 epochs, seed 0 named lecture-pgd2, later the same with no name."""
    at = start(open_train(), train_epochs=2, train_seed=0, train_name="lecture-pgd2")
    registry = Registry(atlas_home)
    [first] = list_jobs(registry)
    assert spawned == [first["id"]] and first["args"]["name"] == "lecture-pgd2"
    update_job(registry, first["id"], status="completed", progress=1.0)
    run_id = add_run(registry, first["args"], name="lecture-pgd2", status="completed", epochs_done=2)
    finished = time.strftime("%Y-%m-%d %H:%M", time.localtime(registry.get_run(run_id)["finished_at"]))
    # The jobs panel's tick that sees the job completed (it reruns the page once) comes before the user's next click.
    at.run()

    start(at, train_name="")
    assert [e.value for e in at.error] == [
        f"Not started: these settings were already trained as run {run_id} ('lecture-pgd2', completed {finished}): "
        "change the seed or a setting to train another model (a new name alone does not), or analyse that run: it is "
        "listed with the other models"]
    assert [j["id"] for j in list_jobs(registry)] == [first["id"]] and spawned == [first["id"]]

    start(at, train_seed=1)
    assert not at.error and len(list_jobs(registry)) == 2, "another seed is another model: it is queued"
    assert not at.info, "a new run resumes nothing"


def test_settings_of_an_unfinished_run_resume_it_and_the_form_says_so(atlas_home: Path,
                                                                      spawned: list[str]) -> None:
    at = start(open_train(), train_epochs=2, train_name="lecture-pgd2")
    registry = Registry(atlas_home)
    [first] = list_jobs(registry)
    update_job(registry, first["id"], status="cancelled")
    run_id = add_run(registry, first["args"], name="lecture-pgd2", status="cancelled", epochs_done=1)

    start(at, train_name="another name")
    assert not at.error, [e.value for e in at.error]
    assert [i.value for i in at.info] == [
        f"Resumes run {run_id} ('lecture-pgd2', cancelled after 1 of 2 epochs): training goes on from epoch 2. "
        "The run keeps its name 'lecture-pgd2' (rename it in the Model hub)."]
    jobs = list_jobs(registry)
    assert len(jobs) == 2 and train_run_id(jobs[0]["args"]) == run_id and spawned == [first["id"], jobs[0]["id"]]
    assert any(f"Queued job `{jobs[0]['id']}`" in s.value for s in at.success)


def test_the_queue_refuses_a_completed_run_and_one_a_live_process_trains_for_every_caller(atlas_home: Path) -> None:
    """The refusal sits in core.jobs.create_job, so `python -m core jobs submit-train` and Resume get it too."""
    registry = Registry(atlas_home)
    done, live, failed = train_args(seed=1), train_args(seed=2), train_args(seed=3)
    add_run(registry, done, name="finished", status="completed", epochs_done=2)
    with pytest.raises(RegistryError, match=r"already trained as run \w+ \('finished', completed "):
        create_job(registry, "train", {**done, "name": "a new name", "device": "cuda"})
    live_id = add_run(registry, live, name="in the terminal", status="running", epochs_done=1)
    registry.update_run(live_id, pid=os.getpid(), pid_start=process_start(os.getpid()))
    with pytest.raises(RegistryError, match=rf"run {live_id} \('in the terminal'\) is being trained right now by "
                                            rf"process {os.getpid()} \(1 of 2 epochs done\)"):
        create_job(registry, "train", live)
    add_run(registry, failed, name="crashed", status="failed", epochs_done=1)
    assert list_jobs(registry) == []
    job = create_job(registry, "train", failed)
    assert [j["id"] for j in list_jobs(registry)] == [job]


def test_older_resumable_jobs_stay_reachable_beyond_the_six_newest(atlas_home: Path, spawned: list[str]) -> None:
    registry = Registry(atlas_home)
    # Oldest first: what each job and its run say, and whether it can be resumed.
    cases = [("cancelled", "cancelled", True),   # seed 0: an unfinished run, its job long out of the newest six
             ("cancelled", "completed", False),  # seed 1: finished since (e.g. from the terminal)
             ("failed", None, False),            # seed 2: failed before its run existed: nothing to continue
             ("failed", "failed", True),         # seed 3: failed mid-run: its epochs are kept
             ("interrupted", "interrupted", False)]  # seed 4: superseded by the newer job for seed 4 below
    ids = []
    for seed, (job_status, run_status, _) in enumerate(cases):
        ids.append(create_job(registry, "train", train_args(seed=seed)))
        update_job(registry, ids[-1], status=job_status)
    add_run(registry, train_args(seed=4), name="seed 4", status="interrupted", epochs_done=1)
    newer = [create_job(registry, "train", train_args(seed=4))]
    update_job(registry, newer[0], status="cancelled")
    for seed in range(10, 15):
        newer.append(create_job(registry, "train", train_args(seed=seed)))
        update_job(registry, newer[-1], status="completed", progress=1.0)
    for seed, (_, run_status, _) in enumerate(cases):
        if run_status is not None and seed != 4:
            add_run(registry, train_args(seed=seed), name=f"seed {seed}", status=run_status, epochs_done=1)
    expected = [ids[seed] for seed, (_, _, resumable) in enumerate(cases) if resumable]
    assert [j["id"] for j in resumable_jobs(registry)] == [newer[0], *expected[::-1]]

    at = open_train()
    [expander] = [e for e in at.expander if e.label.startswith("Resumable older jobs")]
    assert expander.label == "Resumable older jobs (2)"
    assert sorted(b.key for b in expander.button) == sorted(f"train_resume_{i}" for i in expected)
    assert f"train_resume_{newer[0]}" in [b.key for b in at.button], "the newest cancelled job, among the six"
    assert not any(b.key in (f"train_resume_{ids[1]}", f"train_resume_{ids[2]}", f"train_resume_{ids[4]}")
                   for b in at.button)
    assert any(c.value.startswith("Showing the 6 most recent of 11 training jobs; the 2 older ones that can be "
                                  "resumed are under “Resumable older jobs”.") for c in at.caption)

    at.button(key=f"train_resume_{ids[0]}").click().run()
    assert not at.exception, at.exception
    resumed = list_jobs(registry)[0]
    assert spawned == [resumed["id"]] and resumed["status"] == "queued"
    assert train_run_id(resumed["args"]) == train_run_id(train_args(seed=0))
    # Its new job supersedes the resumed one, and pushes the cancelled job of seed 4 out of the newest six.
    [expander] = [e for e in at.expander if e.label.startswith("Resumable older jobs")]
    assert sorted(b.key for b in expander.button) == sorted(f"train_resume_{i}" for i in (newer[0], ids[3]))
    assert f"train_resume_{ids[0]}" not in [b.key for b in at.button]


def test_a_job_whose_run_was_deleted_is_not_offered_for_resuming(atlas_home: Path) -> None:
    """Resume of a cancelled job whose run had been deleted in the hub queued a job that started over at epoch 1,
    without a word: there is nothing to resume, and Start training starts it over."""
    registry = Registry(atlas_home)
    args = train_args(seed=7)
    job = create_job(registry, "train", args)
    run_id = add_run(registry, args, name="to delete", status="cancelled", epochs_done=1)
    update_job(registry, job, status="cancelled", run_id=run_id)
    assert [j["id"] for j in resumable_jobs(registry)] == [job]
    registry.delete_run(run_id)
    assert resumable_jobs(registry) == []
