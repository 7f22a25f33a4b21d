"""GPU attack throughput (issue 9): our PGD vs torchattacks PGD on PreAct-ResNet-18 with CIFAR-shaped inputs, and
our PGD with and without AMP (bf16 autocast) and channels-last.

Usage (on a GPU machine, after `bash bench/reference_env.sh`):
    python bench/gpu_attacks.py [--batch 256] [--batches 8] [--repeats 5] [--out bench/RESULTS.md]
    python bench/gpu_attacks.py --device cpu --small      # a smoke run of the script itself (no figures)

Target: our PGD ≥ 1.0× torchattacks' throughput on the same model, weights and batch (fp32, same steps, same
random start). The AMP rows say what bf16 buys and how robust accuracy moves with it (the final success check is
fp32 in both). Untrained weights are enough for speed; robust accuracy is reported only to show both attacks
do the same work.
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

EPS, STEPS = 8 / 255, 10


def synced(device: Any) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def throughput(fn: Callable[[], Any], points: int, repeats: int, sync: Callable[[], None]) -> float:
    """Median points per second over ``repeats`` calls after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return points / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="width-16 network, 2 batches of 16: smoke run")
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN time its algorithms per shape (the product leaves it off)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    import torch

    from core.attacks import PGD
    from core.models import build_model

    device = torch.device(args.device)
    if args.small:
        args.batch, args.batches, args.repeats = 16, 2, 1
    torch.backends.cudnn.benchmark = args.cudnn_benchmark  # as the product: off unless asked
    model = build_model("preact_resnet18", seed=0, width=16 if args.small else 64).to(device).eval()
    gen = torch.Generator().manual_seed(0)
    xs = [torch.rand(args.batch, 3, 32, 32, generator=gen).to(device) for _ in range(args.batches)]
    ys = [torch.randint(0, 10, (args.batch,), generator=gen).to(device) for _ in range(args.batches)]
    sync, points = synced(device), args.batch * args.batches

    def ours(precision: str = "fp32", channels_last: bool = False, graphs: bool = True) -> Callable[[], float]:
        attack = PGD(norm="linf", steps=STEPS, step_size=2 / 255, precision=precision)
        net = model.to(memory_format=torch.channels_last) if channels_last else model.to(
            memory_format=torch.contiguous_format)

        def run() -> float:
            os.environ["ATLAS_CUDA_GRAPHS"] = "1" if graphs else "0"
            robust = 0
            for i, (x, y) in enumerate(zip(xs, ys)):
                x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
                g = torch.Generator(device=device).manual_seed(i)
                robust += int(attack(net, x, y, EPS, generator=g).robust.sum())
            return robust / points
        return run

    rows = {"ours fp32": ours(), "ours fp32, no CUDA graphs": ours(graphs=False), "ours bf16 (AMP)": ours("bf16"),
            "ours fp32 channels-last": ours(channels_last=True), "ours bf16 channels-last": ours("bf16", True)}
    try:
        sys.path.insert(0, str(ROOT / "bench" / ".reference"))
        import torchattacks

        reference = torchattacks.PGD(model, eps=EPS, alpha=2 / 255, steps=STEPS, random_start=True)

        def theirs() -> float:
            robust = 0
            for x, y in zip(xs, ys):
                robust += int((model(reference(x, y)).argmax(1) == y).sum())
            return robust / points
        rows["torchattacks PGD fp32"] = theirs
    except ModuleNotFoundError:
        print("torchattacks not installed (bash bench/reference_env.sh): no reference row", file=sys.stderr)
    results = {}
    for name, fn in rows.items():
        results[name] = (throughput(fn, points, args.repeats, sync), fn())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peer = results.get("torchattacks PGD fp32", results["ours fp32"])[0]
    flag = " --cudnn-benchmark" if args.cudnn_benchmark else ""
    lines = ["", f"### GPU attack throughput on {name} (`python bench/gpu_attacks.py --batch {args.batch}{flag}`)", "",
             f"PreAct-ResNet-18 (untrained), {points} CIFAR-shaped points in batches of {args.batch}, PGD-{STEPS} "
             f"ℓ∞ ε = 8/255, median of {args.repeats}. Ratio: against torchattacks PGD in the same run "
             "(target ours fp32 ≥ 1.0×).", "", "| attack | points/s | ratio | robust acc |", "|---|---|---|---|"]
    lines += [f"| {k} | {v[0]:.0f} | {v[0] / peer:.2f}× | {v[1]:.3f} |" for k, v in results.items()]
    if args.small:
        print("\n".join(lines))
        print("(smoke run: not written to --out)")
        return
    emit(lines, args.out)


if __name__ == "__main__":
    main()
