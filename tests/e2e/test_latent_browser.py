"""The Latent page in a real browser: the UMAP maps draw, ε scrubs, a box selection shows the chosen images, the
Points choices stop at the split's size and no chart text is too small to read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.ui import TIMEOUT_MS, assert_healthy, crowded_ticks, go_to, open_app, options_of, shot

pytestmark = pytest.mark.e2e
MAP_TIMEOUT_MS = 240_000  # first UMAP map on a cold server: compile (if the warm-up has not finished) + attack
SMALL_CHART_TEXT_JS = """() => [...document.querySelectorAll('.js-plotly-plot text')]
  .filter(t => t.textContent.trim() && t.getBoundingClientRect().width > 0)
  .map(t => [t.textContent.slice(0, 30), parseFloat(getComputedStyle(t).fontSize)]).filter(([, px]) => px < 11)"""


def test_latent_maps_scrub_and_select(server: str, page, artifacts: Path) -> None:
    open_app(page, server)
    go_to(page, "Latent space", "Latent space")
    page.get_by_text("Drag a box (or lasso)").wait_for(timeout=MAP_TIMEOUT_MS)
    charts = page.locator('[data-testid="stPlotlyChart"]')
    assert page.get_by_text("Primary: digits SmallCNN · PGD-AT").count() == 1
    assert page.get_by_text(re.compile(r"^UMAP of penultimate")).count() == 2, "both maps are UMAP"
    assert page.get_by_text(re.compile(r"^Primary: .* · UMAP$")).count() == 1, "the map's title names its projection"
    # digits' test split has 450 points: 1000 and 2000 were offered.
    assert options_of(page, "Points") == ["100", "200", "all 450"]
    page.locator(".js-plotly-plot .legend").first.wait_for(timeout=TIMEOUT_MS)
    assert page.evaluate(SMALL_CHART_TEXT_JS) == [], "chart text under 11 px"
    assert crowded_ticks(page) == []
    shot(page, artifacts, "latent-start")

    # Scrub to the largest ε: the adversarial points move, the drift matrices stay.
    slider = page.get_by_role("slider").first
    slider.focus()
    page.keyboard.press("End")
    page.get_by_text("ε = 0.3", exact=True).first.wait_for(timeout=TIMEOUT_MS)

    # A box over the middle of the primary map selects points; the gallery shows their images and labels.
    plot = charts.first.locator(".nsewdrag").first
    box = plot.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5, steps=12)
    page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] * 0.75, steps=12)
    page.mouse.up()
    header = page.get_by_text(re.compile(r"Selected in digits SmallCNN · PGD-AT.*\((\d+) points, at ε = 0\.3\)"))
    header.wait_for(timeout=TIMEOUT_MS)
    count = int(re.search(r"\((\d+) points", header.inner_text()).group(1))
    captions = page.locator('[data-testid="stImageCaption"]')
    captions.first.wait_for(timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)
    assert captions.count() == min(count, 24) and count > 0
    assert page.locator('[data-testid="stImage"] img').count() == captions.count()
    caption = captions.first.inner_text()
    assert re.fullmatch(r"#\d+ · \d → \d", caption.strip()), caption
    shot(page, artifacts, "latent-selection")
    assert_healthy(page)
