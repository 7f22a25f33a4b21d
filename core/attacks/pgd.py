"""Projected gradient descent (PGD) in ℓ∞, ℓ2 or per-patch ℓ2, with random starts and restarts.

Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083
Threat model: ``norm`` ball of radius ε around x, clipped to the data bounds.

Arguments (keyword-only config): ``norm`` ("linf"), ``steps`` (10), ``step_size`` (None → 2.5·ε/steps,
else an absolute step in input units), ``random_start`` (True), ``restarts`` (1; the worst case per point is
kept: a successful restart wins, else the highest loss).
Shapes: x N×…, y N (int64), eps float or N; ``loss_trace`` is steps×N for the kept restart. Example::

    result = PGD(steps=20)(model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attacks.base import AttackConfig, Bounds, check_bool, check_int, check_positive, input_gradient
from core.attacks.gradient import GradientAttack, clip_to
from core.attacks.norms import random_in_ball
from core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class PGDConfig(AttackConfig):
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("steps", self.steps)
        check_int("restarts", self.restarts)
        if self.step_size is not None:
            check_positive("step_size", self.step_size)
        check_bool("random_start", self.random_start)
        if self.restarts > 1 and not self.random_start:
            raise ConfigError("restarts > 1 needs random_start=True (otherwise every restart is identical)")

    def step_for(self, eps: torch.Tensor) -> torch.Tensor:
        if self.step_size is None:
            return eps * (2.5 / self.steps)
        return torch.full_like(eps, self.step_size)


class PGD(GradientAttack):
    name = "pgd"
    config_class = PGDConfig

    def initial_point(
        self, x: torch.Tensor, eps: torch.Tensor, generator: torch.Generator, bounds: Bounds
    ) -> torch.Tensor:
        if not self.config.random_start:
            return x.clone()
        return clip_to(x + random_in_ball(x.shape, eps, self.config.norm, generator, x.device), bounds)

    def _run_once(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        loss_fn = self.get_loss_fn(model, x, y)
        step = self.config.step_for(eps)
        x_adv = self.initial_point(x, eps, generator, bounds)
        trace = []
        for _ in range(self.config.steps):
            loss, grad = input_gradient(loss_fn, x_adv)
            trace.append(loss)
            x_adv = self.ascend(x, x_adv, grad, step, eps, bounds)
        return x_adv, torch.stack(trace)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        best, best_trace = self._run_once(model, x, y, eps, generator, bounds)
        if self.config.restarts == 1:
            return best, best_trace
        loss_fn = self.get_loss_fn(model, x, y)
        with torch.no_grad():
            best_loss = loss_fn(best)
            best_fooled = model(best).argmax(1) != y
        for _ in range(self.config.restarts - 1):
            cand, trace = self._run_once(model, x, y, eps, generator, bounds)
            with torch.no_grad():
                cand_loss = loss_fn(cand)
                cand_fooled = model(cand).argmax(1) != y
            take = (cand_fooled & ~best_fooled) | ((cand_fooled == best_fooled) & (cand_loss > best_loss))
            mask = take.reshape(-1, *([1] * (x.dim() - 1)))
            best = torch.where(mask, cand, best)
            best_trace = torch.where(take.unsqueeze(0), trace, best_trace)
            best_loss = torch.where(take, cand_loss, best_loss)
            best_fooled = best_fooled | cand_fooled
        return best, best_trace
