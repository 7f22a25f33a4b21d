"""The Latent page's first visit on a fresh install, in a real browser: with the shipped maps (assets/latent, read
from disk) against the same visit with them hidden (the page attacks 450 points at 8 budgets for both models and
projects them: the peer, what the page did before the maps were shipped).

Usage: python bench/bench_latent_first_visit.py [--repeats 2] [--settle 35] [--out bench/RESULTS.md]

Each visit: a new dashboard server on a fresh ATLAS_HOME, ``--settle`` seconds for its start-up and background
warm-up (UMAP's compilation), the hub opened in headless Chromium, then a click on "Latent space" and the time
until both maps are drawn. The two kinds alternate. While hidden, assets/latent is renamed to assets/.latent-hidden
and put back afterwards (also on Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

SHIPPED = ROOT / "assets" / "latent"
HIDDEN = ROOT / "assets" / ".latent-hidden"
PORT = 8591


def visit(settle: float) -> float:
    """Seconds from the click on "Latent space" to both maps drawn, on a new server with a fresh home."""
    from playwright.sync_api import sync_playwright

    from tests.e2e import ui

    home = tempfile.mkdtemp(prefix="atlas-bench-latent-")
    env = {**os.environ, "ATLAS_HOME": home}
    server = subprocess.Popen(["bash", "scripts/dashboard.sh", "--server.port", str(PORT), "--server.headless",
                               "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://localhost:{PORT}/_stcore/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the dashboard did not start") from None
                time.sleep(0.5)
        time.sleep(settle)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium")
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            ui.open_app(page, f"http://localhost:{PORT}")
            start = time.perf_counter()
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Latent space").click()
            page.locator(".js-plotly-plot").nth(1).wait_for(timeout=300_000)
            seconds = time.perf_counter() - start
            if page.locator('[data-testid="stException"]').count():
                raise RuntimeError("the Latent page raised an exception")
            browser.close()
        return seconds
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--settle", type=float, default=35.0, help="seconds between server start and the visit")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not SHIPPED.is_dir():
        sys.exit("assets/latent is missing: run `python -m core build-defaults --evaluations-only` first")
    times: dict[str, list[float]] = {"shipped": [], "computed": []}
    try:
        for _ in range(args.repeats):
            times["shipped"].append(visit(args.settle))
            SHIPPED.rename(HIDDEN)
            try:
                times["computed"].append(visit(args.settle))
            finally:
                HIDDEN.rename(SHIPPED)
    finally:
        if HIDDEN.exists() and not SHIPPED.exists():
            HIDDEN.rename(SHIPPED)
    shipped, computed = (statistics.median(times[k]) for k in ("shipped", "computed"))
    emit(["", f"### Latent page, first visit on a fresh install (`python bench/bench_latent_first_visit.py "
          f"--repeats {args.repeats}`)", "",
          "| first visit, PGD-AT + ERM, defaults | shipped maps (product) | computed (peer, maps hidden) | "
          "peer ÷ product |", "|---|---|---|---|",
          f"| click → both maps drawn, median of {args.repeats} | {shipped:.1f} s | {computed:.1f} s | "
          f"{computed / shipped:.1f}× |",
          "", "Each: " + ", ".join(f"{k} " + " / ".join(f"{t:.1f} s" for t in v) for k, v in times.items()) + "."],
         args.out)


if __name__ == "__main__":
    main()
