"""The Train page's job cards against real jobs (digits, small and short, trained in their own processes): a renamed
run's current name, the dataset of every card, what a cancelled job kept and which job resumed its run, and the
"Queued job" note going once that job is cancelled (in a real browser: the panel reruns alone there)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.jobs import cancel_job, get_job, list_jobs, submit_job
from core.store import Registry
from core.training import TrainConfig
from tests.core.test_jobs import wait_until

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
SMALL = dict(dataset="digits", arch="smallcnn", method="pgd-at", eps=0.1, attack_steps=2, eval_n=64, eval_steps=2,
             device="cpu")


@pytest.fixture
def registry(atlas_home: Path, subprocess_env: dict) -> Registry:
    os.environ["PYTHONPATH"] = subprocess_env["PYTHONPATH"]
    return Registry()


def train(registry: Registry, **fields: Any) -> str:
    """A finished one-epoch job (unless ``fields`` say otherwise); its id."""
    job_id = submit_job(registry, "train", TrainConfig(**{**SMALL, "epochs": 1, **fields}).to_dict())
    wait_until(lambda: get_job(registry, job_id)["status"] == "completed", 180, "the job to complete")
    return job_id


def stop_after_epochs(registry: Registry, job_id: str, epochs: int) -> None:
    """Cancel the running job once its run holds ``epochs`` finished epochs; wait until it has stopped."""
    def done() -> bool:
        run_id = get_job(registry, job_id)["run_id"]
        run = registry.find_run(run_id) if run_id else None
        return run is not None and run["epochs_done"] >= epochs

    wait_until(done, 180, f"{epochs} epochs")
    cancel_job(registry, job_id)
    wait_until(lambda: get_job(registry, job_id)["status"] == "cancelled", 120, "the cancel")


def open_train(dataset: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    if dataset is not None:
        at.selectbox(key="_sb_dataset").select(dataset).run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception, at.exception
    return at


def card(at: AppTest, job_id: str) -> Any:
    """The job's card: its container, keyed ``job_<id>``."""
    found = []

    def walk(node: Any) -> None:
        if str(getattr(getattr(node, "proto", None), "id", "")).endswith(f"-job_{job_id}"):
            found.append(node)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at.main)
    assert len(found) == 1, f"{len(found)} cards for job {job_id}"
    return found[0]


def texts(block: Any) -> list[str]:
    return [m.value for m in block.markdown]


def test_a_renamed_run_shows_its_current_name_on_its_job_card(registry: Registry) -> None:
    """The tester's steps: a job named lr10, its run renamed (hub Rename / `runs rename`): the card kept "lr10"."""
    named = train(registry, name="lr10", lr=0.1)
    unnamed = train(registry, seed=1)
    at = open_train()
    assert "lr10 (ℓ∞ ε = 0.1, 1 epoch)**" in texts(card(at, named))[0]
    assert "SmallCNN · PGD-AT (ℓ∞ ε = 0.1, 1 epoch, seed 1)**" in texts(card(at, unnamed))[0], \
        "a run keeping the name training gave it: the short title, not that long name"

    registry.rename_run(get_job(registry, named)["run_id"], "lr 0.1 baseline")
    registry.rename_run(get_job(registry, unnamed)["run_id"], "seed one")
    st.cache_data.clear()  # the dashboard reads the runs again after 2 s: as the next page load would, later
    at = open_train()
    named_title, unnamed_title = texts(card(at, named))[0], texts(card(at, unnamed))[0]
    assert "lr 0.1 baseline (ℓ∞ ε = 0.1, 1 epoch)**" in named_title and "lr10" not in named_title, named_title
    assert "seed one (ℓ∞ ε = 0.1, 1 epoch, seed 1)**" in unnamed_title, unnamed_title
    assert named_title.startswith("**digits · lr 0.1 baseline (") and unnamed_title.startswith("**digits · seed one (")
    charts = at.selectbox(key="train_chart_job")
    assert charts.options[0].startswith("digits · seed one (") and charts.options[1].startswith(
        "digits · lr 0.1 baseline ("), charts.options
    assert not any("lr10" in text for text in texts(at.main)), "the old name is nowhere on the page"


def test_every_job_card_names_its_dataset_whatever_the_sidebar_shows(registry: Registry) -> None:
    """With the sidebar on moons, a digits job read like any other: its card now starts with "digits"."""
    job_id = train(registry, name="lr10")
    at = open_train("moons")
    assert any(t.startswith("Dataset: **moons**") for t in texts(at.main))
    assert texts(card(at, job_id))[0].startswith("**digits · lr10 ("), texts(card(at, job_id))[0]
    assert at.selectbox(key="train_chart_job").options[0].startswith("digits · lr10 (")


def test_a_cancelled_job_says_what_it_kept_and_once_resumed_which_job_took_its_run_on(registry: Registry) -> None:
    """A cancelled card said "cancelled" only, and after a Resume still looked like an open problem."""
    args = TrainConfig(**{**SMALL, "epochs": 30, "seed": 5, "name": "long"}).to_dict()
    first = submit_job(registry, "train", args)
    stop_after_epochs(registry, first, 1)
    kept = registry.get_run(get_job(registry, first)["run_id"])["epochs_done"]
    at = open_train()
    first_card = card(at, first)
    assert texts(first_card)[0].endswith(":orange-badge[cancelled]")
    assert f"Kept {kept} of 30 epochs." in texts(first_card), texts(first_card)
    [resume] = first_card.button
    assert resume.label == "Resume"

    resume.click().run()  # the card's own Resume: a new job for the same run
    assert not at.exception, at.exception
    second = list_jobs(registry)[0]["id"]
    assert second != first
    stop_after_epochs(registry, second, kept + 1)
    kept_later = registry.get_run(get_job(registry, second)["run_id"])["epochs_done"]
    at = open_train()
    first_card, second_card = card(at, first), card(at, second)
    assert texts(first_card)[0].endswith(":gray-badge[cancelled]"), "taken over: no open problem"
    assert texts(first_card)[1] == (f"Kept {kept} of 30 epochs. :material/replay: Resumed since by job `{second}` "
                                    "(now cancelled)."), texts(first_card)
    assert not first_card.button, "its run goes on from the newer job, not from this card"
    assert f"Kept {kept_later} of 30 epochs." in texts(second_card) and kept_later > kept
    assert [b.label for b in second_card.button] == ["Resume"]


def test_the_queued_note_is_shown_while_its_job_is_queued_and_goes_once_cancelled(
        atlas_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AppTest's side (no process is started): the note comes with the panel, for the job the form queued."""
    monkeypatch.setattr("core.jobs.queue.spawn_job", lambda registry, job_id: 0)
    at = open_train()
    at.number_input(key="train_epochs").set_value(3)
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception, at.exception
    [job] = list_jobs(Registry(atlas_home))
    assert [s.value for s in at.success] == [f"Queued job `{job['id']}`. Progress appears below."]
    next(b for b in card(at, job["id"]).button if b.label == "Cancel").click().run()
    assert not at.exception, at.exception
    assert list_jobs(Registry(atlas_home))[0]["status"] == "cancelling"
    assert not at.success


@pytest.fixture
def server(atlas_home: Path, tmp_path: Path) -> Iterator[str]:
    """The dashboard on a free port, on this test's ATLAS_HOME."""
    from tests.e2e.conftest import dashboard_server

    with dashboard_server(atlas_home, tmp_path, ATLAS_WARM="0") as url:
        yield url


@pytest.mark.e2e
def test_the_queued_note_goes_when_its_job_is_cancelled_from_its_card_in_a_browser(
        registry: Registry, server: str) -> None:
    """The tester's steps: Start training, then Cancel on the new card. The card's click reruns the jobs panel
    alone, and the note, written by the page outside it, stayed on screen under the form."""
    from playwright.sync_api import sync_playwright

    from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
    from tests.e2e.ui import TIMEOUT_MS, go_to, open_app

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing; `bash scripts/test.sh` installs Debian's chromium")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
            open_app(page, server)
            go_to(page, "Train", "Train a model")
            page.get_by_label("Epochs").fill("50")
            page.get_by_role("button", name="Start training").click()
            page.get_by_text("Queued job").wait_for(timeout=TIMEOUT_MS)
            [job] = list_jobs(registry)
            job_card = page.locator(f"[class*='st-key-job_{job['id']}']")
            job_card.get_by_role("button", name="Cancel").click()
            job_card.filter(has_text="cancelled").wait_for(timeout=TIMEOUT_MS)
            page.get_by_text("Queued job").wait_for(state="detached", timeout=5_000)
            assert get_job(registry, job["id"])["status"] == "cancelled"
        finally:
            browser.close()
