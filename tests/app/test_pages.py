"""Every page under AppTest on the shipped models: renders, widgets change what is shown, bad input starts nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.jobs import list_jobs
from core.store import Registry

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
PAGES = {"hub": "Model hub", "train": "Train a model", "learn": "Learn"}


def open_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    assert not at.exception
    return at


@pytest.mark.parametrize("page,title", PAGES.items(), ids=list(PAGES))
def test_page_renders_without_exception(page: str, title: str) -> None:
    at = open_app()
    at.switch_page(f"../pages/{page}.py").run()
    assert not at.exception
    assert at.title[0].value == title


def test_hub_defaults_to_pgd_at_next_to_erm() -> None:
    at = open_app()
    assert at.session_state["primary_run"] == "shipped-digits-smallcnn-pgd-at"
    assert at.session_state["comparison_run"] == "shipped-digits-smallcnn-erm"
    assert len(at.get("plotly_chart")) == 1


def test_choosing_a_comparison_model_changes_the_cards() -> None:
    at = open_app()
    at.selectbox(key="_sb_comparison").select("shipped-digits-smallcnn-trades").run()
    assert not at.exception
    assert at.session_state["comparison_run"] == "shipped-digits-smallcnn-trades"
    markdown = " ".join(m.value for m in at.markdown)
    assert "TRADES" in markdown and "· _comparison_" in markdown


def test_teaching_mode_toggle_hides_the_explanations() -> None:
    at = open_app()
    assert any(e.label == "What am I looking at?" for e in at.expander)
    at.toggle(key="_sb_teaching").set_value(False).run()
    assert not any(e.label == "What am I looking at?" for e in at.expander)


def test_dataset_switch_resets_models_to_that_dataset() -> None:
    at = open_app()
    at.selectbox(key="_sb_dataset").select("moons").run()
    assert at.session_state["primary_run"] == "shipped-moons-mlp-pgd-at"
    assert at.session_state["comparison_run"] == "shipped-moons-mlp-erm"
    at.selectbox(key="_sb_dataset").select("circles").run()
    assert not at.exception and at.session_state["primary_run"] is None
    assert any("No models for **circles**" in i.value for i in at.info)


def test_train_form_refuses_invalid_values_and_starts_nothing(atlas_home: Path) -> None:
    at = open_app()
    at.switch_page("../pages/train.py").run()
    at.number_input(key="train_eps_digits").set_value(0.0)
    at.button[0].click().run()
    assert not at.exception
    assert any("Not started" in e.value and "needs ε > 0" in e.value for e in at.error)
    assert list_jobs(Registry(atlas_home)) == []


def test_train_form_offers_only_fitting_architectures() -> None:
    at = open_app()
    at.switch_page("../pages/train.py").run()
    assert at.selectbox(key="train_arch").options == ["smallcnn"]
    at.selectbox(key="_sb_dataset").select("moons").run()
    assert at.selectbox(key="train_arch").options == ["mlp"]


def test_the_hub_renders_without_importing_torch(subprocess_env: dict) -> None:
    """The cold-start budget depends on it: torch (~1.5 s) is imported in the background after the first page."""
    import subprocess
    import sys

    probe = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
             f"at = AppTest.from_file({APP!r}, default_timeout=90).run()\n"
             "assert not at.exception, at.exception\nprint('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], env=subprocess_env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_training_a_dataset_without_its_files_is_refused_before_queueing(atlas_home: Path) -> None:
    at = open_app()
    at.selectbox(key="_sb_dataset").select("mnist").run()
    at.switch_page("../pages/train.py").run()
    assert any("needs its standard files" in w.value for w in at.warning)
    at.button[0].click().run()
    assert any("Not started" in e.value and "python -m core data download mnist" in e.value for e in at.error)
    assert list_jobs(Registry(atlas_home)) == []
