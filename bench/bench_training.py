"""Training speed targets of the foundation issue, measured as ratios against peers in the same run.

Usage: python bench/bench_training.py [--repeats 5] [--out bench/RESULTS.md]

* Epoch time of FGSM-RS, PGD-10 and TRADES-10 relative to ERM (same SmallCNN, digits, batch 64), median of
  interleaved repeats (machines here are noisy; interleaving spreads the noise over all methods alike).
* The shipped digits recipes (core/defaults.py): training seconds, clean and PGD-20 accuracy on the test split.
* ``python -m core --help`` wall time, against ``python -c pass`` as the peer.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import torch  # noqa: E402
from common import emit  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.defaults import TRAIN_DEFAULTS, _final_eval  # noqa: E402
from core.models import build_model, load_checkpoint  # noqa: E402
from core.store import Registry  # noqa: E402
from core.training import METHODS, TrainConfig, train  # noqa: E402
from core.training.epoch import train_epoch  # noqa: E402
from core.training.loop import make_optimizer  # noqa: E402

RATIO_METHODS = {"erm": {}, "fgsm-rs": {}, "pgd-at": {"attack_steps": 10}, "trades": {"attack_steps": 10}}
TARGETS = {"fgsm-rs": 2.0, "pgd-at": 9.0, "trades": 11.0}


def epoch_seconds(repeats: int) -> dict[str, list[float]]:
    data = load_dataset("digits", "train")
    times: dict[str, list[float]] = {m: [] for m in RATIO_METHODS}
    for rep in range(repeats + 1):
        for name, extra in RATIO_METHODS.items():
            config = TrainConfig(dataset="digits", method=name, eps=0.1, batch_size=64, epochs=1, **extra)
            model = build_model("smallcnn", seed=0, num_classes=10)
            optimizer = make_optimizer(model, config)
            method = METHODS[name]
            stats = train_epoch(model, optimizer, data, config, method, method.make_attack(config), 1,
                                torch.device("cpu"))
            if rep > 0:
                times[name].append(stats.seconds)
    return times


def recipe_figures() -> list[tuple[str, float, float, float]]:
    rows = []
    for name in ("digits-smallcnn-erm", "digits-smallcnn-pgd-at"):
        config = TRAIN_DEFAULTS[name]
        with tempfile.TemporaryDirectory() as home:
            result = train(config, registry=Registry(home))
            model, _ = load_checkpoint(result.checkpoint_path)
        seconds = sum(h["train_seconds"] for h in result.history)
        final = _final_eval(model, config)
        rows.append((name, seconds, final["clean_acc"], final["robust_acc"]))
    return rows


def wall(cmd: list[str], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="append a Markdown section to this file")
    args = parser.parse_args()
    times = epoch_seconds(args.repeats)
    erm = statistics.median(times["erm"])
    lines = [f"### Training speed — {time.strftime('%Y-%m-%d')} on {platform.machine()}, "
             f"{torch.get_num_threads()} torch threads, torch {torch.__version__}", "",
             f"Command: `python bench/bench_training.py --repeats {args.repeats}`", "",
             "| method (digits SmallCNN, batch 64) | median epoch s | × ERM | target |", "|---|---|---|---|"]
    for name in RATIO_METHODS:
        med = statistics.median(times[name])
        target = f"≤ {TARGETS[name]:.1f}×" if name in TARGETS else "peer"
        lines.append(f"| {name}{' (10 steps)' if name in ('pgd-at', 'trades') else ''} | {med:.3f} | "
                     f"{med / erm:.2f}× | {target} |")
    lines += ["", "| shipped recipe | training s | clean acc | PGD-20 acc (ε=0.1) | target |", "|---|---|---|---|---|"]
    goals = {"digits-smallcnn-erm": "≥97 % clean in ≤10 s",
             "digits-smallcnn-pgd-at": "≥96 % clean, ≥85 % PGD-20 in ≤40 s"}
    for name, seconds, clean, robust in recipe_figures():
        lines.append(f"| {name} | {seconds:.1f} | {clean:.3f} | {robust:.3f} | {goals[name]} |")
    peer = wall([sys.executable, "-c", "pass"], 5)
    helptime = wall([sys.executable, "-m", "core", "--help"], 5)
    lines += ["", f"`python -m core --help`: {helptime:.2f} s (peer `python -c pass`: {peer:.2f} s; "
              f"{helptime / peer:.1f}×); target ≤ 2 s.", ""]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
