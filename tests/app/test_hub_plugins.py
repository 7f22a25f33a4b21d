"""The model hub with a model whose architecture's plugin is not loaded: it used to look like any other model until
a page failed to load it; now its row, its card and its actions say why it cannot be analysed."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.models import ARCHS, build_model, load_plugins, save_checkpoint
from core.models.plugins import unload_plugins
from core.store import Registry
from core.store.imports import import_checkpoint
from dashboard.components.plugins import SHIPPED_ARCHS

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
NOT_LOADED = "comes from a plugin that is not loaded here"


def test_the_hubs_list_of_shipped_architectures_is_the_registrys() -> None:
    shipped = {name for name, cls in ARCHS.items() if cls.__module__.startswith("core.models.")}
    assert shipped == SHIPPED_ARCHS


@pytest.fixture
def plugin_run(restore_plugins: None, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A model of the README's example plugin, imported while the plugin was loaded; then the plugin is gone, as
    for a dashboard started without ATLAS_PLUGINS."""
    monkeypatch.delenv("ATLAS_PLUGINS", raising=False)
    (report,) = load_plugins(str(ROOT / "examples" / "plugins" / "tiny_mlp.py"))
    assert report.ok, report
    weights = save_checkpoint(build_model("example_tiny_mlp", hidden=16),
                              {"dataset": "digits", "name": "plugin MLP", "method": "erm"},
                              Registry().home / "exports" / "mlp")
    run = import_checkpoint(Registry(), weights.read_bytes(), weights.with_suffix(".json").read_bytes())
    unload_plugins()
    assert "example_tiny_mlp" not in ARCHS
    return run


def test_a_model_whose_plugin_is_not_loaded_says_so_in_the_hub(plugin_run: dict) -> None:
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["primary"] = plugin_run["id"]
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    status = dict(zip(table["name"], table["status"]))
    assert status["plugin MLP"] == "no plugin", status
    assert {s for name, s in status.items() if name != "plugin MLP"} == {"shipped"}, status
    # Not offered as a model to analyse: the link's model is named with the reason, the default is shown instead.
    assert plugin_run["id"] not in at.selectbox(key="_sb_primary").options
    assert at.session_state["primary_run"] != plugin_run["id"]
    (toast,) = [t.value for t in at.toast if NOT_LOADED in t.value]
    assert "`example_tiny_mlp`" in toast and "`ATLAS_PLUGINS` is not set" in toast, toast


def test_with_its_plugin_loaded_the_model_is_like_any_other(plugin_run: dict) -> None:
    (report,) = load_plugins(str(ROOT / "examples" / "plugins" / "tiny_mlp.py"))
    assert report.ok, report
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["primary"] = plugin_run["id"]
    at.run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert "no plugin" not in set(table["status"]), table
    assert not [w.value for w in at.warning if NOT_LOADED in w.value]
