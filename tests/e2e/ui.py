"""Small helpers for driving the Streamlit UI with Playwright like a user (clicks, not deep links)."""

from __future__ import annotations

from pathlib import Path

TIMEOUT_MS = 60_000


def open_app(page, server: str) -> None:
    page.goto(server, wait_until="domcontentloaded")
    page.get_by_role("heading", name="Model hub").wait_for(timeout=TIMEOUT_MS)
    page.locator(".js-plotly-plot").first.wait_for(timeout=TIMEOUT_MS)


def go_to(page, link: str, heading: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link).click()
    page.get_by_role("heading", name=heading, exact=True).wait_for(timeout=TIMEOUT_MS)


def combobox(page, label: str):
    return page.get_by_test_id("stSelectbox").filter(has_text=label).get_by_role("combobox")


def open_select(page, label: str) -> None:
    """Click the selectbox labelled ``label`` open. It is scrolled into view first and the click comes a moment
    later, as a user's would: a select that Playwright scrolls to and clicks at once (Comparison model and Device
    in the sidebar at 900 px) takes focus but closes its list again on the scroll, so the click looked ignored."""
    box = combobox(page, label)
    box.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box.click()


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``."""
    open_select(page, label)
    page.get_by_role("option", name=option, exact=True).click()
    page.wait_for_timeout(300)


def selected(page, label: str) -> str:
    return combobox(page, label).input_value()


def options_of(page, label: str) -> list[str]:
    open_select(page, label)
    page.get_by_role("option").first.wait_for(timeout=TIMEOUT_MS)
    names = page.get_by_role("option").all_inner_texts()
    page.keyboard.press("Escape")
    return [n.strip() for n in names]


def assert_healthy(page) -> None:
    """No Streamlit exception box and no browser console error."""
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]').first.inner_text()
    assert page.console_errors == []


CROWDED_TICKS_JS = """() => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const title = (plot.querySelector('.gtitle') || {}).textContent || '(untitled)';
    for (const layer of plot.querySelectorAll('.xaxislayer-above, .yaxislayer-above')) {
      const boxes = [...layer.querySelectorAll('text')]
        .filter(t => t.textContent.trim() && !(t.getAttribute('transform') || '').includes('rotate'))
        .map(t => [t.textContent, t.getBoundingClientRect()]).filter(([, r]) => r.width > 0);
      for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
        const [a, r] = boxes[i], [b, s] = boxes[j];
        const gapX = Math.max(r.left, s.left) - Math.min(r.right, s.right);
        const gapY = Math.max(r.top, s.top) - Math.min(r.bottom, s.bottom);
        if (gapX < 3 && gapY < -1) out.push(`${title}: "${a}" / "${b}"`);
      }
    }
  }
  return out;
}"""


def crowded_ticks(page) -> list[str]:
    """Level tick labels of any chart on the page that touch or overlap (less than 3 px apart), as "title: a / b".
    Turned labels are left out: their boxes overlap while their text does not."""
    return page.evaluate(CROWDED_TICKS_JS)


def shot(page, folder: Path, name: str) -> None:
    """Screenshot of the whole page. Streamlit scrolls inside its main container, so the viewport is stretched
    to the content's height for the picture and restored afterwards."""
    page.wait_for_timeout(400)
    size = page.viewport_size
    height = page.evaluate("document.querySelector('[data-testid=stMain]').scrollHeight")
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], min(int(height) + 40, 6000))})
    page.wait_for_timeout(600)
    page.screenshot(path=str(folder / f"{name}.png"))
    page.set_viewport_size(size)
