"""Probe for a one-GPU machine: can two NCCL ranks share one GPU? (issue 9's "NCCL with 2+ ranks").

    python -m torch.distributed.run --nproc_per_node=2 bench/nccl_probe.py

Both ranks pick cuda:0 and all-reduce a small tensor. NCCL 2.28 refuses ("Duplicate GPU detected", invalid usage),
so multi-rank NCCL needs a machine with as many GPUs as ranks (bench/RESULTS.md). Each rank prints what NCCL said.
"""
import os

import torch
import torch.distributed as dist

rank = int(os.environ["RANK"])
torch.cuda.set_device(0)
try:
    dist.init_process_group("nccl", device_id=torch.device("cuda", 0))
    t = torch.ones(4, device="cuda") * (rank + 1)
    dist.all_reduce(t)
    torch.cuda.synchronize()
    print(f"rank {rank}: all_reduce -> {t.tolist()}", flush=True)
    dist.destroy_process_group()
except Exception as exc:
    print(f"rank {rank}: {type(exc).__name__}: {str(exc)[:400]}", flush=True)
    raise  # the probe's exit status says it failed
