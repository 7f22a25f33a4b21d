"""Dashboard speed: cold start, page switch and server memory, against a bare Streamlit app in the same run.

Usage: python bench/bench_dashboard.py [--repeats 3] [--out bench/RESULTS.md]

* cold start: from launching `bash scripts/dashboard.sh` to the hub's chart drawn in headless Chromium
  (peer: a bare two-page Streamlit app with one plotly chart and one dataframe, to its chart drawn);
* page switch: click a sidebar link until the new page's heading is visible (median of 10, both apps);
* memory: server RSS after visiting every page with the shipped models loaded.
Targets (issue 3): cold start ≤ 6 s, page switch ≤ 1 s, RSS ≤ 1.5 GB.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--no-first-run"]
BARE = {"app.py": "import streamlit as st\nst.navigation([st.Page('a.py', title='A'), st.Page('b.py', title='B')]).run()\n",
        "a.py": ("import streamlit as st, pandas as pd, plotly.graph_objects as go\nst.title('Page A')\n"
                 "st.plotly_chart(go.Figure(go.Scatter(x=[1, 2, 3], y=[1, 3, 2])))\n"
                 "st.dataframe(pd.DataFrame({'a': [0.1, 0.5, 0.9]}))\n"),
        "b.py": "import streamlit as st\nst.title('Page B')\n"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(cmd: list[str], port: int, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([*cmd, "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=1):
                return proc, url
        except OSError:
            time.sleep(0.05)


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        kb = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
    return kb / 1024


def measure(browser, cmd: list[str], env: dict, ready, pages: list[tuple[str, str]]) -> dict[str, float]:
    start = time.perf_counter()
    proc, url = launch(cmd, free_port(), env)
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.goto(url, wait_until="domcontentloaded")
        ready(page)
        cold = time.perf_counter() - start
        switches = []
        for i in range(10):
            link, heading = pages[i % len(pages)]
            t0 = time.perf_counter()
            page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=link).click()
            page.get_by_role("heading", name=heading).wait_for(timeout=30_000)
            switches.append(time.perf_counter() - t0)
        page.close()
        return {"cold": cold, "switch": statistics.median(switches), "rss": rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    bare_dir = Path(tempfile.mkdtemp(prefix="bare-app-"))
    for name, text in BARE.items():
        (bare_dir / name).write_text(text)
    env = {**os.environ, "ATLAS_HOME": tempfile.mkdtemp(prefix="bench-home-"), "PYTHONPATH": str(ROOT)}
    atlas_cmd = ["bash", "scripts/dashboard.sh"]
    bare_cmd = [str(ROOT / ".venv" / "bin" / "python"), "-m", "streamlit", "run", str(bare_dir / "app.py")]
    results: dict[str, list[dict[str, float]]] = {"atlas": [], "bare": []}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        for _ in range(args.repeats):
            results["bare"].append(measure(browser, bare_cmd, env,
                                           lambda p: p.locator(".js-plotly-plot").first.wait_for(timeout=60_000),
                                           [("B", "Page B"), ("A", "Page A")]))
            results["atlas"].append(measure(browser, atlas_cmd, env,
                                            lambda p: p.locator(".js-plotly-plot").first.wait_for(timeout=60_000),
                                            [("Train", "Train a model"), ("Learn", "Learn"), ("Model hub", "Model hub")]))
        browser.close()
    med = {app: {k: statistics.median(r[k] for r in runs) for k in ("cold", "switch", "rss")}
           for app, runs in results.items()}
    a, b = med["atlas"], med["bare"]
    lines = [f"### Dashboard — {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, median of {args.repeats} launches",
             "", f"Command: `python bench/bench_dashboard.py --repeats {args.repeats}`", "",
             "| measure | Atlas | bare Streamlit app (peer) | Atlas / peer | target |", "|---|---|---|---|---|",
             f"| cold start to hub chart drawn | {a['cold']:.2f} s | {b['cold']:.2f} s | {a['cold'] / b['cold']:.2f}× | ≤ 6 s |",
             f"| page switch (median of 10) | {a['switch']:.3f} s | {b['switch']:.3f} s | "
             f"{a['switch'] / b['switch']:.2f}× | ≤ 1 s |",
             f"| server RSS after all pages | {a['rss']:.0f} MB | {b['rss']:.0f} MB | {a['rss'] / b['rss']:.2f}× | "
             "≤ 1.5 GB |", ""]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
