"""Shared machinery of the gradient attacks: the loss to ascend, the step size, one ascent step.

Keeping these here lets each attack file say only what is particular to it (foolbox's gradient-descent base).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from core.attacks.base import Attack, Bounds, LossFn
from core.attacks.graphs import GraphCache
from core.attacks.norms import ascent_direction, project


def eps_like(eps: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-sample ε shaped to broadcast against ``x``."""
    return eps.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)


def clip_to(x: torch.Tensor, bounds: Bounds) -> torch.Tensor:
    return x if bounds is None else x.clamp(bounds[0], bounds[1])


class GradientAttack(Attack):
    """Base for attacks that ascend a per-sample loss by signed / normalised gradient steps."""

    @property
    def graph_cache(self) -> GraphCache:
        """The attack's recorded steps (CUDA graphs on a GPU, core/attacks/graphs.py); made on first use."""
        cache = self.__dict__.get("_graph_cache")
        if cache is None:
            cache = self.__dict__["_graph_cache"] = GraphCache()
        return cache

    def get_loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossFn:
        """Per-sample cross-entropy of the model at a candidate ``x_adv``."""

        def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(x_adv), y, reduction="none")

        return loss_fn

    def ascend(
        self, x: torch.Tensor, x_adv: torch.Tensor, grad: torch.Tensor, step: torch.Tensor, eps: torch.Tensor,
        bounds: Bounds,
    ) -> torch.Tensor:
        """One steepest-ascent step of size ``step`` followed by projection and clipping."""
        moved = x_adv + eps_like(step, x) * ascent_direction(grad, self.config.norm)
        return clip_to(x + project(moved - x, eps, self.config.norm), bounds)
