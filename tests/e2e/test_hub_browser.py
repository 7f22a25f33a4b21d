"""The model hub's row actions in a real browser (AppTest cannot select a table row): rename a model, the
registry's refusal of a too-long name, and a model whose plugin is not loaded (its actions disabled, saying why)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import expect

from core.models import build_model, load_plugins, save_checkpoint
from core.models.plugins import unload_plugins
from core.store import Registry
from core.store.imports import import_checkpoint
from core.store.registry import MAX_NAME
from tests.e2e.conftest import dashboard_server
from tests.e2e.ui import TIMEOUT_MS, assert_healthy, open_app, shot

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "assets" / "models"
SELECTED = '[data-testid="stMarkdownContainer"] p:has-text("Selected:")'


def _selected(page) -> str | None:
    line = page.locator(SELECTED)
    return line.first.inner_text().removeprefix("Selected:").strip() if line.count() else None


def _select(page, name: str) -> None:
    """Click the table's rows (its first column, where the row checkboxes are) until ``name`` is selected."""
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.scroll_into_view_if_needed()
    page.wait_for_timeout(1500)  # the grid draws on a canvas after the element appears
    seen = []
    for i in range(int((grid.bounding_box()["height"] - 35) // 35)):
        before, box = _selected(page), grid.bounding_box()  # the page may have moved since the last click
        page.mouse.click(box["x"] + 12, box["y"] + 35 + 35 * i + 17)
        for _ in range(240):  # a rerun shows the new selection (or none, for a click on the selected row)
            page.wait_for_timeout(250)
            if _selected(page) != before:
                break
        seen.append(_selected(page))
        if seen[-1] == name:
            return
    raise AssertionError(f"no row {name!r} among {seen}")


@pytest.fixture
def hub_home(tmp_path: Path, restore_plugins: None) -> Path:
    """A home with a copy of the shipped ERM model to rename, and a model of the README's example plugin, which
    the server is started without."""
    home = tmp_path / "home"
    registry = Registry(home)
    erm = MODELS / "digits-smallcnn-erm"
    import_checkpoint(registry, erm.with_suffix(".safetensors").read_bytes(), erm.with_suffix(".json").read_bytes(),
                      name="to rename", measure=False)
    (report,) = load_plugins(str(ROOT / "examples" / "plugins" / "tiny_mlp.py"))
    assert report.ok, report
    weights = save_checkpoint(build_model("example_tiny_mlp", hidden=16),
                              {"dataset": "digits", "name": "plugin MLP", "method": "erm"}, tmp_path / "mlp")
    import_checkpoint(registry, weights.read_bytes(), weights.with_suffix(".json").read_bytes(), measure=False)
    unload_plugins()
    return home


def test_rename_a_model_and_see_a_plugin_model_that_cannot_be_analysed(hub_home: Path, tmp_path: Path, page,
                                                                     artifacts: Path) -> None:
    (tmp_path / "log").mkdir()
    with dashboard_server(hub_home, tmp_path / "log", ATLAS_PLUGINS="") as server:
        page.set_viewport_size({"width": 1280, "height": 1000})
        open_app(page, server)

        _select(page, "plugin MLP")
        warning = page.get_by_text("comes from a plugin that is not loaded here")
        expect(warning).to_be_visible(timeout=TIMEOUT_MS)
        for name in ("Make primary", "Make comparison"):
            expect(page.get_by_role("button", name=name)).to_be_disabled()
        shot(page, artifacts, "hub-plugin-not-loaded")

        _select(page, "to rename")
        page.get_by_role("button", name="Rename / delete").click()
        field = page.get_by_label("New name", exact=True).and_(page.get_by_role("textbox"))
        field.fill("x" * (MAX_NAME + 7))  # pasted too long: the registry refuses it and says why
        page.get_by_role("button", name="Rename", exact=True).click()
        expect(page.get_by_text(f"at most {MAX_NAME}", exact=False).first).to_be_visible(
            timeout=TIMEOUT_MS)
        assert {r["name"] for r in Registry(hub_home).list_runs()} >= {"to rename"}

        field.fill("renamed in the browser")
        page.get_by_role("button", name="Rename", exact=True).click()
        page.get_by_text("Renamed to renamed in the browser").first.wait_for(timeout=TIMEOUT_MS)
        names = {r["name"] for r in Registry(hub_home).list_runs()}
        assert "renamed in the browser" in names and "to rename" not in names, names
        assert_healthy(page)
