"""The Train page with a plugin loaded: its architecture is offered for the data it fits and a job can be queued
with it (the job's own process trains it; tests/core/test_plugins.py trains one through the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.jobs import cancel_job, list_jobs
from core.models import load_plugins
from core.store import Registry

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")


@pytest.fixture
def example_plugin(restore_plugins: None) -> None:
    """The README's example plugin, loaded in this process (``restore_plugins`` puts the registry back after)."""
    (report,) = load_plugins(str(ROOT / "examples" / "plugins" / "tiny_mlp.py"))
    assert report.ok and report.archs == ("example_tiny_mlp",), report


def test_the_train_page_offers_a_plugin_architecture_that_fits(example_plugin: None) -> None:
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception, at.exception
    box = at.selectbox(key="train_arch")
    assert box.options == ["SmallCNN", "example_tiny_mlp (plugin)"]
    box.set_value("example_tiny_mlp")
    at.selectbox(key="train_method").set_value("erm").run()
    next(b for b in at.button if b.label == "Start training").click().run()
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    (job,) = [j for j in list_jobs(Registry()) if j["kind"] == "train"]
    try:
        assert job["args"]["arch"] == "example_tiny_mlp" and job["args"]["dataset"] == "digits"
    finally:
        cancel_job(Registry(), job["id"])


def test_a_plugin_that_does_not_fit_is_not_offered(example_plugin: None) -> None:
    """The example MLP takes 8×8 digits only: on moons (2-D points) it is left out of the list."""
    at = AppTest.from_file(APP, default_timeout=300).run()
    at.selectbox(key="_sb_dataset").select("moons").run()
    at.switch_page("../pages/train.py").run()
    assert not at.exception, at.exception
    assert not any("example_tiny_mlp" in o for o in at.selectbox(key="train_arch").options)


def test_features_says_when_the_comparison_has_not_the_primary_models_layer(example_plugin: None) -> None:
    """The tester's plugin model as comparison next to a SmallCNN on a convolution: its units were those of its
    penultimate layer without a word (the Latent page said so for the same case)."""
    from core.models import build_model, save_checkpoint
    from core.store.imports import import_checkpoint

    mlp = build_model("example_tiny_mlp", hidden=16)
    weights = save_checkpoint(mlp, {"dataset": "digits", "name": "plugin MLP", "method": "erm"},
                              Registry().home / "exports" / "mlp")
    run = import_checkpoint(Registry(), weights.read_bytes(), weights.with_suffix(".json").read_bytes())
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["comparison"] = run["id"]
    at.run()
    at.switch_page("../pages/features.py").run()
    assert not at.exception, at.exception
    assert not [i.value for i in at.info if "has no layer" in i.value], "on the penultimate layer both have it"
    box = at.selectbox(key="feat_layer")
    box.select("body.5 · Conv2d").run()  # the MLP's body has three layers
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    (note,) = [i.value for i in at.info if "has no layer" in i.value]
    assert note.endswith("plugin MLP has no layer body.5 · Conv2d; its units are its penultimate layer's."), note
