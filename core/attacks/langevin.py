"""Langevin perturbations of DALE: samples of the perturbation distribution λ(δ|x,y) ∝ [ℓ(f(x+δ), y) − t]₊.

Paper: Robey, Chamon, Pappas, Hassani, Ribeiro, "Adversarial Robustness with Semi-Infinite Constrained
Learning", NeurIPS 2021, https://arxiv.org/abs/2110.15767 (steps as in the authors' code).
Threat model: ℓ∞ (sign steps, as the paper) or ℓ2 (normalised steps) ball of radius ε, clipped to the data bounds.
Per step, with ℓ_pert = batch mean of log(1 − softmax(f(x+δ))_y):
  Laplacian: δ ← Π[δ + η·dir(∇_δ ℓ_pert + c·Laplace(0, 1))]   (noise inside the sign)
  Gaussian:  δ ← Π[δ + η·dir(∇_δ ℓ_pert) + c·N(0, I)]        (noise outside the sign)
from δ₀ = init_scale·N(0, I). With c = 0 and init_scale = 0 this is PGD without random start: the gradients of
log(1 − p_y) and of the cross-entropy −log p_y are positive multiples of each other, so their signs agree.
Arguments (keyword-only config): ``norm`` ("linf"), ``steps`` (7), ``step_size`` (None → 2.5·ε/steps),
``noise`` ("laplacian" or "gaussian"), ``noise_scale`` c (1e-3), ``init_scale`` (1e-3).
Because ℓ_pert is a batch mean (as in the authors' code), the gradient shrinks with the batch size while the
noise does not: ``last_noise_to_grad`` holds the mean |noise| ÷ mean |gradient term| of the last call.
Shapes: x N×…, y N; ``loss_trace`` is steps×N (log(1 − p_y) per sample before each step). Example::

    x_adv = Langevin(noise="laplacian", noise_scale=1e-3)(model, x, y, eps=0.1, generator=gen).x_adv
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attacks.base import AttackConfig, Bounds, check_int, check_positive, input_gradient
from core.attacks.gradient import GradientAttack, clip_to, eps_like
from core.attacks.norms import ascent_direction, project
from core.errors import ConfigError

NOISES = ("laplacian", "gaussian")


@dataclass(frozen=True, kw_only=True)
class LangevinConfig(AttackConfig):
    steps: int = 7
    step_size: float | None = None
    noise: str = "laplacian"
    noise_scale: float = 1e-3
    init_scale: float = 1e-3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in ("linf", "l2"):
            raise ConfigError(f"Langevin perturbations support norm 'linf' or 'l2', got {self.norm!r}")
        if self.noise not in NOISES:
            raise ConfigError(f"noise must be one of {', '.join(NOISES)}, got {self.noise!r}")
        check_int("steps", self.steps)
        if self.step_size is not None:
            check_positive("step_size", self.step_size)
        check_positive("noise_scale", self.noise_scale, allow_zero=True)
        check_positive("init_scale", self.init_scale, allow_zero=True)


def log_one_minus_p(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """log(1 − softmax(logits)_y) per sample, as −softplus(z_y − logsumexp_{k≠y} z_k).

    Written this way its gradient is σ(·)·∇(z_y − logsumexp_{k≠y} z_k): no difference of two nearly equal sums,
    so its direction stays exact when p_y is tiny (log(1 − p) or a difference of logsumexps lose it to rounding).
    """
    others = logits.scatter(1, y[:, None], float("-inf"))
    margin = logits.gather(1, y[:, None]).squeeze(1) - torch.logsumexp(others, dim=1)
    return -torch.nn.functional.softplus(margin)


class Langevin(GradientAttack):
    name = "langevin"
    config_class = LangevinConfig
    last_noise_to_grad: float = float("nan")

    def _noise(self, shape: torch.Size, generator: torch.Generator, device: torch.device) -> torch.Tensor:
        if self.config.noise == "gaussian":
            return torch.randn(shape, generator=generator, device=device)
        # Laplace(0, 1) as the difference of two unit exponentials (drawn from our generator).
        u = torch.rand((2, *shape), generator=generator, device=device).clamp_min(1e-12)
        return torch.log(u[0]) - torch.log(u[1])

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, norm = self.config, self.config.norm
        step = eps * (2.5 / cfg.steps) if cfg.step_size is None else torch.full_like(eps, cfg.step_size)
        step_b, batch = eps_like(step, x), max(len(x), 1)
        delta = cfg.init_scale * torch.randn(x.shape, generator=generator, device=x.device)
        x_adv = clip_to(x + project(delta, eps, norm), bounds)
        trace, ratios = [], []
        for _ in range(cfg.steps):
            loss, grad = input_gradient(lambda v: log_one_minus_p(model(v), y), x_adv)
            grad = grad / batch  # the gradient of the batch mean, as the authors ascend
            trace.append(loss)
            noise = cfg.noise_scale * self._noise(x.shape, generator, x.device)
            if cfg.noise == "laplacian":
                moved = x_adv + step_b * ascent_direction(grad + noise, norm)
                ratios.append(noise.abs().mean() / grad.abs().mean().clamp_min(1e-30))
            else:
                signed = step_b * ascent_direction(grad, norm)
                moved = x_adv + signed + noise
                ratios.append(noise.abs().mean() / signed.abs().mean().clamp_min(1e-30))
            x_adv = clip_to(x + project(moved - x, eps, norm), bounds)
        # One device sync per call, not one per step (this runs inside every training batch).
        self.last_noise_to_grad = float(torch.stack(ratios).mean()) if cfg.noise_scale > 0 else 0.0
        return x_adv, torch.stack(trace)
