"""The Trade-off Explorer in a real browser: the charts of the shipped models and a refused launch."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.ui import TIMEOUT_MS, assert_healthy, go_to, open_app, shot

pytestmark = pytest.mark.e2e


def test_tradeoffs_show_dale_curves_and_refuse_a_bad_rho(server: str, page, artifacts: Path) -> None:
    open_app(page, server)
    go_to(page, "Trade-off Explorer", "Trade-off Explorer")
    page.get_by_text("ν rises while the clean loss exceeds ρ").wait_for(timeout=TIMEOUT_MS)
    page.locator(".js-plotly-plot").nth(5).wait_for(timeout=TIMEOUT_MS)
    titles = page.locator(".js-plotly-plot .gtitle").evaluate_all("els => els.map(e => e.textContent)")
    assert "Dual variable ν (weight of the clean loss)" in titles and "Clean and robust training loss" in titles
    shot(page, artifacts, "tradeoffs")
    rho = page.get_by_label("ρ (clean-loss bound)")
    rho.fill("0")
    rho.press("Enter")
    page.get_by_role("button", name="Start training").click()
    page.get_by_text("must be > 0").wait_for(timeout=TIMEOUT_MS)
    assert page.get_by_text("Queued job").count() == 0
    assert_healthy(page)


def test_chart_pairs_stack_on_a_narrow_laptop_and_sit_side_by_side_on_a_wide_screen(server: str, page,
                                                                                    artifacts: Path) -> None:
    """At 1024 px with the sidebar open the page is ~560 px: st.columns(2) squeezed each chart to 270 px (legend cut
    to "PGD-A", "Tune t…"). The panels now wrap: stacked there, side by side at 1600 px."""
    page.set_viewport_size({"width": 1024, "height": 768})
    open_app(page, server)
    go_to(page, "Trade-off Explorer", "Trade-off Explorer")
    frontier = page.locator(".js-plotly-plot").filter(has_text="Clean vs robust accuracy")
    worst = page.locator(".js-plotly-plot").filter(has_text="Worst class vs mean robust accuracy")
    worst.wait_for(timeout=TIMEOUT_MS)
    a, b = frontier.bounding_box(), worst.bounding_box()
    assert b["y"] >= a["y"] + a["height"] - 1, (a, b)  # one below the other
    assert min(a["width"], b["width"]) >= 400, (a, b)
    tune = page.get_by_role("button", name="Tune the bias")
    assert tune.evaluate("el => el.scrollWidth <= el.clientWidth"), "the button's label is cut off"
    shot(page, artifacts, "tradeoffs-1024")
    page.set_viewport_size({"width": 1600, "height": 900})
    page.wait_for_function("""() => { const p = [...document.querySelectorAll('.js-plotly-plot')];
        return p.length > 1 && Math.abs(p[0].getBoundingClientRect().top - p[1].getBoundingClientRect().top) < 2; }""",
                           timeout=TIMEOUT_MS)
    a, b = frontier.bounding_box(), worst.bounding_box()
    assert b["x"] >= a["x"] + a["width"] and abs(a["y"] - b["y"]) < 2, (a, b)
    assert_healthy(page)
