"""Projected gradient descent (PGD) in ℓ∞, ℓ2 or per-patch ℓ2, with random starts and restarts.

Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083
Threat model: ``norm`` ball of radius ε around x, clipped to the data bounds.

Arguments (keyword-only config): ``norm`` ("linf"), ``steps`` (10), ``step_size`` (None → 2.5·ε/steps,
else an absolute step in input units), ``random_start`` (True), ``restarts`` (1; the worst case per point is
kept: a successful restart wins, else the highest loss), ``target`` (None = untargeted; a class index makes the
attack descend the loss of that class instead of ascending the true class's — a point whose true class is the
target is refused with ConfigError, as is a target outside the model's classes).
Shapes: x N×…, y N (int64), eps float or N; ``loss_trace`` is steps×N for the kept restart (minus the target's
loss when targeted). ``success`` keeps the contract's meaning (prediction ≠ true label); whether the target was
reached is ``result.logits_adv.argmax(1) == target``. Example::

    result = PGD(steps=20)(model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))
    toward_3 = PGD(steps=20, target=3)(model, x[y != 3], y[y != 3], eps=0.1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attacks.base import AttackConfig, Bounds, LossFn, check_bool, check_int, check_positive, input_gradient
from core.attacks.gradient import GradientAttack, clip_to
from core.attacks.norms import random_in_ball
from core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class PGDConfig(AttackConfig):
    steps: int = 10
    step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    target: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("steps", self.steps)
        check_int("restarts", self.restarts)
        if self.target is not None:
            check_int("target", self.target, low=0)
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

    def objective(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossFn:
        """The per-sample loss to ascend: the attack's loss of the true class, or minus that of the target.

        Built on ``get_loss_fn`` with the label swapped for the target, so a subclass that only changes the loss
        (Temperature-PGD) becomes targeted without code of its own.
        """
        if self.config.target is None:
            return self.get_loss_fn(model, x, y)
        toward = self.get_loss_fn(model, x, torch.full_like(y, self.config.target))
        return lambda x_adv: -toward(x_adv)

    def reached(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample goal reached: the target predicted (targeted) or any wrong class (untargeted)."""
        if self.config.target is None:
            return logits.argmax(1) != y
        return logits.argmax(1) == self.config.target

    def check_target(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        """Refuse a target that is some point's true class, or that the model cannot predict."""
        target = self.config.target
        if target is None or len(x) == 0:
            return
        same = int((y == target).sum())
        if same:
            raise ConfigError(f"target class {target} is the true class of {same} point{'s' * (same != 1)}; "
                              "a targeted attack needs another class")
        with torch.no_grad():
            classes = model(x[:1]).shape[1]
        if target >= classes:
            raise ConfigError(f"target class {target} is outside the model's {classes} classes (0–{classes - 1})")

    def _run_once(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = self.initial_point(x, eps, generator, bounds)

        def iterate(x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, x_adv: torch.Tensor) -> (
                tuple[torch.Tensor, torch.Tensor]):
            loss_fn = self.objective(model, x, y)
            step = self.config.step_for(eps)
            trace = []
            for _ in range(self.config.steps):
                loss, grad = input_gradient(loss_fn, x_adv)
                trace.append(loss)
                x_adv = self.ascend(x, x_adv, grad, step, eps, bounds)
            return x_adv, torch.stack(trace)

        # On a GPU a repeated call replays the steps as one CUDA graph (core/attacks/graphs.py).
        x_adv, trace = self.graph_cache.run(iterate, model, (x, y, eps, x_adv), (bounds, self.config))
        return x_adv, trace

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.check_target(model, x, y)
        best, best_trace = self._run_once(model, x, y, eps, generator, bounds)
        if self.config.restarts == 1:
            return best, best_trace
        loss_fn = self.objective(model, x, y)
        with torch.no_grad():
            best_loss = loss_fn(best)
            best_fooled = self.reached(model(best), y)
        for _ in range(self.config.restarts - 1):
            cand, trace = self._run_once(model, x, y, eps, generator, bounds)
            with torch.no_grad():
                cand_loss = loss_fn(cand)
                cand_fooled = self.reached(model(cand), y)
            take = (cand_fooled & ~best_fooled) | ((cand_fooled == best_fooled) & (cand_loss > best_loss))
            mask = take.reshape(-1, *([1] * (x.dim() - 1)))
            best = torch.where(mask, cand, best)
            best_trace = torch.where(take.unsqueeze(0), trace, best_trace)
            best_loss = torch.where(take, cand_loss, best_loss)
            best_fooled = best_fooled | cand_fooled
        return best, best_trace
