"""The README's launch command serves a working dashboard: real server, real Chromium, a screenshot."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_hub_renders_shipped_models_in_a_real_browser(server: str, page, artifacts: Path) -> None:
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Model hub").wait_for(timeout=60_000)
    page.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=60_000)
    page.wait_for_timeout(500)
    page.screenshot(path=str(artifacts / "hub.png"), full_page=True)
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.console_errors == []
    assert "Robustness Atlas" in page.locator('[data-testid="stSidebar"]').inner_text()
