"""Attack Lab speed: the first ε grid of a new example, and a slider move, on the shipped digits models.

Usage: python bench/bench_lab.py [--examples 20] [--moves 40] [--out bench/RESULTS.md]

* first grid: ``sweep_example`` (PGD-10, ℓ∞, 41 budgets in one batched call) plus the minimal flipping ε (FMN) for
  a new example, per model; peer: the same 41 PGD-10 attacks run one ε at a time (what an unbatched page would do);
* slider move: the Attack Lab page under AppTest with both models' grids cached; each move sets the ε slider and
  reruns. AppTest reruns the whole page script, so this is an upper bound on the fragment the browser reruns.
Targets (issue 4): first grid ≤ 1 s; slider move ≤ 150 ms p95 on the server.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

GRID = np.round(np.linspace(0.0, 0.3, 41), 6)


def p95(values: list[float]) -> float:
    return float(np.percentile(values, 95))


def first_grid(examples: int) -> list[str]:
    import torch

    from core.attacks import PGD
    from core.data import load_dataset
    from core.evaluation.lab import minimal_flip, sweep_example
    from core.models import load_checkpoint

    data = load_dataset("digits", "test")
    lines = []
    for name in ("erm", "pgd-at"):
        model, _ = load_checkpoint(ROOT / "assets" / "models" / f"digits-smallcnn-{name}.safetensors")
        sweep_example(model, data.x[0], int(data.y[0]), "pgd", {"steps": 10}, GRID)  # warm-up
        batched, loop = [], []
        for i in range(1, examples + 1):
            x, y = data.x[i], int(data.y[i])
            start = time.perf_counter()
            sweep_example(model, x, y, "pgd", {"steps": 10}, GRID)
            minimal_flip(model, x, y, "linf")
            batched.append(time.perf_counter() - start)
            if i <= 5:
                start = time.perf_counter()
                for eps in GRID:
                    PGD(steps=10)(model, x[None], torch.tensor([y]), float(eps))
                loop.append(time.perf_counter() - start)
        lines.append(f"| first grid, {name} (41 ε + FMN) | {statistics.median(batched) * 1000:.0f} ms | "
                     f"{p95(batched) * 1000:.0f} ms | 41 single-ε PGD-10 calls: {statistics.median(loop) * 1000:.0f}"
                     f" ms | {statistics.median(loop) / statistics.median(batched):.1f}× |")
    return lines


def slider_moves(moves: int) -> list[str]:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300).run()
    start = time.perf_counter()
    at.switch_page("../pages/attack_lab.py").run()
    cold = time.perf_counter() - start
    slider = at.slider(key="lab_eps")
    values = np.linspace(slider.min, slider.max, moves)
    times = []
    for value in values:
        start = time.perf_counter()
        at.slider(key="lab_eps").set_value(float(value)).run()
        times.append(time.perf_counter() - start)
        assert not at.exception, at.exception
    return [f"| slider move (whole page rerun, 2 models) | {statistics.median(times) * 1000:.0f} ms | "
            f"{p95(times) * 1000:.0f} ms | page's first render incl. both grids: {cold * 1000:.0f} ms | "
            f"{cold / statistics.median(times):.1f}× |"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--moves", type=int, default=40)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import os
    import tempfile

    os.environ["ATLAS_HOME"] = tempfile.mkdtemp(prefix="bench-lab-")
    lines = ["", f"### Attack Lab (issue 4) — {time.strftime('%Y-%m-%d')}, `python bench/bench_lab.py`", "",
             "| what | median | p95 | peer in the same run | peer / ours |", "|---|---|---|---|---|"]
    lines += first_grid(args.examples)
    lines += slider_moves(args.moves)
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
