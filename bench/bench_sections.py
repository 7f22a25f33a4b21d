"""Cross-section speed (issue 5) on the shipped models, 2-core CPU.

Usage: python bench/bench_sections.py [--repeats 5] [--images 10] [--out bench/RESULTS.md]

One cross-section at the Geometry page's default (129 × 129 finest grid, adaptive, DeepFool-normal plane, the
page's automatic extent) for the digits SmallCNN (ERM and PGD-AT) over several test images, and for the moons MLP;
the peer is a plain uniform grid of the same finest resolution, measured in the same run on the same planes.
Also: the Geometry page's whole view for two models (sections, paths, profiles, loss surfaces, curvatures).
Targets: digits CNN ≤ 300 ms, toy MLP ≤ 50 ms per section.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402


def med(values: list[float]) -> float:
    return float(statistics.median(values))


def section_times(model_name: str, dataset: str, images: int, repeats: int) -> tuple[float, float, int, int]:
    from core.data import load_dataset
    from core.geometry.local import SectionSpec, auto_extent, _deepfool_distance
    from core.geometry.planes import ball_section, make_plane
    from core.geometry.sections import DEFAULT_RESOLUTION, cross_section
    from core.models import load_checkpoint

    model, meta = load_checkpoint(ROOT / "assets" / "models" / model_name)
    model.eval()
    data = load_dataset(dataset, **({} if dataset == "digits" else {"n": 400, "noise": 0.1, "seed": 0}))
    spec = SectionSpec(eps=float(meta.get("eps", 0.1) or 0.1))
    adaptive, uniform, evaluated = [], [], []
    for i in range(images):
        x, y = data.x[i], int(data.y[i])
        plane = make_plane(model, x, y, "deepfool")
        extent = auto_extent([_deepfool_distance(model, x)], ball_section(plane, spec.eps, spec.norm), 1.0)
        cross_section(model, plane, extent=extent)  # warm
        for _ in range(repeats):
            start = time.perf_counter()
            section = cross_section(model, plane, extent=extent, resolution=DEFAULT_RESOLUTION)
            adaptive.append(time.perf_counter() - start)
            evaluated.append(section.evaluated)
            start = time.perf_counter()
            cross_section(model, plane, extent=extent, resolution=DEFAULT_RESOLUTION, uniform=True)
            uniform.append(time.perf_counter() - start)
    return med(adaptive), med(uniform), int(med(evaluated)), DEFAULT_RESOLUTION ** 2


def view_time(repeats: int) -> float:
    from core.data import load_dataset
    from core.geometry.local import SectionSpec, compare_on_plane
    from core.models import load_checkpoint

    models = {n: load_checkpoint(ROOT / "assets" / "models" / f"digits-smallcnn-{n}")[0].eval()
              for n in ("pgd-at", "erm")}
    data = load_dataset("digits")
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        compare_on_plane(models, data.x[i], int(data.y[i]), SectionSpec())
        times.append(time.perf_counter() - start)
    return med(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=10)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    lines = [f"### Geometry cross-sections — {time.strftime('%Y-%m-%d')}, {torch.get_num_threads()} torch threads, "
             f"torch {torch.__version__}", "",
             f"Command: `python bench/bench_sections.py --repeats {args.repeats} --images {args.images}`", "",
             "| model | adaptive 129×129 (median) | points evaluated | uniform 129×129 grid (peer) | "
             "peer ÷ adaptive | target | |", "|---|---|---|---|---|---|---|"]
    for name, dataset, target in (("digits-smallcnn-erm", "digits", 0.300), ("digits-smallcnn-pgd-at", "digits", 0.300),
                                  ("moons-mlp-erm", "moons", 0.050)):
        ada, uni, n_eval, n_all = section_times(name, dataset, args.images, args.repeats)
        lines.append(f"| {name} | {ada * 1000:.0f} ms | {n_eval} of {n_all} | {uni * 1000:.0f} ms | "
                     f"{uni / ada:.1f}× | ≤ {target * 1000:.0f} ms | {'pass' if ada <= target else '**miss**'} |")
    lines += ["", f"Whole Geometry view for two digits models (sections, PGD paths, profiles, 41×41 loss surfaces, "
              f"Hessian/CURE/boundary curvature), median of {args.repeats}: {view_time(args.repeats):.2f} s.", ""]
    emit(lines, args.out)


if __name__ == "__main__":
    main()
