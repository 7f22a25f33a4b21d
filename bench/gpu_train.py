"""GPU training speed (issue 9): FGSM-RS and PGD-10 AT epochs of PreAct-ResNet-18 on CIFAR-shaped data, through the
product's training loop, against a plain-PyTorch FGSM-RS loop written as in Wong et al.'s reference script.

Usage (on a GPU machine):
    python bench/gpu_train.py [--n 10000] [--repeats 3] [--amp] [--channels-last] [--out bench/RESULTS.md]
    python bench/gpu_train.py --device cpu --small      # a smoke run of the script itself (no figures)

Data: the CIFAR-10 training set when its binary files are in place (`python -m core data download cifar10`),
else N random CIFAR-shaped images (per-epoch throughput is what is compared). Targets: PGD-10 AT epoch ≤ 3.6×
the FGSM-RS epoch; our FGSM-RS epoch no slower than the reference loop (same model, data, batch 128, α = 1.25ε,
cyclic lr, the same precision).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

EPS = 8 / 255


def load(n: int, small: bool) -> Any:
    import torch

    from core.data import Dataset, load_dataset, missing_files

    if not small and not missing_files("cifar10"):
        return load_dataset("cifar10", "train").subset(n), "CIFAR-10"
    gen = torch.Generator().manual_seed(0)
    return Dataset("synthetic", "train", torch.rand(n, 3, 32, 32, generator=gen),
                   torch.randint(0, 10, (n,), generator=gen), tuple(str(i) for i in range(10))), "synthetic"


def reference_epoch(model: Any, data: Any, device: Any, amp: bool, channels_last: bool, batch: int) -> None:
    """Wong et al.'s FGSM-RS loop, as in their train_fgsm.py: uniform δ in the ε-ball, one signed step of
    α = 10/255, clamp, then the training step on x + δ (cyclic lr omitted: its cost is nil)."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    alpha = 1.25 * EPS
    model.train()
    dtype = torch.bfloat16
    for i in range(0, len(data), batch):
        x, y = data.x[i:i + batch].to(device, non_blocking=True), data.y[i:i + batch].to(device, non_blocking=True)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        delta = torch.empty_like(x).uniform_(-EPS, EPS)
        delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta + alpha * grad.sign()).clamp(-EPS, EPS)
        delta = ((x + delta).clamp(0, 1) - x).detach()
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            loss = F.cross_entropy(model(x + delta), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def loops(args: Any, device: Any) -> dict[str, Callable[[], None]]:
    """One epoch each of our FGSM-RS, the reference loop and our PGD-10 AT, on the same data and model."""
    import torch

    from core.models import build_model
    from core.training import TrainConfig
    from core.training.epoch import train_epoch
    from core.training.loop import make_optimizer, place_data
    from core.training.methods import METHODS, MethodState

    data, args.source = load(args.n, args.small)
    data = place_data(data, device)
    args.points = len(data)
    width = 16 if args.small else 64

    def model_for() -> Any:
        model = build_model("preact_resnet18", seed=0, width=width).to(device)
        return model.to(memory_format=torch.channels_last) if args.channels_last else model

    def ours(method: str, graphs: bool = True) -> Callable[[], None]:
        config = TrainConfig(dataset="cifar10", arch="preact_resnet18", method=method, eps=EPS, attack_steps=10,
                             attack_step_size=2 / 255, batch_size=args.batch, epochs=15, lr=0.2,
                             schedule="onecycle", amp=args.amp, channels_last=args.channels_last)
        model = model_for()
        optimizer, m = make_optimizer(model, config), METHODS[method]
        attack = m.make_attack(config)

        def epoch() -> None:
            os.environ["ATLAS_CUDA_GRAPHS"] = "1" if graphs else "0"
            train_epoch(model, optimizer, data, config, m, attack, 1, device, state=MethodState())
        return epoch

    def reference() -> Callable[[], None]:
        model = model_for()
        return lambda: reference_epoch(model, data, device, args.amp, args.channels_last, args.batch)

    return {"FGSM-RS (ours)": ours("fgsm-rs"), "FGSM-RS (reference loop)": reference(),
            "FGSM-RS (ours, no CUDA graphs)": ours("fgsm-rs", graphs=False),
            "PGD-10 AT (ours)": ours("pgd-at"), "PGD-10 AT (ours, no CUDA graphs)": ours("pgd-at", graphs=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--small", action="store_true", help="width 16, 64 points: smoke run")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN time its algorithms per shape (the product leaves it off)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    device = torch.device(args.device)
    if args.small:
        args.n, args.batch, args.repeats = 64, 32, 1
    torch.backends.cudnn.benchmark = args.cudnn_benchmark  # as the product: off unless asked
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fns = loops(args, device)
    samples: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()  # warm-up: kernels, allocator, cuDNN's search if asked
    for rep in range(args.repeats):
        for name in list(fns) if rep % 2 == 0 else list(fns)[::-1]:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            samples[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in samples.items()}
    fgsm = med["FGSM-RS (ours)"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    flags = " ".join(f for f, on in (("--amp", args.amp), ("--channels-last", args.channels_last),
                                   ("--cudnn-benchmark", args.cudnn_benchmark)) if on)
    lines = ["", f"### GPU training epochs on {name} (`python bench/gpu_train.py --n {args.n} {flags}`)", "",
             f"PreAct-ResNet-18, {args.points} {args.source} images, batch {args.batch}, "
             f"median of {args.repeats} epochs (interleaved). Targets: PGD-10 AT ≤ 3.6× FGSM-RS; FGSM-RS ≤ 1.0× "
             "the reference loop.", "",
             "| epoch | seconds | images/s | ratio to our FGSM-RS |", "|---|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {args.points / v:.0f} | {v / fgsm:.2f}× |" for k, v in med.items()]
    if args.small:
        print("\n".join(lines))
        print("(smoke run: not written to --out)")
        return
    emit(lines, args.out)


if __name__ == "__main__":
    main()
