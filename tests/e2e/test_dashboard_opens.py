"""Every page in a real browser on the real server started by the README's launch command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.ui import assert_healthy, go_to, open_app, options_of, shot

pytestmark = pytest.mark.e2e


def test_every_page_renders(server: str, page, artifacts: Path) -> None:
    open_app(page, server)
    assert "Robustness Atlas" in page.locator('[data-testid="stSidebar"]').inner_text()
    shot(page, artifacts, "page-hub")
    for link, heading, name in (("Train", "Train a model", "page-train"), ("Learn", "Learn", "page-learn"),
                                ("Theory Lab", "Theory Lab", "page-theory"), ("Features", "Features", "page-features"),
                                ("Geometry", "Decision-boundary geometry", "page-geometry"),
                                ("Playground", "Playground", "page-playground"),
                                ("Model hub", "Model hub", "page-hub-again")):
        go_to(page, link, heading)
        shot(page, artifacts, name)
    assert_healthy(page)


def test_hub_shows_the_shipped_models_side_by_side(server: str, page) -> None:
    open_app(page, server)
    assert "PGD-AT" in page.locator("[class*='st-key-card_primary_']").inner_text()
    assert "ERM" in page.locator("[class*='st-key-card_comparison_']").inner_text()
    names = options_of(page, "Primary model")
    assert {"digits SmallCNN · ERM", "digits SmallCNN · PGD-AT ε=0.1"} <= set(names)
    assert_healthy(page)
