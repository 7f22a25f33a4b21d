"""Building blocks shared by the architectures: input normalisation and the Li & Li smoothed ReLU.

Normalisation lives inside every model so that attacks, projections and clipping all work in [0, 1] input space;
the statistics are buffers, so they travel with the checkpoint and move with ``model.to(device)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from core.errors import ConfigError

__all__ = ["Normalize", "LayoutFlatten", "SmoothedReLU", "smoothed_relu", "as_float_tuple"]


def as_float_tuple(name: str, value: float | Sequence[float]) -> tuple[float, ...]:
    """A number or a sequence of numbers as a non-empty tuple of finite floats; anything else is a ConfigError."""
    items = [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence) or len(items) == 0:
        raise ConfigError(f"{name} must be a number or a non-empty list of numbers, got {value!r}")
    out = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise ConfigError(f"{name} must contain finite numbers only, got {value!r}")
        out.append(float(item))
    return tuple(out)


class Normalize(nn.Module):
    """``(x - mean) / std`` along dim 1 (channels of N×C×H×W, features of N×D).

    ``mean`` and ``std`` hold one value (shared by every channel) or one value per channel. Both are persistent
    buffers, so a checkpoint stores them and loading restores them exactly.
    """

    def __init__(
        self,
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
        num_channels: int | None = None,
    ) -> None:
        super().__init__()
        mean_values = as_float_tuple("mean", mean)
        std_values = as_float_tuple("std", std)
        if any(s <= 0 for s in std_values):
            raise ConfigError(f"std must be positive, got {std_values}")
        width = num_channels if num_channels is not None else max(len(mean_values), len(std_values))
        for name, values in (("mean", mean_values), ("std", std_values)):
            if len(values) not in (1, width):
                raise ConfigError(f"{name} must have 1 or {width} values (one per channel), got {len(values)}")
        # Broadcast to a common length now so forward needs no branching and the buffers have a fixed shape.
        self.register_buffer("mean", torch.tensor(_broadcast(mean_values, width), dtype=torch.float32))
        self.register_buffer("std", torch.tensor(_broadcast(std_values, width), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = self.mean.shape[0]
        if channels > 1 and (x.dim() < 2 or x.shape[1] != channels):
            raise ValueError(f"Normalize expects {channels} channels in dim 1, got input of shape {tuple(x.shape)}")
        shape = (1, channels) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def extra_repr(self) -> str:
        return f"channels={self.mean.shape[0]}"


def _broadcast(values: tuple[float, ...], width: int) -> list[float]:
    return list(values) * width if len(values) == 1 else list(values)


class _ChannelsLastFlatten(torch.autograd.Function):
    """``x.flatten(1)`` for a channels-last N×C×H×W tensor whose gradient comes back channels-last.

    Plain ``flatten`` hands back an NCHW-contiguous gradient; the ReLU before it then runs its backward on a
    contiguous gradient against a channels-last output, a strided path about 15× slower than with both in one
    layout (bench/RESULTS.md, "Flatten keeps the layout"). The backward is written in differentiable ops, so
    double backward still works."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class LayoutFlatten(nn.Flatten):
    """``nn.Flatten(1)`` that keeps a channels-last input's gradient channels-last (same output, same state dict)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.start_dim == 1 and self.end_dim == -1 and x.dim() == 4 and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)):
            return _ChannelsLastFlatten.apply(x)
        return super().forward(x)


class _SmoothedReLU(torch.autograd.Function):
    """σ̃ with a one-multiply backward: σ̃'(z) = (clamp(z, 0, ρ)/ρ)^(q−1), which is 0 for z ≤ 0, the polynomial's slope
    on (0, ρ) and 1 from ρ on (q > 1). The backward is written in differentiable ops, so double backward (Hessian-
    vector products) stays exact. About 1.8× faster per forward+backward than autograd through clamp/pow/where."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, q: float, rho: float) -> torch.Tensor:
        ctx.save_for_backward(z)
        ctx.q, ctx.rho = q, rho
        poly = z.clamp(0.0, rho).pow(q).mul_(1.0 / (q * rho ** (q - 1)))
        return poly.add_((z - rho).clamp_min_(0.0))  # the linear part beyond ρ: z − ρ + ρ/q

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (z,) = ctx.saved_tensors
        return grad * (z.clamp(0.0, ctx.rho) * (1.0 / ctx.rho)).pow(ctx.q - 1), None, None


def smoothed_relu(z: torch.Tensor, q: float = 3.0, rho: float = 0.5) -> torch.Tensor:
    """Li & Li's smoothed ReLU: 0 for z ≤ 0, z^q / (q·ρ^(q−1)) for 0 < z < ρ, z − (1 − 1/q)·ρ for z ≥ ρ.

    The pieces meet with matching value (ρ/q) and slope (1) at ρ and with value and slope 0 at 0; q = 1 is the
    ReLU. Written as ρ/q·(clamp(z, 0, ρ)/ρ)^q + max(z − ρ, 0), with a hand-written backward (``_SmoothedReLU``).
    """
    if q < 1:
        raise ConfigError(f"smoothed_relu needs q >= 1, got {q}")
    if rho <= 0:
        raise ConfigError(f"smoothed_relu needs rho > 0, got {rho}")
    if q == 1:
        return torch.relu(z)
    return _SmoothedReLU.apply(z, float(q), float(rho))


class SmoothedReLU(nn.Module):
    """Module form of :func:`smoothed_relu`, so the activation shows up in ``print(model)`` and forward hooks."""

    def __init__(self, q: float = 3.0, rho: float = 0.5) -> None:
        super().__init__()
        if q < 1 or rho <= 0:
            raise ConfigError(f"SmoothedReLU needs q >= 1 and rho > 0, got q={q}, rho={rho}")
        self.q = float(q)
        self.rho = float(rho)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return smoothed_relu(z, self.q, self.rho)

    def extra_repr(self) -> str:
        return f"q={self.q:g}, rho={self.rho:g}"
