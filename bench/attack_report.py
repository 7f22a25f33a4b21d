"""The Markdown section bench_attacks.py appends to bench/RESULTS.md: targets, agreement, curves, profile."""

from __future__ import annotations

import argparse
import platform
import time
from typing import Any, Callable

import torch


def status(ok: bool) -> str:
    return "**pass**" if ok else "**miss**"


def md_targets(by: Callable[[str], list[dict]]) -> list[str]:
    lines = ["| measure | model | ours, median (best) | torchattacks, median (best) | ratio: median of per-repeat "
             "ratios | target | |", "|---|---|---|---|---|---|---|"]
    for r in by("pgd"):
        lines.append(f"| PGD ℓ∞ ε=0.1, 10 steps, s | {r['model']} | "
                     f"{r['ours_median_s']:.3f} ({r['ours_best_s']:.3f}) "
                     f"| {r['ref_median_s']:.3f} ({r['ref_best_s']:.3f}) | {r['ratio']:.3f}× (perturb only "
                     f"{r['ratio_perturb']:.3f}×; vs torchattacks + its prediction {r['ratio_same_work']:.3f}×) | ours ≥ 0.95× | {status(r['passed'])} |")
    for r in by("deepfool_l2"):
        lines.append(f"| DeepFool ℓ2 time, s | {r['model']} | {r['ours_median_s']:.2f} | {r['ref_median_s']:.1f} | "
                     f"{r['speedup']:.0f}× faster | ≥ 10× | {status(r['speedup'] >= 10)} |")
        lines.append(f"| DeepFool ℓ2 success (of {r['clean_correct']} clean-correct) | {r['model']} | "
                     f"{r['ours_success']:.3f} | {r['ref_success']:.3f} | | ≥ theirs | "
                     f"{status(r['ours_success'] >= r['ref_success'])} |")
        lines.append(f"| DeepFool ℓ2 median ‖δ‖₂ ({r['both_fooled']} both fooled) | {r['model']} | "
                     f"{r['ours_median_l2']:.3f} | {r['ref_median_l2']:.3f} | {r['l2_ratio']:.3f} | ≤ 1.01 | "
                     f"{status(r['l2_ratio'] <= 1.01)} |")
    for r in by("quick_vs_autoattack"):
        lines.append(f"| quick time, s | {r['model']} ε={r['eps']} | {r['quick_median_s']:.1f} "
                     f"({r['quick_best_s']:.1f}) | AutoAttack {r['autoattack_s']:.0f} (Square "
                     f"{r['autoattack_members_s'].get('Square', 0.0):.0f}) | "
                     f"{r['quick_over_pgd10']:.0f}× our PGD-10 | ≤ 3 s | {status(r['time_passed'])} |")
        lines.append(f"| quick vs AutoAttack robust acc | {r['model']} ε={r['eps']} | {r['ours_acc']:.3f} | "
                     f"{r['ref_acc']:.3f} | {r['diff_points']:+.1f} pt, agree {r['per_point_agreement']:.3f} | "
                     f"≤ +1 pt | {status(r['acc_passed'])} |")
    return lines


def md_apgd(by: Callable[[str], list[dict]]) -> list[str]:
    if not by("apgd"):
        return []
    lines = ["", "| APGD agreement (100 steps) | model | ε | ours acc | torchattacks acc | Δ points | per-point "
             "agreement | ours s | torchattacks s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in by("apgd"):
        lines.append(f"| {r['attack']} | {r['model']} | {r['eps']} | {r['ours_acc']:.3f} | {r['ref_acc']:.3f} | "
                     f"{r['diff_points']:+.1f} | {r['per_point_agreement']:.3f} | {r['ours_s']:.1f} | "
                     f"{r['ref_s']:.1f} |")
    return lines


def md_quick_profile(by: Callable[[str], list[dict]]) -> list[str]:
    lines = []
    for r in by("quick_profile"):
        lines += ["", f"Profile of quick ({r['model']}, ε={r['eps']}, {r['total_s']:.1f} s): forwards with grad "
                  f"{r['forward_grad_s']:.1f} s ({r['forward_grad_calls']} calls, {r['forward_grad_rows']} rows, "
                  f"{100 * r['grad_rows_on_broken']:.0f} % of them on points already broken), no-grad forwards "
                  f"{r['forward_nograd_s']:.1f} s ({r['forward_nograd_calls']} calls, {r['forward_nograd_rows']} "
                  f"rows); under cProfile backward is {100 * r['backward_share']:.0f} % of the time. Top self "
                  "time: " + "; ".join(r["top_tottime"]) + "."]
    variants = by("quick_variant")
    if variants:
        lines += ["", "| quick variant (steps, targets) | model | ε | s | × PGD-10 | robust acc | "
                  "Δ vs AutoAttack, pt |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['steps']}, {r['targets']} | {r['model']} | {r['eps']} | {r['seconds']:.1f} | "
                  f"{r['over_pgd10']:.0f}× | {r['acc']:.3f} | {r['diff_vs_autoattack_points']:+.1f} |"
                  for r in variants]
    return lines


def md_curve(by: Callable[[str], list[dict]]) -> list[str]:
    if not by("curve_pgd10"):
        return []
    minimal = [r for r in by("curve_minimal_norm") if "skipped" not in r]
    lines = ["", "| robustness curve, 16 ε (ℓ∞ 0.0125…0.2) | model | s (best) | × 16 PGD-10 runs | "
             "max \\|Δ acc\\| vs PGD-10 | target | |", "|---|---|---|---|---|---|---|"]
    for r in by("curve_pgd10"):
        lines.append(f"| 16 × PGD-10 (per_sample_table) | {r['model']} | {r['median_s']:.2f} ({r['best_s']:.2f}) | "
                     "1.00 (peer) | — | | |")
    for r in minimal:
        lines.append(f"| one {r['attack']} run | {r['model']} | {r['median_s']:.2f} ({r['best_s']:.2f}) | "
                     f"{r['time_over_pgd16']:.2f} | {r['max_abs_diff_points']:.1f} pt | ≤ 0.5×, ≤ 3 pt | "
                     f"{status(r['passed'])} |")
    lines += ["", "Whole curves (robust accuracy at ε):", "", "| model | curve | " +
              " | ".join(f"{e:.4g}" for e in by("curve_pgd10")[0]["eps"]) + " |", "|---|---|" + "---|" * 16]
    for r in by("curve_pgd10") + minimal:
        lines.append(f"| {r['model']} | {r.get('attack', '16 × PGD-10')} | "
                     + " | ".join(f"{a:.3f}" for a in r["acc"]) + " |")
    return lines


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, ta_version: str, wall: float,
             install: str) -> list[str]:
    def by(measure: str) -> list[dict[str, Any]]:
        return [r for r in rows if r["measure"] == measure]

    cmd = "python bench/bench_attacks.py" + (" --quick" if args.quick else f" --repeats {args.repeats}") + \
        f" --threads {args.threads}" + (f" --out {args.out}" if args.out else "")
    head = [f"### Attacks (issue 4) vs torchattacks {ta_version} — {time.strftime('%Y-%m-%d')} on "
            f"{platform.machine()}, 2-core CPU, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}",
            "", f"Commands: `{install}` (once), then `{cmd}` ({wall / 60:.1f} min). digits SmallCNNs, first "
            f"{args.n} test points as one batch; times are medians (best in brackets) in the same run.", ""]
    return head + md_targets(by) + md_apgd(by) + md_curve(by) + md_quick_profile(by) + [""]
