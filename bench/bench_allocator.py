"""The allocator settings of core/runtime.py against glibc's defaults: page faults and wall time, same machine.

Usage: python bench/bench_allocator.py [--rounds 4] [--threads 2] [--out bench/RESULTS.md]

Each round starts two fresh worker processes one after the other: one with ``ATLAS_ALLOCATOR=system`` (glibc's
defaults, the peer) and one tuned (what every entry point does). A worker times, after a warm-up call each:
PGD-10 ℓ∞ on the first 360 digits test points (shipped ERM SmallCNN, median of 5), the quick ensemble on the same
points (ERM, ε = 0.1, median of 2), and one DALE and one PGD-AT training epoch on digits (batch 32, 5 steps), with
the minor page faults of each. The table gives medians over rounds and tuned ÷ default ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

WORKER = r"""
import json, resource, statistics, sys, time
sys.path.insert(0, "bench")
from core.runtime import tune_allocator
said = tune_allocator()
import torch
torch.set_num_threads(int(sys.argv[1]))
from core.attacks import PGD, make_attack
from core.data import load_dataset
from core.models import load_checkpoint
from bench_dale import epoch_seconds

def measure(fn, repeats):
    fn()
    times, faults = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return {"s": statistics.median(times), "faults": statistics.median(faults)}

data = load_dataset("digits", "test")
x, y = data.x[:360], data.y[:360]
model = load_checkpoint("assets/models/digits-smallcnn-erm")[0]
gen = lambda: torch.Generator().manual_seed(0)
pgd, quick = PGD(steps=10, step_size=0.025), make_attack("quick")
out = {"said": said,
       "pgd10": measure(lambda: pgd(model, x, y, 0.1, generator=gen()), 5),
       "quick": measure(lambda: quick(model, x, y, 0.1, generator=gen()), 2),
       "dale_epoch": measure(lambda: epoch_seconds("dale", 5, 0, 32), 1),
       "pgdat_epoch": measure(lambda: epoch_seconds("pgd-at", 5, 0, 32), 1)}
print(json.dumps(out))
"""
CASES = {"pgd10": "PGD-10, 360 digits (ERM)", "quick": "quick ensemble, 360 digits (ERM, ε = 0.1)",
         "dale_epoch": "DALE epoch, digits, batch 32, 5 steps",
         "pgdat_epoch": "PGD-AT epoch, digits, batch 32, 5 steps"}


def worker(mode: str, threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    env["ATLAS_ALLOCATOR"] = "system" if mode == "default" else ""
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-c", WORKER, str(threads)], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"default": [], "tuned": []}
    for _ in range(args.rounds):
        for mode in results:
            results[mode].append(worker(mode, args.threads))
    said = {mode: rows[0]["said"] for mode, rows in results.items()}
    rows = []
    for key, label in CASES.items():
        med = {m: statistics.median(r[key]["s"] for r in rows_) for m, rows_ in results.items()}
        faults = {m: statistics.median(r[key]["faults"] for r in rows_) for m, rows_ in results.items()}
        rows.append(f"| {label} | {med['tuned']:.3f} s, {faults['tuned']:,.0f} faults | "
                    f"{med['default']:.3f} s, {faults['default']:,.0f} faults | {med['tuned'] / med['default']:.2f}× |")
    dale = {m: statistics.median(r["dale_epoch"]["s"] / r["pgdat_epoch"]["s"] for r in rows_)
            for m, rows_ in results.items()}
    emit(["", f"### Allocator settings (core/runtime.py) — {time.strftime('%Y-%m-%d')}, "
              f"`python bench/bench_allocator.py --rounds {args.rounds} --threads {args.threads}`", "",
          f"Tuned: {said['tuned']}. Peer: glibc's defaults ({said['default']}), fresh processes alternating, "
          f"median over {args.rounds} rounds.", "",
          "| what | tuned | glibc defaults (peer, same run) | tuned ÷ default |", "|---|---|---|---|", *rows,
          f"| DALE ÷ PGD-AT epoch (issue 8 target ≤ 1.2×) | {dale['tuned']:.2f}× | {dale['default']:.2f}× | — |"],
         args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
