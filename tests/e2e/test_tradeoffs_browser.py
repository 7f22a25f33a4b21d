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
