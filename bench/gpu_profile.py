"""Where a GPU training epoch spends its time (issue 9): torch.profiler over one epoch of our FGSM-RS, the reference
FGSM-RS loop and our PGD-10 AT on PreAct-ResNet-18, CIFAR-shaped data. Prints, per loop, the wall time, the GPU's
busy time (sum of kernel times), the host-device waits and copies, and the ops that cost the host the most.

Usage (on a GPU machine):  python bench/gpu_profile.py [--n 2560] [--amp] [--channels-last] [--top 12]
    python bench/gpu_profile.py --device cpu --small      # a smoke run of the script itself
A loop whose GPU busy time is far below its wall time is bound by the host (Python, kernel launches, waits).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

WAITS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpyAsync",
         "cudaLaunchKernel", "cuLaunchKernel", "cudaGraphLaunch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2560)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="let cuDNN time its algorithms per shape (the product leaves it off)")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="width 16, 64 points: smoke run (also on CPU)")
    args = parser.parse_args()
    import torch
    from torch.profiler import ProfilerActivity, profile

    import gpu_train

    device = torch.device(args.device)
    if args.small:
        args.n, args.batch = 64, 32
    cuda = device.type == "cuda"
    torch.backends.cudnn.benchmark = cuda and args.cudnn_benchmark  # as the product: off unless asked
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    fns = gpu_train.loops(SimpleNamespace(n=args.n, batch=args.batch, amp=args.amp, channels_last=args.channels_last,
                                          small=False, compile=False), device)
    for name, fn in fns.items():
        fn()  # warm-up
        sync()
        with profile(activities=activities) as prof:
            start = time.perf_counter()
            fn()
            sync()
            wall = time.perf_counter() - start
        events = prof.key_averages()
        gpu = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA") / 1e6
        print(f"\n## {name}: wall {wall:.3f} s, GPU kernels busy {gpu:.3f} s ({gpu / wall:.0%})")
        for e in events:
            if e.key in WAITS:
                print(f"  {e.key:28s} calls {e.count:7d}  host {e.self_cpu_time_total / 1e3:9.1f} ms")
        print(events.table(sort_by="self_cpu_time_total", row_limit=args.top, max_name_column_width=40))


if __name__ == "__main__":
    main()
