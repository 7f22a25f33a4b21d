"""The Train page's notes on waiting and resuming jobs come from the queue, at every rerun: "Queued job …" for a job
waiting behind another stayed only until the next full rerun (a page switch, a reload); "Resumes run … from epoch
N" stayed after that job was cancelled. And the cards of a resume job cancelled while queued and of the job it was
to resume say what happened: it never ran. Jobs and runs are written straight into the registry; no job process is
started (spawn_job is replaced)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import pytest

from core.jobs import cancel_job, create_job, get_job, list_jobs, train_run_id, update_job
from core.store import Registry
from core.store.registry import process_start
from core.training import TrainConfig
from tests.app.test_job_reuse import open_train, start
from tests.app.test_train_job_cards import card, texts
from tests.core.test_jobs import wait_until


@pytest.fixture(autouse=True)
def spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.jobs.queue.spawn_job", lambda registry, job_id: 0)


def busy_device(registry: Registry) -> str:
    """A training job running on the CPU: this test's own process stands for its process (alive, as the queue
    checks it), so the jobs queued after it wait for it."""
    job_id = create_job(registry, "train", TrainConfig(dataset="digits", method="erm", epochs=50, seed=99).to_dict())
    update_job(registry, job_id, status="running", started_at=time.time(), pid=os.getpid(),
               pid_start=process_start(os.getpid()))
    return job_id


def test_the_queued_note_of_a_waiting_job_survives_a_full_rerun_and_a_page_switch(atlas_home: Path) -> None:
    registry = Registry(atlas_home)
    running = busy_device(registry)
    at = start(open_train(), train_epochs=3)
    waiting = list_jobs(registry)[0]["id"]
    note = (f"Queued job `{waiting}`: it waits for training job `{running}` (running on cpu) and starts when that "
            "one is done. Progress appears below.")
    assert [s.value.startswith(f"Queued job `{waiting}`") for s in at.success] == [True]

    at.run()  # a full rerun, as a widget outside the form or the panel's rerun after a job completes makes
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [note], "the job still waits"
    at.switch_page("../pages/hub.py").run()
    at.switch_page("../pages/train.py").run()
    assert [s.value for s in at.success] == [note]

    update_job(registry, running, status="completed", finished_at=time.time())
    at.run()
    assert [s.value for s in at.success] == [f"Queued job `{waiting}`. Progress appears below."], "its turn next"
    update_job(registry, waiting, status="running", started_at=time.time())
    at.run()
    assert not at.success, "once it runs the card says so: a reload does not announce it again"


def stopped_after_one_epoch(registry: Registry, job_id: str) -> str:
    """The job trained one epoch of its run and was cancelled, as a real one leaves the registry; its run id."""
    args = get_job(registry, job_id)["args"]
    run_id = train_run_id(args)
    update_job(registry, job_id, status="running", started_at=time.time(), run_id=run_id)
    registry.create_run(run_id, name="lecture-pgd2", dataset=args["dataset"], arch=args["arch"],
                        method=args["method"], norm=args["norm"], eps=args["eps"], config=args, status="running")
    registry.add_epoch(run_id, 1, {"epoch": 1, "loss": 1.0, "clean_acc": 0.5})
    registry.update_run(run_id, status="cancelled")
    update_job(registry, job_id, status="cancelled", finished_at=time.time())
    return run_id


def test_the_resume_note_stays_while_its_job_waits_and_goes_once_it_is_cancelled(atlas_home: Path) -> None:
    """The tester's steps: a run cancelled after 1 of 2 epochs, the same settings started again behind another job
    ("Resumes run … from epoch 2"), then that job cancelled from its card while still queued."""
    registry = Registry(atlas_home)
    at = start(open_train(), train_epochs=2, train_name="lecture-pgd2")
    run_id = stopped_after_one_epoch(registry, list_jobs(registry)[0]["id"])
    busy_device(registry)
    start(at, train_name="")
    resume = list_jobs(registry)[0]["id"]
    note = (f"Resumes run {run_id} ('lecture-pgd2', cancelled after 1 of 2 epochs): training goes on from "
            "epoch 2.")
    assert [i.value for i in at.info] == [note]
    at.run()
    assert [i.value for i in at.info] == [note], "it still resumes that run"
    next(b for b in card(at, resume).button if b.label == "Cancel").click().run()
    assert not at.exception, at.exception
    assert get_job(registry, resume)["status"] == "cancelling"
    assert not at.info, "nothing resumes now"


def test_a_resume_job_cancelled_while_queued_says_it_never_ran_and_leaves_the_resume_where_it_was(
        atlas_home: Path) -> None:
    """Its card said "Kept 1 of 2 epochs" (its run's, kept by the job before it), and that job's "Resumed since by
    job …", in gray and without its Resume, as if the cancelled job had trained the run on."""
    registry = Registry(atlas_home)
    args = TrainConfig(dataset="digits", method="pgd-at", eps=0.1, epochs=2, seed=4).to_dict()
    first = create_job(registry, "train", args)
    stopped_after_one_epoch(registry, first)
    resume = create_job(registry, "train", args)
    update_job(registry, resume, status="cancelled", finished_at=time.time())  # as its process ends it, unstarted
    at = open_train()
    resume_card, first_card = card(at, resume), card(at, first)
    assert texts(resume_card)[1] == "Cancelled while queued: it never ran, so it trained no epoch.", \
        texts(resume_card)
    assert not resume_card.button, "its run goes on from the first job's card"
    assert texts(first_card)[0].endswith(":orange-badge[cancelled]"), "still the open one"
    assert texts(first_card)[1] == "Kept 1 of 2 epochs.", texts(first_card)
    assert [b.label for b in first_card.button] == ["Resume"]


@pytest.fixture
def server(atlas_home: Path, tmp_path: Path, subprocess_env: dict) -> Iterator[str]:
    """The dashboard on a free port, on this test's ATLAS_HOME; job processes start for real."""
    from tests.e2e.conftest import dashboard_server

    os.environ["PYTHONPATH"] = subprocess_env["PYTHONPATH"]
    with dashboard_server(atlas_home, tmp_path, ATLAS_WARM="0") as url:
        yield url


@pytest.mark.e2e
def test_in_a_browser_the_notes_survive_a_reload_and_the_resume_note_goes_with_a_cancel(
        atlas_home: Path, server: str) -> None:
    """The tester's steps in a real browser, where a card's Cancel reruns the jobs panel alone: the page's resume
    note stayed under the form after its job was cancelled, and a reload dropped the "Queued job" note of a job
    still waiting."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e.ui import TIMEOUT_MS, go_to, open_app

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; `bash scripts/test.sh` installs Debian's chromium")
    registry = Registry(atlas_home)
    busy_device(registry)  # every job queued below waits: none trains
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
            open_app(page, server)
            go_to(page, "Train", "Train a model")
            page.get_by_label("Epochs").fill("2")
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Queued job").wait_for(timeout=TIMEOUT_MS)
            first = list_jobs(registry)[0]["id"]
            # Once its process waits for its turn (before, a SIGTERM would end it before its handler is in place).
            wait_until(lambda: get_job(registry, first)["message"] == "queued: waiting for the device", 60,
                       "the first job's process")
            cancel_job(registry, first)
            wait_until(lambda: get_job(registry, first)["status"] == "cancelled", 60, "the first job's cancel")
            stopped_after_one_epoch(registry, first)

            page.get_by_role("button", name="Start training").click()
            resume = page.get_by_text("training goes on from epoch 2")
            resume.wait_for(timeout=TIMEOUT_MS)
            [job] = [j for j in list_jobs(registry) if j["status"] == "queued"]
            page.reload(wait_until="domcontentloaded")
            page.get_by_text(f"Queued job {job['id']}: it waits for training job").wait_for(timeout=TIMEOUT_MS)
            resume.wait_for(timeout=TIMEOUT_MS)

            page.locator(f"[class*='st-key-job_{job['id']}']").get_by_role("button", name="Cancel").click()
            resume.wait_for(state="detached", timeout=5_000)
            page.get_by_text("Queued job").wait_for(state="detached", timeout=5_000)
        finally:
            browser.close()
