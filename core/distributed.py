"""Running under ``torchrun``: the process group, which rank does what, and the few collectives the loop needs.

``torchrun --nproc_per_node=N -m core train …`` starts N processes with ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` set. :func:`init_distributed` reads them and joins PyTorch's own process group (NCCL on GPUs, gloo
on CPU); without them it returns the single-process context, whose collectives are no-ops, so the same code runs
either way. Rank 0 owns the registry, the checkpoints and the console; the others compute.
"""

from __future__ import annotations

import datetime
import gc
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from core.errors import AtlasError, ConfigError

T = TypeVar("T")
# A rank that waits longer than this for the others (e.g. rank 0 evaluating a big test set) fails the run.
TIMEOUT = datetime.timedelta(minutes=30)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job. The default is a single process (rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        """The global batch must split evenly over the processes (each rank trains on batch_size / world_size)."""
        if batch_size % self.world_size:
            lower = batch_size - batch_size % self.world_size
            options = " or ".join(str(b) for b in (lower, lower + self.world_size) if b > 0)
            raise ConfigError(f"the batch size {batch_size} is the global batch and must divide evenly over the "
                              f"{self.world_size} processes (torchrun's world size): use {options}")

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """All-reduce ``tensor`` in place by summing over the ranks (gloo and NCCL both support it)."""
        if self.enabled:
            torch.distributed.all_reduce(tensor)
        return tensor

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any rank: a stop request seen by one process stops them all at
        the same batch."""
        if not self.enabled:
            return flag
        return bool(self.sum_(torch.tensor([float(flag)], device=_collective_device())).item() > 0)

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (picklable objects of our own making, never user input)."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result to every rank. A user error raised there is raised on
        every rank with the same message, so no rank is left waiting for the others."""
        if not self.enabled:
            return fn()
        outcome: tuple[bool, Any] = (True, None)
        if self.is_main:
            try:
                outcome = (True, fn())
            except AtlasError as exc:
                outcome = (False, exc)
        ok, value = self.broadcast(outcome if self.is_main else None)
        if not ok:
            raise value
        return value


class StepCarrier:
    """Carries a training step's few numbers (loss, loss parts, the stop flag) in DDP's gradient all-reduce.

    Each collective is a rendezvous, and on a small CPU VM a rendezvous costs a cross-process wake-up (≈ 2 ms on
    average on 2 vCPUs, bench/RESULTS.md) whatever its size; a step that sent its numbers in a collective of its
    own paid it twice. Registered as the DDP wrapper's comm hook, this appends them to the last gradient bucket
    of the step's backward pass (the bucket is averaged as DDP's default hook does; the numbers are summed) and
    hands back their sum. A step whose backward pass ran no DDP reduction gets ``None`` from :meth:`take` and
    reduces them itself.
    """

    def __init__(self, world_size: int) -> None:
        self.world_size = world_size
        self._outgoing: torch.Tensor | None = None
        self._reduced: torch.Tensor | None = None

    def send(self, values: torch.Tensor) -> None:
        """The numbers to sum over the ranks in the next backward pass's last bucket."""
        self._outgoing, self._reduced = values, None

    def take(self) -> torch.Tensor | None:
        """Their sum over the ranks (in the bucket's dtype, on its device), or ``None`` when no bucket carried
        them."""
        reduced, self._outgoing, self._reduced = self._reduced, None, None
        return reduced

    # No annotations on ``bucket`` and the result: DDP compares them with its own types, and the module's
    # ``from __future__ import annotations`` would hand it strings.
    def hook(self, group: Any, bucket):  # type: ignore[no-untyped-def]
        buffer = bucket.buffer()
        buffer.div_(self.world_size)
        extra = self._outgoing
        # A half-precision bucket would round the loss; those steps send the numbers on their own.
        if extra is None or not bucket.is_last() or buffer.dtype not in (torch.float32, torch.float64):
            work = torch.distributed.all_reduce(buffer, group=group, async_op=True)
            return work.get_future().then(lambda fut: fut.value()[0])
        self._outgoing = None
        n = buffer.numel()
        combined = torch.cat([buffer, extra.to(buffer.device, buffer.dtype)])

        def split(fut: torch.futures.Future[list[torch.Tensor]]) -> torch.Tensor:
            out = fut.value()[0]
            self._reduced = out[n:]  # no copy to the CPU here: on NCCL that would wait inside the callback
            return out[:n]

        return torch.distributed.all_reduce(combined, group=group, async_op=True).get_future().then(split)


SINGLE = DistContext()
_state: dict[str, Any] = {"backend": None}


def _collective_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if _state["backend"] == "nccl" else torch.device("cpu")


def from_env() -> DistContext:
    """The context torchrun's variables describe (without joining a process group)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise ConfigError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers (torchrun sets them): {exc}") from exc
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK {rank} is not inside WORLD_SIZE {world}")
    return DistContext(rank, world, local)


def init_distributed(device_name: str = "auto") -> tuple[DistContext, torch.device]:
    """Join torchrun's process group when there is one and pick this rank's device.

    ``auto`` means one GPU per process when GPUs are visible (NCCL), else CPU processes (gloo). ``cuda`` without
    NCCL, or fewer GPUs than processes on the node, is a clear ConfigError before anything is trained.
    """
    from core.utils import resolve_device

    ctx = from_env()
    if not ctx.enabled:
        return ctx, resolve_device(device_name)
    dist = torch.distributed
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; run without torchrun")
    device = resolve_device(device_name)
    if device.type == "cuda":
        if not dist.is_nccl_available():
            raise ConfigError("torchrun on GPUs needs NCCL, which this PyTorch build lacks; install the CUDA build "
                              "of torch, or run the processes on CPU with --device cpu (gloo)")
        if torch.cuda.device_count() <= ctx.local_rank:
            raise ConfigError(f"torchrun started process {ctx.local_rank} on this node but only "
                              f"{torch.cuda.device_count()} GPU(s) are visible: use --nproc_per_node="
                              f"{torch.cuda.device_count()} or fewer")
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=TIMEOUT)
    _state["backend"] = backend
    return ctx, device


# What a collective raises when a peer died: DistError subclasses, or gloo's plain RuntimeError from its transport.
_LOST_PEER = ("gloo", "nccl", "connection reset", "connection closed", "broken pipe", "timed out")


def lost_peer(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective failing because another rank of the job is gone."""
    if isinstance(exc, torch.distributed.DistError):
        return True
    return isinstance(exc, RuntimeError) and any(key in str(exc).lower() for key in _LOST_PEER)


def lost_peer_text(exc: BaseException) -> str:
    """One line for a collective that failed because another rank is gone: gloo's messages start with a source
    location and end with boilerplate, so only the sentence that says what happened is kept."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    detail = re.sub(r"^\[[^\]]*\]\s*", "", text).split(". ")[0][:160]
    return f"another process of this torchrun job stopped ({detail})"


def shutdown() -> None:
    """Leave the process group and free it now, while the interpreter is whole.

    ``destroy_process_group`` only drops c10d's own references. A process's first DistributedDataParallel wrapper
    sits in a reference cycle and keeps the group alive until the cyclic collector runs, which may be during
    interpreter finalisation. A gloo group freed then can abort the process (SIGABRT, "terminate called without an
    active exception"), seen once in about 25 runs of a resumed two-process job under load. Collecting here frees
    it first.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
        _state["backend"] = None
        gc.collect()
