"""Random draws that do not depend on how a batch is split across processes (training under torchrun).

Under DistributedDataParallel every rank attacks its contiguous share of each global batch. For the adversarial
examples, and so the trained weights, to equal a single process's on the same global batch, an attack inside
``batch_shard`` makes every random draw for the whole global batch (from a generator every rank seeds alike) and keeps
its own rows, and normalises by the global batch size where it averages over the batch. Outside ``batch_shard``
nothing changes: a draw is exactly the plain call.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch


@dataclass(frozen=True)
class Shard:
    offset: int  # first row of this process's share in the global batch
    size: int    # rows of the share
    total: int   # rows of the global batch


_SHARD: ContextVar[Shard | None] = ContextVar("atlas_batch_shard", default=None)


@contextmanager
def batch_shard(offset: int, size: int, total: int) -> Iterator[None]:
    """Attacks run inside see rows ``offset : offset + size`` of a global batch of ``total`` rows."""
    if not 0 <= offset <= offset + size <= total:
        raise ValueError(f"a share of rows {offset}:{offset + size} does not fit a batch of {total}")
    token = _SHARD.set(Shard(offset, size, total))
    try:
        yield
    finally:
        _SHARD.reset(token)


def global_batch_size(n: int) -> int:
    """The batch size a batch-mean should divide by: the global one when ``n`` rows are this process's share."""
    shard = _SHARD.get()
    return shard.total if shard is not None and n == shard.size else n


def draw(sample: Callable[[tuple[int, ...]], torch.Tensor], shape: Sequence[int], batch_dim: int = 0) -> torch.Tensor:
    """``sample(shape)``, or, inside ``batch_shard`` for a tensor of the share's rows, this share's rows of
    ``sample`` drawn for the global batch (the same numbers a single process draws for these rows)."""
    shard = _SHARD.get()
    shape = tuple(int(s) for s in shape)
    if shard is None or shape[batch_dim] != shard.size or shard.size == shard.total:
        return sample(shape)
    full = (*shape[:batch_dim], shard.total, *shape[batch_dim + 1:])
    return sample(full).narrow(batch_dim, shard.offset, shard.size)
