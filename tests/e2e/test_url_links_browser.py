"""Links in a real browser: the Attack Lab's default ε stays out of the URL while an example is picked by hand, and a
link's values a page cannot take are named in a toast (also on a page that stops before its content)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.e2e.ui import TIMEOUT_MS, assert_healthy, go_to, open_app, shot

pytestmark = pytest.mark.e2e


def _wait_toast(page, text: str) -> None:
    """A toast with ``text`` appears (it hides itself after a few seconds: waited for, not read afterwards)."""
    page.get_by_test_id("stToast").filter(has_text=text).wait_for(timeout=TIMEOUT_MS)


def test_typing_a_test_index_leaves_the_default_eps_out_of_the_url(server: str, page, artifacts: Path) -> None:
    """Typing a test index put ?lab_eps=0.1 in the URL: the slider's default was 0, and the start the page gives it
    counted as the user's choice."""
    open_app(page, server)
    go_to(page, "Attack Lab", "Attack Lab")
    page.locator(".st-key-lab_comparison_verdict").wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("radio", name="By index").click()
    field = page.get_by_label("Test index (0–449)")
    field.wait_for(timeout=TIMEOUT_MS)
    field.fill("5")
    field.press("Enter")
    page.wait_for_function("location.search.includes('lab_index=5')", timeout=TIMEOUT_MS)
    page.get_by_text("by index").first.wait_for(timeout=TIMEOUT_MS)
    # The run that took the index is over (its URL write with it) before the URL is read.
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=TIMEOUT_MS)
    assert "lab_eps" not in page.url, page.url
    # An out-of-range entry is named at the field; the attack's controls stay.
    field.fill("4500")
    field.press("Enter")
    page.get_by_text("Test index (0–449) is 4500; allowed: 0 to 449").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=TIMEOUT_MS)
    page.get_by_test_id("stSelectbox").filter(has_text="Target class").wait_for(timeout=TIMEOUT_MS)
    assert "lab_eps" not in page.url, page.url
    shot(page, artifacts, "lab-index-out-of-range")
    assert_healthy(page)


def test_link_values_no_page_takes_are_named(server: str, page, artifacts: Path) -> None:
    """?th_runs=abc on the Theory Lab (a page that stops until its first run) and ?geo_index=inf on moons (which
    raised OverflowError) are named in a toast."""
    page.goto(f"{server}/theory?th_runs=abc", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Theory Lab").wait_for(timeout=TIMEOUT_MS)
    _wait_toast(page, "The link sets “th_runs” to “abc”, which this page does not take from a link")
    page.wait_for_function("!location.search.includes('th_runs')", timeout=TIMEOUT_MS)
    page.goto(f"{server}/geometry?dataset=moons&geo_index=inf", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Decision-boundary geometry").wait_for(timeout=TIMEOUT_MS)
    _wait_toast(page, "The link sets Test point (geo_index) to “inf”, which this page does not offer: it shows “999”")
    shot(page, artifacts, "geometry-moons-link")
    # Opened by its address, a page first asks the server under its path and gets a 404 (Streamlit's client).
    assert all("404" in e for e in page.console_errors), page.console_errors
    page.console_errors.clear()
    assert_healthy(page)


def test_a_link_with_a_model_of_another_dataset_opens_that_dataset(server: str, page) -> None:
    page.goto(f"{server}/?dataset=digits&primary=shipped-moons-mlp-pgd-at", wait_until="domcontentloaded")
    page.get_by_role("heading", name="Model hub").wait_for(timeout=TIMEOUT_MS)
    _wait_toast(page, "The link names the dataset digits, but its models are models of moons: moons is shown")
    page.wait_for_function("location.search.includes('dataset=moons')", timeout=TIMEOUT_MS)
    assert "primary=shipped-moons-mlp-pgd-at" in page.url
    assert_healthy(page)
