"""Latent page speed (issue 6) on the shipped digits models, 2-core CPU.

Usage: python bench/bench_latent.py [--repeats 3] [--moves 30] [--out bench/RESULTS.md]

1. UMAP fit on 2,000 points (penultimate features of the ERM model: all 1,797 digits + 203 FGSM twins), warm;
   peer: umap-learn's own small-data path (Euclidean metric) with the same parameters, in the same process.
2. transform of 500 adversarial points (PGD-10 at ε = 0.1); peer: the same through umap-learn's own path.
3. First map after a fresh start: a new process (numba's disk cache as a dashboard restart finds it) runs the
   dashboard's background warm-up, then fits the first map; ratio to a second, warm fit in that process. The same
   without the warm-up shows what it buys (the first map then pays the compilation).
4. ε scrub: the Latent page under AppTest (both maps cached), each move sets the ε slider and reruns; AppTest
   reruns the whole page, an upper bound on the fragment the browser reruns. Peer: the page's first render.
5. Plot serialisation of 10,000 points: figure build + plotly JSON (what st.plotly_chart sends); peer: the same
   figure with animation frames for 9 ε.
Targets: fit ≤ 5 s, transform ≤ 1.5 s per ε, first map ≤ 1.5× warm, scrub ≤ 150 ms p95, 10k points ≤ 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

FIRST_MAP = """
import json, sys, time, threading
import numpy as np
t0 = time.perf_counter()
from core.latent.projection import UMAPProjector, warm_up
feats = np.load(sys.argv[1])
warm = sys.argv[2] == "1"
if warm:
    thread = threading.Thread(target=warm_up)
    thread.start(); thread.join()
ready = time.perf_counter() - t0
start = time.perf_counter(); UMAPProjector(feats, seed=0); first = time.perf_counter() - start
start = time.perf_counter(); UMAPProjector(feats, seed=1); second = time.perf_counter() - start
print(json.dumps({"ready_s": ready, "first_s": first, "warm_s": second}))
"""


def med(values: list[float]) -> float:
    return float(statistics.median(values))


def features() -> tuple[np.ndarray, np.ndarray]:
    """(2,000 clean-ish features, 500 PGD-10 adversarial features) of the ERM model's penultimate layer."""
    import torch

    from core.attacks import make_attack
    from core.data import load_dataset
    from core.latent import extract_features
    from core.models import load_checkpoint

    model, _ = load_checkpoint(ROOT / "assets" / "models" / "digits-smallcnn-erm")
    x = torch.cat([load_dataset("digits", "train").x, load_dataset("digits", "test").x])
    y = torch.cat([load_dataset("digits", "train").y, load_dataset("digits", "test").y])
    gen = torch.Generator().manual_seed(0)
    twins = make_attack("fgsm")(model, x[:203], y[:203], 0.1, generator=gen).x_adv
    clean = extract_features(model, torch.cat([x, twins])).numpy()
    adv = make_attack("pgd", steps=10)(model, x[:500], y[:500], 0.1, generator=gen).x_adv
    return clean, extract_features(model, adv).numpy()


def umap_rows(clean: np.ndarray, adv: np.ndarray, repeats: int) -> list[str]:
    import umap

    from core.latent.projection import N_EPOCHS, UMAPProjector, warm_up

    warm_up()
    fits, transforms = [], []
    for rep in range(repeats):
        start = time.perf_counter()
        projector = UMAPProjector(clean, seed=rep)
        fits.append(time.perf_counter() - start)
        start = time.perf_counter()
        projector.transform(adv)
        transforms.append(time.perf_counter() - start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = umap.UMAP(n_neighbors=15, min_dist=0.1, n_epochs=N_EPOCHS, random_state=0)
        peer.fit(clean[:300])  # compile its own path first
        peer.transform(adv[:20])
        start = time.perf_counter()
        peer = umap.UMAP(n_neighbors=15, min_dist=0.1, n_epochs=N_EPOCHS, random_state=0).fit(clean)
        peer_fit = time.perf_counter() - start
        start = time.perf_counter()
        peer.transform(adv)
        peer_transform = time.perf_counter() - start
    return [f"| UMAP fit, 2,000 points (warm) | {med(fits):.2f} s | umap-learn's own path: {peer_fit:.2f} s | "
            f"{peer_fit / med(fits):.1f}× | ≤ 5 s | {'pass' if med(fits) <= 5 else '**miss**'} |",
            f"| transform, 500 adversarial points | {med(transforms):.2f} s | umap-learn's own path: "
            f"{peer_transform:.2f} s | {peer_transform / med(transforms):.1f}× | ≤ 1.5 s per ε | "
            f"{'pass' if med(transforms) <= 1.5 else '**miss**'} |"]


def first_map_rows(clean: np.ndarray) -> list[str]:
    path = Path(tempfile.mkdtemp(prefix="bench-latent-")) / "features.npy"
    np.save(path, clean)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = {}
    for warm in ("1", "0"):
        proc = subprocess.run([sys.executable, "-c", FIRST_MAP, str(path), warm], env=env, capture_output=True,
                              text=True, check=True, cwd=ROOT)
        out[warm] = json.loads(proc.stdout.strip().splitlines()[-1])
    w, c = out["1"], out["0"]
    ratio = w["first_s"] / w["warm_s"]
    return [f"| first map after a fresh start (warm-up done: {w['ready_s']:.1f} s after start) | "
            f"{w['first_s']:.2f} s | warm fit in the same process: {w['warm_s']:.2f} s | {ratio:.2f}× warm | "
            f"≤ 1.5× warm | {'pass' if ratio <= 1.5 else '**miss**'} |",
            f"| first map without the warm-up | {c['first_s']:.2f} s | warm fit: {c['warm_s']:.2f} s | "
            f"{c['first_s'] / c['warm_s']:.1f}× warm | (what the warm-up saves) | — |"]


def scrub_rows(moves: int) -> list[str]:
    from streamlit.testing.v1 import AppTest

    os.environ["ATLAS_WARM_UMAP"] = "0"
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600).run()
    at.session_state["lat_projection"] = "pca"
    start = time.perf_counter()
    at.switch_page("../pages/latent.py").run()
    cold = time.perf_counter() - start
    options = list(at.select_slider(key="lat_eps").options)
    times = []
    for i in range(moves):
        start = time.perf_counter()
        at.select_slider(key="lat_eps").set_value(options[(i * 3 + 1) % len(options)]).run()
        times.append(time.perf_counter() - start)
        assert not at.exception, at.exception
    p95 = float(np.percentile(times, 95))
    return [f"| ε scrub (whole page rerun, 2 maps of 450 points) | {med(times) * 1000:.0f} ms median, "
            f"{p95 * 1000:.0f} ms p95 | page's first render incl. both maps: {cold:.1f} s | "
            f"{cold / med(times):.0f}× | ≤ 150 ms p95 | {'pass' if p95 <= 0.150 else '**miss**'} |"]


def serialisation_rows(repeats: int) -> list[str]:
    import plotly.io as pio

    from core.latent.maps import LatentMap
    from dashboard.components.latent_views import Layers, latent_figure

    rng = np.random.default_rng(0)
    n, grid = 10_000, 8
    latent = LatentMap(eps_grid=np.linspace(0.05, 0.3, grid), indices=np.arange(n), y=rng.integers(0, 10, n),
                       pred_clean=rng.integers(0, 10, n), pred_adv=rng.integers(0, 10, (grid, n)),
                       clean_xy=rng.normal(size=(n, 2)).astype(np.float32),
                       adv_xy=rng.normal(size=(grid, n, 2)).astype(np.float32), scores={}, info={})
    classes = [str(c) for c in range(10)]

    def run(animate: bool) -> float:
        start = time.perf_counter()
        fig, _ = latent_figure(latent, 4, classes, Layers(clean=True, adversarial=False, lines=False), "t", "0.1",
                               animate)
        pio.to_json(fig, validate=False)
        return time.perf_counter() - start

    run(False)
    ours = med([run(False) for _ in range(max(repeats, 5))])
    peer = med([run(True) for _ in range(3)])
    return [f"| plot of 10,000 points: build + JSON | {ours * 1000:.0f} ms | with animation frames (9 ε): "
            f"{peer * 1000:.0f} ms | {peer / ours:.1f}× | ≤ 50 ms | {'pass' if ours <= 0.05 else '**miss**'} |"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--moves", type=int, default=30)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    os.environ["ATLAS_HOME"] = tempfile.mkdtemp(prefix="bench-latent-home-")
    clean, adv = features()
    lines = ["", f"### Latent space (issue 6) — {time.strftime('%Y-%m-%d')}, `python bench/bench_latent.py`", "",
             "| what | ours | peer in the same run | peer / ours | target | verdict |", "|---|---|---|---|---|---|"]
    lines += umap_rows(clean, adv, args.repeats)
    lines += first_map_rows(clean)
    lines += serialisation_rows(args.repeats)
    lines += scrub_rows(args.moves)
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
