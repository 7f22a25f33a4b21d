"""DDP overhead on CPU (issue 9): one training step of 2 gloo processes on a global batch B against one process on
B/2 (each process with one thread), measured in the same run, alternating. A third measurement splits the overhead:
two independent processes on B/2 each, running at the same time (no DDP, no communication), show how much the
machine itself slows one process down when both cores are busy; the rest is DDP's (all-reduce, waiting for the
slower rank). A fourth shows the floor no DDP setting can go below: one bare
gloo all-reduce of the model's gradient (as many floats as SmallCNN has parameters) between 2 idle processes.

Usage: python bench/bench_ddp.py [--repeats 5] [--batch 128] [--methods erm pgd-at] [--out bench/RESULTS.md]

Target: the DDP step ≤ 1.3× the single-process step on half the batch (perfect scaling is 1.0×: the same work per
process plus the gradient all-reduce, which since 2026-11-22 also carries the step's loss and stop flag: one
collective per step, core.distributed.StepCarrier).
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

STEPS = 20


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
    # Exactly STEPS full batches (digits has 1347 training points: tiled when a run needs more).
    idx = torch.arange(STEPS * batch) % len(data)
    data = replace(data, x=data.x[idx], y=data.y[idx])
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


def allreduce_worker() -> None:
    """Time a bare all-reduce of a gradient-sized float32 tensor, 200 times, between the torchrun ranks."""
    import time

    import torch

    torch.set_num_threads(1)
    from core.distributed import init_distributed, shutdown
    from core.models import build_model

    dist, _ = init_distributed("cpu")
    size = sum(p.numel() for p in build_model("smallcnn", seed=0, in_channels=1, image_size=8,
                                              num_classes=10).parameters())
    grad, seconds = torch.randn(size), []
    for i in range(220):  # 20 warm-up calls
        start = time.perf_counter()
        torch.distributed.all_reduce(grad)
        if i >= 20:
            seconds.append(time.perf_counter() - start)
    if dist.is_main:
        print(json.dumps({"floats": size, "median": statistics.median(seconds),
                          "mean": statistics.fmean(seconds),
                          "p90": sorted(seconds)[int(0.9 * len(seconds))]}))
    shutdown()


def measure_allreduce() -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           __file__, "--allreduce"], env=env, capture_output=True, text=True, cwd=ROOT)
    if proc.returncode:
        sys.exit(f"the all-reduce worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _command(method: str, batch: int, repeat: int, ddp: bool) -> list[str]:
    args = ["--worker", method, str(batch if ddp else batch // 2), str(repeat)]
    if ddp:
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__, *args]
    return [sys.executable, __file__, *args]


def _seconds(out: str, err: str, code: int, what: str) -> float:
    if code:
        sys.exit(f"the {what} worker failed:\n{err[-3000:]}")
    return json.loads(out.strip().splitlines()[-1])["step_seconds"]


def measure(method: str, batch: int, repeat: int, mode: str) -> float:
    """Seconds per step: ``single`` (one process alone), ``ddp`` (torchrun, 2 processes) or ``pair`` (two
    single processes at once; the slower one's time, since a DDP step waits for its slower rank)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    count = 2 if mode == "pair" else 1
    procs = [subprocess.Popen(_command(method, batch, repeat, mode == "ddp"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT) for _ in range(count)]
    finished = [(*proc.communicate(), proc.returncode) for proc in procs]  # both end before either is judged
    return max(_seconds(out, err, code, mode) for out, err, code in finished)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128, help="global batch of the DDP run (even)")
    parser.add_argument("--methods", nargs="+", default=["erm", "pgd-at"])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    lines = ["", f"### DDP overhead on CPU (`python bench/bench_ddp.py --repeats {args.repeats} --batch {args.batch}`)",
             "", f"2 gloo processes × 1 thread on a global batch of {args.batch} vs 1 process × 1 thread on "
             f"{args.batch // 2}; digits, SmallCNN, {STEPS} steps per timed epoch, median of {args.repeats}. "
             "\"2 at once\": two independent single processes on B/2 started together (the slower one's time): "
             "what sharing the machine costs without DDP.", "",
             "| method | 1 process, B/2 (ms/step) | 2 at once, B/2 each | DDP 2 processes, B | DDP ÷ 1 process "
             "| DDP ÷ 2 at once | target ≤ 1.3× |", "|---|---|---|---|---|---|---|"]
    singles = {}
    for method in args.methods:
        times: dict[str, list[float]] = {"single": [], "pair": [], "ddp": []}
        for repeat in range(args.repeats):
            for mode, found in times.items():
                found.append(measure(method, args.batch, repeat, mode))
        single, pair, ddp = (statistics.median(times[m]) for m in ("single", "pair", "ddp"))
        singles[method] = single
        lines.append(f"| {method} | {1000 * single:.1f} | {1000 * pair:.1f} | {1000 * ddp:.1f} | {ddp / single:.2f}× "
                     f"| {ddp / pair:.2f}× | {'pass' if ddp / single <= 1.3 else 'miss'} |")
    bare = measure_allreduce()
    share = ", ".join(f"{100 * bare['mean'] / single:.0f} % of the {method} step on B/2"
                      for method, single in singles.items())
    lines += ["", f"Floor: one bare gloo all-reduce of {bare['floats']:,} float32 (SmallCNN's gradient) between 2 "
              f"idle processes takes {1000 * bare['median']:.2f} ms (median of 200), {1000 * bare['mean']:.2f} ms on "
              f"average, {1000 * bare['p90']:.2f} ms at the 90th percentile: on average {share}. A DDP step "
              "cannot cost less than that on top of its compute."]
    emit(lines, args.out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--allreduce":
        allreduce_worker()
    else:
        main()
