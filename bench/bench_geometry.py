"""Geometry targets of issue 5 on the shipped digits SmallCNNs (ERM, PGD-AT), 2-core CPU.

Usage: OMP_NUM_THREADS=1 python bench/bench_geometry.py [--repeats 5] [--threads 1] [--quick] [--out bench/RESULTS.md]

1. Speed: DCT margins of 20 test images over all diagonal subspaces (4×4 blocks, step 1 → 5 subspaces, and 2×2
   blocks → 7; subspace DeepFool ≤ 100 iterations, plus the unconstrained reference margin), target ≤ 10 s; peer in
   the same run: plain unconstrained DeepFool (ℓ2, ≤ 100 iterations) on the same 20 images. Warm-up once, then the
   median of the repeats.
2. Figures: DeepFool ℓ2/ℓ∞ margins on the 450 test images (median, ρ_adv, non-converged); DCT margin median
   (q25–q75) per subspace on 100 test images; UAP fooling rate on 500 train images and on the 450 test images
   at ℓ2 ξ = 2 and ℓ∞ ξ = 0.2 (5 passes, δ = 0.2, chunks of 16).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit, timed  # noqa: E402

from core.attacks.deepfool import deepfool_run  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.geometry.dct import DCTMarginSpec, compute_dct_margins  # noqa: E402
from core.geometry.margins import MarginSpec, compute_margins  # noqa: E402
from core.geometry.universal import UAPSpec, compute_uap  # noqa: E402
from core.models import load_checkpoint  # noqa: E402

NAMES = ("erm", "pgd-at")


def fmt(values: object) -> str:
    return " ".join(f"{v:.2f}" for v in values)  # type: ignore[attr-defined]


def speed(models: dict, repeats: int) -> list[str]:
    data = load_dataset("digits", "test").subset(20)
    lines = ["| model | blocks | subspaces | DCT margins (s) | plain DeepFool (s) | ratio |",
             "|---|---|---|---|---|---|"]
    for name, model in models.items():
        peer = timed(lambda: deepfool_run(model, data.x, steps=100, bounds=None), repeats)
        for block in (4, 2):
            spec = DCTMarginSpec(run_id=name, dataset="digits", n=20, block=block)
            subspaces = len(compute_dct_margins(model, data, spec).starts)
            ours = timed(lambda: compute_dct_margins(model, data, spec), repeats)
            lines.append(f"| {name} | {block}×{block} | {subspaces} | {ours:.3f} | {peer:.3f} | {ours / peer:.1f}× |")
    return lines


def figures(models: dict, quick: bool) -> list[str]:
    test, train = load_dataset("digits", "test"), load_dataset("digits", "train")
    lines = ["", "| model | median ℓ2 | ρ_adv ℓ2 | median ℓ∞ | ρ_adv ℓ∞ | not converged (ℓ2/ℓ∞) |",
             "|---|---|---|---|---|---|"]
    for name, model in models.items():
        sample = test.subset(100 if quick else 450)
        m = compute_margins(model, sample, MarginSpec(run_id=name, dataset="digits"))
        lines.append(f"| {name} | {m.info['median_l2']:.3f} | {m.rho_adv('l2'):.3f} | {m.info['median_linf']:.3f} | "
                     f"{m.rho_adv('linf'):.3f} | {m.info['not_converged_l2']}/{m.info['not_converged_linf']} |")
    lines += ["", "| model | blocks | starts | median ‖r‖₂ per subspace | q25 | q75 | invariant | full-space median |",
              "|---|---|---|---|---|---|---|---|"]
    for name, model in models.items():
        for block in (4, 2):
            spec = DCTMarginSpec(run_id=name, dataset="digits", n=100, block=block)
            d = compute_dct_margins(model, test.subset(30 if quick else 100), spec)
            lines.append(f"| {name} | {block}×{block} | {' '.join(map(str, d.starts))} | {fmt(d.medians)} | "
                         f"{fmt(d.q25)} | {fmt(d.q75)} | {' '.join(map(str, d.invariant))} | "
                         f"{d.info['full_median']:.2f} |")
    lines += ["", "| model | norm | ξ | fooling rate per pass (train) | best | hold-out (test) | dominant label (share) "
              "| seconds |", "|---|---|---|---|---|---|---|---|"]
    n = 100 if quick else 500
    for name, model in models.items():
        for norm, xi in (("l2", 2.0), ("linf", 0.2)):
            spec = UAPSpec(run_id=name, dataset="digits", n=n, norm=norm, xi=xi)
            u = compute_uap(model, train.subset(n), spec, holdout=test)
            lines.append(f"| {name} | {norm} | {xi} | {fmt(u.fooling_rate)} | {u.fooling_rate.max():.2f} | "
                         f"{float(u.fooling_rate_holdout):.2f} | {u.info['dominant_label']} "
                         f"({u.info['dominant_share']:.2f}) | {u.info['seconds']:.1f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats after the warm-up")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer points, 1 repeat")
    parser.add_argument("--out", type=Path, default=None, help="append the Markdown section to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = {name: load_checkpoint(ROOT / "assets" / "models" / f"digits-smallcnn-{name}.safetensors")[0].eval()
              for name in NAMES}
    start = time.perf_counter()
    lines = [f"## Geometry (issue 5): torch {torch.__version__}, {args.threads} thread(s), "
             f"{1 if args.quick else args.repeats} repeats", "", "DCT margins of 20 digits, target ≤ 10 s:", ""]
    lines += speed(models, 1 if args.quick else args.repeats)
    lines += figures(models, args.quick)
    lines += ["", f"Total bench time {time.perf_counter() - start:.0f} s."]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
