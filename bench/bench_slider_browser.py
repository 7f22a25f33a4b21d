"""ε-slider response in a real browser: Latent page and Robustness page vs Attack Lab (peer), on the real server.

Usage: python bench/bench_slider_browser.py [--moves 8] [--out bench/RESULTS.md]

Starts the dashboard (README launch command, fresh ATLAS_HOME, UMAP warm-up on), waits for the warm-up, then in
headless Debian Chromium presses End/Home on each page's ε slider and times key press → the new ε drawn (Latent:
the chart's "ε = …" note; Robustness: the flip matrix's title, the 4th of its 8 charts, then the page idle; Lab: the
prediction badge). Includes the server rerun, the websocket and plotly's redraw (software rendering here: no GPU),
so it is an upper bound for a laptop browser. On the Robustness page both ends of the slider are ε that have not been
computed: the page answers them from the minimal-norm run and computes the attacks at ε only when asked.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))
from common import emit  # noqa: E402

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy  # noqa: E402


def timed_moves(page, moves: int, done) -> list[float]:
    slider = page.get_by_role("slider").first
    slider.focus()
    times = []
    for i in range(moves):
        key = "End" if i % 2 == 0 else "Home"
        start = time.perf_counter()
        page.keyboard.press(key)
        done(key)
        times.append(time.perf_counter() - start)
    return times


def idle(page) -> None:
    """Wait until Streamlit shows no "running" widget (the script and its reruns are done)."""
    status = page.locator("[data-testid=stStatusWidget]")
    for _ in range(2400):
        if status.count() == 0:
            return
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--moves", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    env = {**os.environ, "ATLAS_HOME": tempfile.mkdtemp(prefix="bench-slider-"), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(["bash", "scripts/dashboard.sh", "--server.port", str(port), "--server.headless", "true"],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout=300)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            page.goto(url + "/latent")
            page.get_by_text("Drag a box (or lasso)").wait_for(timeout=600_000)
            time.sleep(2)
            note = page.locator(".js-plotly-plot .annotation-text")
            latent = timed_moves(page, args.moves, lambda key: note.filter(
                has_text="ε = 0.3" if key == "End" else "ε = clean").first.wait_for(timeout=60_000))
            page.goto(url + "/robustness")
            page.get_by_text("Where attacked points go").wait_for(timeout=600_000)
            idle(page)
            slider = page.get_by_role("slider").first
            titles = page.locator(".js-plotly-plot .gtitle")

            def robustness_done(key: str) -> None:
                eps = slider.get_attribute("aria-valuetext")  # the client moves the thumb at once
                titles.filter(has_text=f"Where attacked points go (ε = {eps})").first.wait_for(timeout=300_000)
                idle(page)

            robustness = timed_moves(page, args.moves, robustness_done)
            page.goto(url + "/attack-lab")
            page.get_by_role("slider").wait_for(timeout=300_000)
            time.sleep(2)
            badges = page.locator('[class*="st-key-lab_"][class*="_verdict"]')
            lab = timed_moves(page, args.moves, lambda key: badges.filter(
                has_text="fooled" if key == "End" else "still 0").first.wait_for(timeout=60_000))
            browser.close()
    finally:
        os.killpg(proc.pid, 15)
    med = {name: statistics.median(t) for name, t in (("latent", latent), ("robustness", robustness), ("lab", lab))}
    emit(["", f"### ε slider in a real browser — {time.strftime('%Y-%m-%d')}, `python bench/bench_slider_browser.py`",
          "", "| page | median | max | peer (Attack Lab, same run) median | ours / peer |", "|---|---|---|---|---|",
          f"| Latent space (2 maps of 450 points, lines off) | {med['latent']:.2f} s | {max(latent):.2f} s | "
          f"{med['lab']:.2f} s | {med['latent'] / med['lab']:.1f}× |",
          f"| Robustness (2 models, 8 charts; ε not computed before) | {med['robustness']:.2f} s | "
          f"{max(robustness):.2f} s | {med['lab']:.2f} s | {med['robustness'] / med['lab']:.1f}× |"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
