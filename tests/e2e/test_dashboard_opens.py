"""Every page in a real browser on the real server started by the README's launch command."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.e2e.ui import TIMEOUT_MS, assert_healthy, crowded_ticks, go_to, open_app, options_of, shot

pytestmark = pytest.mark.e2e


def test_every_page_renders(server: str, page, artifacts: Path) -> None:
    open_app(page, server)
    logo = page.get_by_test_id("stSidebar").get_by_test_id("stSidebarLogo").get_attribute("src")
    assert "Robustness Atlas" in base64.b64decode(logo.split(",", 1)[1]).decode(), "the name in the sidebar's header"
    shot(page, artifacts, "page-hub")
    for link, heading, name in (("Train", "Train a model", "page-train"), ("Learn", "Learn", "page-learn"),
                                ("Theory Lab", "Theory Lab", "page-theory"), ("Features", "Features", "page-features"),
                                ("Geometry", "Decision-boundary geometry", "page-geometry"),
                                ("Playground", "Playground", "page-playground"),
                                ("Model hub", "Model hub", "page-hub-again")):
        go_to(page, link, heading)
        shot(page, artifacts, name)  # waits for the page to settle, so the charts are drawn before the check
        assert crowded_ticks(page) == [], name
    assert_healthy(page)


def test_hub_shows_the_shipped_models_side_by_side(server: str, page) -> None:
    open_app(page, server)
    assert "PGD-AT" in page.locator("[class*='st-key-card_primary_']").inner_text()
    assert "ERM" in page.locator("[class*='st-key-card_comparison_']").inner_text()
    names = options_of(page, "Primary model")
    assert {"digits SmallCNN · ERM", "digits SmallCNN · PGD-AT ε=0.1"} <= set(names)
    assert_healthy(page)


def test_the_house_style_sheet_reaches_the_page_and_narrow_forms_keep_their_values_readable(server: str,
                                                                                             page) -> None:
    """assets/style.css held its own <style> tags; st.html wraps a .css file in them again, so the page got nothing
    (a stray HTML element instead). At 1024 px the form's −/+ buttons then hid the ε value ("0.")."""
    page.set_viewport_size({"width": 1024, "height": 768})
    open_app(page, server)
    go_to(page, "Train", "Train a model")
    eps = page.get_by_role("spinbutton", name="ε (ℓ∞, image scale 0–1)")
    # The field is drawn empty for a moment before its session value arrives (~1 in 4 page loads, < 200 ms).
    expect(eps).to_have_value("0.1", timeout=TIMEOUT_MS)
    form = page.get_by_test_id("stForm")
    assert form.get_by_test_id("stNumberInputStepUp").first.evaluate("e => getComputedStyle(e).display") == "none"
    field = eps.evaluate("e => [e.scrollWidth, e.clientWidth]")
    assert field[0] <= field[1], f"the ε field's text overflows its box: {field}"
    # The Features page's measure boxes held six two-line labels level in 40 px each; at 1024 they overlapped.
    go_to(page, "Features", "Features")
    page.locator(".js-plotly-plot").filter(has_text="points").first.wait_for(timeout=300_000)
    page.wait_for_timeout(1000)
    assert crowded_ticks(page) == []
    page.set_viewport_size({"width": 1280, "height": 900})
    go_to(page, "Train", "Train a model")
    # Wide screens keep the buttons (wait_for fails if they stay hidden).
    page.get_by_test_id("stForm").get_by_test_id("stNumberInputStepUp").first.wait_for(state="visible",
                                                                                         timeout=TIMEOUT_MS)
    assert_healthy(page)
