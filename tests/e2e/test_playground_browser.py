"""The Playground in a real browser: both toy networks trained live, their decision regions readable on a projector."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.ui import TIMEOUT_MS, assert_healthy, go_to, open_app, shot

pytestmark = pytest.mark.e2e


def _overlap(a: dict, b: dict) -> bool:
    return (a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"]
            and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"])


def test_the_decision_regions_fill_their_half_of_a_1280_projector(server: str, page, artifacts: Path) -> None:
    """At 1280 px with the sidebar open each plane was 213 px square in its ~380 px column: the colour bar beside it
    and a seven-row legend under it took the rest."""
    page.set_viewport_size({"width": 1280, "height": 720})
    open_app(page, server)
    go_to(page, "Playground", "Playground")
    page.get_by_role("button", name="Start").click()
    main = page.get_by_test_id("stMain")
    for heading in ("Standard (ERM)", "Adversarial (PGD-AT)"):
        main.get_by_text(f"{heading} · decision regions").first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stProgress]')]"
                           ".filter(e => e.textContent.startsWith('done')).length === 2", timeout=TIMEOUT_MS)
    # Once both have ended the page reruns in full (to stop polling): for a moment the old charts sit beside the new.
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]') && [...document"
                           ".querySelectorAll('.js-plotly-plot')].filter(e => e.textContent.includes('decision "
                           "regions')).length === 2", timeout=TIMEOUT_MS)
    page.wait_for_timeout(1000)
    planes = page.locator(".js-plotly-plot").filter(has_text="decision regions")
    for i in range(2):
        plane = planes.nth(i)
        area = plane.locator(".nsewdrag").first.bounding_box()
        assert area["width"] >= 270 and abs(area["width"] - area["height"]) <= 2, area
        bar, x_title = plane.locator(".colorbar").bounding_box(), plane.locator(".xtitle").bounding_box()
        assert not _overlap(bar, area) and not _overlap(bar, x_title), (bar, area, x_title)
        rows = {round(box["y"]) for box in (t.bounding_box() for t in plane.locator(".legend .traces").all())}
        assert len(rows) <= 4, f"legend rows at {sorted(rows)}"
        legend = plane.locator(".legend").bounding_box()
        assert legend["y"] >= x_title["y"] + x_title["height"]
        # The figure's height goes to the plane, not to blank bands: with the legend placed as a share of the plot's
        # height there were ~50 px between colour bar and plane and ~80 px between x-axis title and legend.
        assert area["y"] - (bar["y"] + bar["height"]) <= 40, (bar, area)
        assert legend["y"] - (x_title["y"] + x_title["height"]) <= 55, (x_title, legend)
    shot(page, artifacts, "playground-1280")
    assert_healthy(page)
