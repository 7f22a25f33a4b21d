"""Attribution speed (issue 7): captum Saliency and Integrated Gradients on 100 digits vs plain torch in the same run.

Usage: python bench/bench_features.py [--repeats 7] [--threads 2] [--out bench/RESULTS.md]

Targets (2-core CPU): Saliency for 100 digits images ≤ 0.2 s; Integrated Gradients (50 steps) ≤ 1.5 s. The peer
is the same computation written directly in torch (one input gradient; the 50-point Gauss–Legendre path integral
that captum uses by default, all steps in one batch), so the ratio is what captum's generality costs. Times are
medians after one warm-up call; both shipped digits SmallCNNs (ERM and PGD-AT). The peer's maps are checked against
captum's before timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit, timed  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.features import attribute  # noqa: E402
from core.models import load_checkpoint  # noqa: E402

NAMES = ("erm", "pgd-at")


def plain_saliency(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    out = model(x).gather(1, y[:, None]).sum()
    return torch.autograd.grad(out, x)[0]


def plain_integrated_gradients(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor,
                               steps: int) -> torch.Tensor:
    """∫₀¹ ∇f_y(αx) dα · x from a black baseline: Gauss–Legendre nodes on [0, 1], all steps in one batch."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    alphas = torch.tensor((nodes + 1) / 2, dtype=x.dtype)
    w = torch.tensor(weights / 2, dtype=x.dtype)
    path = (alphas[:, None, None, None, None] * x[None]).reshape(-1, *x.shape[1:]).requires_grad_(True)
    out = model(path).gather(1, y.repeat(steps)[:, None]).sum()
    grads = torch.autograd.grad(out, path)[0].reshape(steps, *x.shape)
    return (w[:, None, None, None, None] * grads).sum(0) * x


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("digits", "test").subset(100)
    x, y = data.x, data.y
    rows = []
    for name in NAMES:
        model = load_checkpoint(ROOT / "assets" / "models" / f"digits-smallcnn-{name}.safetensors")[0].eval()
        ig_ours = attribute(model, x, y, "integrated_gradients", n_steps=50)
        ig_peer = plain_integrated_gradients(model, x, y, 50)
        sal_ours = attribute(model, x, y, "saliency")
        if not (torch.allclose(ig_ours, ig_peer, atol=1e-4) and torch.allclose(sal_ours, plain_saliency(model, x, y),
                                                                            atol=1e-5)):
            raise SystemExit(f"{name}: the plain-torch peer disagrees with captum; the comparison would be unfair")
        for label, ours, peer, target in (
                ("Saliency", lambda: attribute(model, x, y, "saliency"), lambda: plain_saliency(model, x, y), 0.2),
                ("Integrated Gradients, 50 steps", lambda: attribute(model, x, y, "integrated_gradients", n_steps=50),
                 lambda: plain_integrated_gradients(model, x, y, 50), 1.5)):
            t_ours, t_peer = timed(ours, args.repeats), timed(peer, args.repeats)
            rows.append(f"| {label} | {name} | {t_ours * 1000:.1f} | {t_peer * 1000:.1f} | {t_ours / t_peer:.2f}× | "
                        f"≤ {target:g} s | {'pass' if t_ours <= target else '**miss**'} |")
    lines = ["", f"### Attributions (issue 7) — {time.strftime('%Y-%m-%d')}, {args.threads} torch threads, "
             f"torch {torch.__version__}", "",
             f"Command: `python bench/bench_features.py --repeats {args.repeats} --threads {args.threads}`. "
             "100 digits test images, shipped SmallCNNs, medians; peer = the same maps in plain torch (checked "
             "equal first).", "",
             "| attribution | model | ours, ms | plain torch (peer), ms | ratio | target | |",
             "|---|---|---|---|---|---|---|", *rows]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
