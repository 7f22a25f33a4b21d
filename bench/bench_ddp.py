"""DDP overhead on CPU (issue 9): one training step of 2 gloo processes on a global batch B against one process on
B/2 (each process with one thread), measured in the same run, alternating.

Usage: python bench/bench_ddp.py [--repeats 5] [--batch 128] [--methods erm pgd-at] [--out bench/RESULTS.md]

Target: the DDP step ≤ 1.3× the single-process step on half the batch (perfect scaling is 1.0×: the same work per
process plus the gradient all-reduce and the loop's two small collectives per step).
The step is the real loop's (core.training.epoch.train_epoch: attack, loss, backward, optimizer), on digits with
SmallCNN; time per step is an epoch's wall time over its steps, the median over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from common import emit  # noqa: E402

STEPS = 12


def worker(method: str, batch: int, repeat: int) -> None:
    """Run one timed epoch of STEPS global batches (under torchrun or alone) and print seconds per step."""
    import torch

    torch.set_num_threads(1)
    from dataclasses import replace

    from core.data import load_dataset
    from core.distributed import init_distributed, shutdown
    from core.models import build_model
    from core.training import TrainConfig
    from core.training.epoch import train_epoch
    from core.training.loop import _wrap, make_optimizer
    from core.training.methods import METHODS, MethodState

    dist, device = init_distributed("cpu")
    config = TrainConfig(dataset="digits", method=method, eps=0.1, batch_size=batch, attack_steps=5, epochs=2,
                         schedule="onecycle", seed=repeat)
    data = load_dataset("digits", "train")
    data = replace(data, x=data.x[:STEPS * batch], y=data.y[:STEPS * batch])
    model = build_model("smallcnn", seed=repeat, in_channels=1, image_size=8, num_classes=10)
    optimizer = make_optimizer(model, config)
    method_ = METHODS[method]
    wrapped = _wrap(model, config, dist, device)
    for epoch in (1, 2):  # the first epoch warms up (allocator, gloo buffers)
        stats = train_epoch(model, optimizer, data, config, method_, method_.make_attack(config), epoch, device,
                            state=MethodState(), dist=dist, train_model=wrapped)
    if dist.is_main:
        print(json.dumps({"step_seconds": stats.seconds / STEPS}))
    shutdown()


def measure(method: str, batch: int, repeat: int, ddp: bool) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    args = ["--worker", method, str(batch if ddp else batch // 2), str(repeat)]
    if ddp:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__, *args]
    else:
        cmd = [sys.executable, __file__, *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"the {'DDP' if ddp else 'single-process'} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])["step_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128, help="global batch of the DDP run (even)")
    parser.add_argument("--methods", nargs="+", default=["erm", "pgd-at"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = ["", f"### DDP overhead on CPU (`python bench/bench_ddp.py --repeats {args.repeats} --batch {args.batch}`)",
             "", f"2 gloo processes × 1 thread on a global batch of {args.batch} vs 1 process × 1 thread on "
             f"{args.batch // 2}; digits, SmallCNN, {STEPS} steps per timed epoch, median of {args.repeats}.", "",
             "| method | 1 process, B/2 (ms/step) | DDP 2 processes, B (ms/step) | ratio | target ≤ 1.3× |",
             "|---|---|---|---|---|"]
    for method in args.methods:
        single, ddp = [], []
        for repeat in range(args.repeats):
            single.append(measure(method, args.batch, repeat, ddp=False))
            ddp.append(measure(method, args.batch, repeat, ddp=True))
        s, d = statistics.median(single), statistics.median(ddp)
        lines.append(f"| {method} | {1000 * s:.1f} | {1000 * d:.1f} | {d / s:.2f}× | {'pass' if d / s <= 1.3 else 'miss'} |")
    emit(lines, args.out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    else:
        main()
