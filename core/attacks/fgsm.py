"""FGSM, FGSM with a random start (FGSM-RS) and N-FGSM: single-step attacks.

Papers:
  * Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015,
    https://arxiv.org/abs/1412.6572
  * Wong, Rice, Kolter, "Fast is better than free", ICLR 2020, https://arxiv.org/abs/2001.03994 (FGSM-RS:
    uniform start in the ε-ball, step α = 1.25·ε)
  * de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step Adversarial Training", NeurIPS 2022,
    https://arxiv.org/abs/2202.01181 (N-FGSM: noise from the k·ε box, step α = ε, no projection back to ε)
Threat model: ℓ∞ or ℓ2 ball of radius ε, inputs clipped to the data bounds.

Arguments (keyword-only config): ``norm`` ("linf"), ``random_start`` (False), ``step_factor`` (α/ε, 1.0).
Shapes: x N×…, y N (int64), eps float or N. Example::

    result = FGSM(random_start=True, step_factor=1.25)(model, x, y, eps=0.1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attacks.base import AttackConfig, Bounds, check_bool, check_positive, input_gradient
from core.attacks.gradient import GradientAttack, clip_to, eps_like
from core.attacks.norms import ascent_direction, random_in_ball


@dataclass(frozen=True, kw_only=True)
class FGSMConfig(AttackConfig):
    random_start: bool = False
    step_factor: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_bool("random_start", self.random_start)
        check_positive("step_factor", self.step_factor)


class FGSM(GradientAttack):
    name = "fgsm"
    config_class = FGSMConfig

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = x
        if self.config.random_start:
            x_adv = clip_to(x + random_in_ball(x.shape, eps, self.config.norm, generator, x.device), bounds)

        def step(x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, x_adv: torch.Tensor) -> (
                tuple[torch.Tensor, torch.Tensor]):
            loss, grad = input_gradient(self.get_loss_fn(model, x, y), x_adv)
            return self.ascend(x, x_adv, grad, eps * self.config.step_factor, eps, bounds), loss.unsqueeze(0)

        # The random start is drawn above; on a GPU a repeated call replays the step as one CUDA graph.
        x_adv, trace = self.graph_cache.run(step, model, (x, y, eps, x_adv), (bounds, self.config))
        return x_adv, trace


@dataclass(frozen=True, kw_only=True)
class NFGSMConfig(AttackConfig):
    noise_factor: float = 2.0
    step_factor: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("noise_factor", self.noise_factor, allow_zero=True)
        check_positive("step_factor", self.step_factor)


class NFGSM(GradientAttack):
    """N-FGSM: the perturbation may reach (noise_factor + step_factor)·ε by design; ``radius`` says so."""

    name = "nfgsm"
    config_class = NFGSMConfig
    evaluates_at_eps = False

    def radius(self, eps: torch.Tensor) -> torch.Tensor:
        return eps * (self.config.noise_factor + self.config.step_factor)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        noise = random_in_ball(x.shape, eps * self.config.noise_factor, self.config.norm, generator, x.device)
        x_noisy = clip_to(x + noise, bounds)

        def step(x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor, x_noisy: torch.Tensor) -> (
                tuple[torch.Tensor, torch.Tensor]):
            loss, grad = input_gradient(self.get_loss_fn(model, x, y), x_noisy)
            size = eps_like(eps * self.config.step_factor, x)
            return clip_to(x_noisy + size * ascent_direction(grad, self.config.norm), bounds), loss.unsqueeze(0)

        x_adv, trace = self.graph_cache.run(step, model, (x, y, eps, x_noisy), (bounds, self.config))
        return x_adv, trace
