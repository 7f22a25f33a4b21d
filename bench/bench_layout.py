"""Channels-last conv weights (core.models.registry.preferred_layout) against contiguous ones, in the same run.

Usage: python bench/bench_layout.py [--pairs 9] [--threads 2] [--out bench/RESULTS.md]

The same shipped digits SmallCNN twice, once as the product builds it (channels-last) and once converted back to
the contiguous layout (the peer). Each measure alternates the two, pair by pair, and reports the median of the
per-pair ratios (contiguous ÷ channels-last; > 1 means the product's layout is faster), which cancels most of this
machine's drift. Measures: a PGD-10 call on 360 test points, the quick ensemble on 360 points (ε = 0.1, PGD-AT
model), one PGD-AT training epoch on digits (batch 128, PGD-5) and DALE's (Langevin-5).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit, interleaved, paired_ratio  # noqa: E402


def pairs(product: Callable[[], object], peer: Callable[[], object], n: int) -> tuple[float, float, float]:
    """(median product s, median peer s, median per-repeat peer ÷ product), alternating which runs first."""
    t = interleaved({"product": product, "peer": peer}, n)
    return t["product"]["median_s"], t["peer"]["median_s"], paired_ratio(t, "peer", "product")


def contiguous(model):
    import torch

    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert not plain.body[2].weight.is_contiguous(memory_format=torch.channels_last)
    return plain


def plain_flatten(model):
    import torch

    plain = copy.deepcopy(model)
    plain.penultimate[0] = torch.nn.Flatten()
    return plain


def flatten_rows(model, x, y, n: int) -> list[str]:
    import torch
    import torch.nn.functional as F

    from core.attacks import PGD

    def step(m) -> None:
        xa = x.clone().requires_grad_(True)
        torch.autograd.grad(F.cross_entropy(m(xa), y), xa)

    plain, rows = plain_flatten(model), []
    for label, fn in (("forward+backward w.r.t. the input, 360 digits", step),
                      ("PGD-10 call, 360 digits", lambda m: PGD(steps=10)(m, x, y, 0.1,
                                                                          generator=torch.Generator().manual_seed(0)))):
        ours, peer, ratio = pairs(lambda: fn(model), lambda: fn(plain), n)
        rows.append(f"| {label} | {ours * 1e3:.1f} ms | {peer * 1e3:.1f} ms | {ratio:.3f}× |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--what", choices=("layout", "flatten"), default="layout")
    args = parser.parse_args()
    import torch

    from core.attacks import PGD
    from core.attacks.ensemble import QuickEnsemble
    from core.data import load_dataset
    from core.models import load_checkpoint
    from core.training import TrainConfig
    from core.training.epoch import train_epoch
    from core.training.loop import make_optimizer
    from core.training.methods import METHODS, MethodState

    torch.set_num_threads(args.threads)
    test = load_dataset("digits", "test")
    x, y = test.x[:360], test.y[:360]
    erm, _ = load_checkpoint(ROOT / "assets" / "models" / "digits-smallcnn-erm")
    robust, _ = load_checkpoint(ROOT / "assets" / "models" / "digits-smallcnn-pgd-at")
    assert erm.body[2].weight.is_contiguous(memory_format=torch.channels_last), "the product's layout"
    if args.what == "flatten":
        emit(["", f"### Flatten keeps the layout — {time.strftime('%Y-%m-%d')}, `python bench/bench_layout.py --what "
              f"flatten --pairs {args.pairs} --threads {args.threads}`, torch {torch.__version__}, CPU capability "
              f"{torch.backends.cpu.get_cpu_capability()}", "",
              "| what, PGD-AT SmallCNN | LayoutFlatten (product) | nn.Flatten (peer, same run) | peer ÷ product, "
              "median of per-pair ratios |", "|---|---|---|---|", *flatten_rows(robust, x, y, args.pairs)], args.out)
        return 0
    rows = []

    def attack_row(label: str, attack, model, n: int) -> None:
        gen = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        plain = contiguous(model)
        ours, peer, ratio = pairs(lambda: attack(model, x, y, 0.1, generator=gen()),
                                  lambda: attack(plain, x, y, 0.1, generator=gen()), n)
        rows.append(f"| {label} | {ours:.3f} s | {peer:.3f} s | {ratio:.2f}× |")

    attack_row("PGD-10 call, 360 digits, ERM", PGD(steps=10), erm, args.pairs)
    attack_row("quick ensemble, 360 digits, PGD-AT ε = 0.1", QuickEnsemble(), robust, max(3, args.pairs // 3))

    train = load_dataset("digits", "train")
    for method in ("pgd-at", "dale"):
        config = TrainConfig(dataset="digits", method=method, eps=0.1, batch_size=128, attack_steps=5, epochs=20)
        spec = METHODS[method]

        def epoch(layout_contiguous: bool) -> None:
            from core.models import build_model

            model = build_model("smallcnn", seed=0, in_channels=1, image_size=8, num_classes=10)
            if layout_contiguous:
                model = contiguous(model)
            train_epoch(model, make_optimizer(model, config), train, config, spec, spec.make_attack(config), 1,
                        torch.device("cpu"), state=MethodState(nu=config.dale_nu))

        ours, peer, ratio = pairs(lambda: epoch(False), lambda: epoch(True), max(3, args.pairs // 2))
        rows.append(f"| {method} epoch, digits, batch 128, 5 attack steps | {ours:.2f} s | {peer:.2f} s | "
                    f"{ratio:.2f}× |")
    lines = ["", f"### Conv weight layout — {time.strftime('%Y-%m-%d')}, `python bench/bench_layout.py --pairs "
             f"{args.pairs} --threads {args.threads}`, torch {torch.__version__}", "",
             "| what | channels-last (product) | contiguous (peer, same run) | contiguous ÷ channels-last, median of "
             "per-pair ratios |", "|---|---|---|---|", *rows]
    emit(lines, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
