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

DALE's training step needs the clean logits f(x) as well (for ν·CE(f(x), y)). ``perturb_with_clean`` lets that
clean forward pass serve as the first Langevin step's too: the first gradient is then taken at x instead of at
x + δ₀ (δ₀ is still added, and every random draw is the one ``perturb`` makes). With ``init_scale`` = 0 the two
are the same; otherwise they differ by where a ±0.001-scale start point is linearised.

It also serves the backward pass. Per sample, ∂ log(1 − p_y)/∂z = p_y·d and ∂CE/∂z = (1 − p_y)·d with the same
d = q − e_y (q: the softmax of the logits other than y's). So one backward pass from the logits, with the
upstream gradient a·(1 − p_y)·d, puts ∇θ Σ aᵢ·CE(f(xᵢ), yᵢ) into the parameters' ``.grad`` and gives every
sample's input gradient up to the known factor aᵢ(1 − p_y)/p_y, which is divided out (exact in exact
arithmetic: each sample's input gradient depends on its own upstream gradient only, as in every model without
batch statistics). Where that factor underflows (a sample with 1 − p_y < 1e-30, fp16) two passes run instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from core.attacks.base import AttackConfig, Bounds, check_int, check_positive
from core.attacks.gradient import GradientAttack, clip_to, eps_like
from core.attacks.norms import ascent_direction, project
from core.attacks.shard import draw, global_batch_size
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


def margin_and_direction(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(m, d) per sample, from detached logits in fp32: m = z_y − logsumexp_{k≠y} z_k and d = q − e_y, where q is the
    softmax of the logits other than y's. ∂ log(1 − p_y)/∂z = σ(m)·d and ∂CE/∂z = σ(−m)·d, both exact in float."""
    z = logits.detach().float()
    others = z.scatter(1, y[:, None], float("-inf"))
    margin = z.gather(1, y[:, None]).squeeze(1) - torch.logsumexp(others, dim=1)
    return margin, torch.softmax(others, dim=1).scatter_(1, y[:, None], -1.0)


def _backward_from_logits(logits: torch.Tensor, factor: torch.Tensor, direction: torch.Tensor,
                          leaves: Sequence[torch.Tensor]) -> None:
    """One backward pass from the logits with upstream gradient factorᵢ·dᵢ (no loss graph to differentiate)."""
    torch.autograd.backward(logits, (factor[:, None] * direction).to(logits.dtype), inputs=list(leaves))


class Langevin(GradientAttack):
    name = "langevin"
    config_class = LangevinConfig
    last_noise_to_grad: float = float("nan")
    # (loss, gradient) of the first step when perturb_with_clean already computed them at x.
    _first_step: tuple[torch.Tensor, torch.Tensor] | None = None

    def perturb_with_clean(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float | torch.Tensor, *,
        clean_forward: Callable[[torch.Tensor], torch.Tensor], clean_weight: torch.Tensor | None = None,
        params: Sequence[torch.Tensor] = (), bounds: Bounds = (0.0, 1.0), generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_adv, clean logits, detached): ``perturb`` whose first gradient comes from ``clean_forward(x)``.

        ``clean_forward`` is the training model's forward pass. With ``clean_weight`` (N coefficients aᵢ ≥ 0),
        ∇θ Σ aᵢ·CE(f(xᵢ), yᵢ) is accumulated into the ``.grad`` of ``params`` by the same backward pass that gives
        the first step's input gradient (see the module docstring), so DALE's clean term costs no pass of its own.
        Only for models whose forward does not depend on train/eval mode (no BatchNorm, no dropout): the attack
        proper runs in eval mode.
        """
        x_in = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = clean_forward(x_in)
        margin, direction = margin_and_direction(logits, y)
        p_y = torch.sigmoid(margin)
        weight = None if clean_weight is None or not bool((clean_weight > 0).any()) else clean_weight.float()
        upstream, leaves = p_y, [x_in]  # without a clean term: the attack's own gradient, σ(m)·d
        if weight is not None:
            scale = weight * torch.sigmoid(-margin)  # aᵢ(1 − p_y): the clean term's upstream factor
            if logits.dtype != torch.float16 and bool((scale >= 1e-30).all()):
                upstream, leaves = scale, [x_in, *params]
            else:  # two passes: the clean term's parameter gradient first, then the input gradient alone
                clean = (clean_weight * torch.nn.functional.cross_entropy(logits.float(), y, reduction="none")).sum()
                torch.autograd.backward(clean, inputs=list(params), retain_graph=True)
        _backward_from_logits(logits, upstream, direction, leaves)
        assert x_in.grad is not None
        grad = x_in.grad if upstream is p_y else x_in.grad * (p_y / upstream).view(-1, *[1] * (x.dim() - 1))
        self._first_step = (-torch.nn.functional.softplus(margin), grad)
        try:
            x_adv, _ = self.perturb(model, x, y, eps, bounds=bounds, generator=generator)
        finally:
            self._first_step = None
        return x_adv, logits.detach()

    @staticmethod
    def _gradient(model: nn.Module, x_adv: torch.Tensor, y: torch.Tensor,
                  scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(log(1 − p_y) per sample, ``scale`` × its input gradient): autograd through ``log_one_minus_p`` with the
        gradient at the logits written out (a dozen small autograd nodes fewer per step)."""
        x_in = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_in)
        margin, direction = margin_and_direction(logits, y)
        _backward_from_logits(logits, torch.sigmoid(margin) * scale, direction, [x_in])
        assert x_in.grad is not None
        return -torch.nn.functional.softplus(margin), x_in.grad

    def _noise(self, steps: int, shape: torch.Size, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
        """Every step's noise at once (steps × shape), c·Laplace(0, 1) or c·N(0, I): one draw, not one per step."""
        cfg = self.config
        if cfg.noise == "gaussian":
            return cfg.noise_scale * draw(lambda s: torch.randn(s, generator=generator, device=device),
                                          (steps, *shape), batch_dim=1)
        # Laplace(0, 1) as the difference of two unit exponentials (drawn from our generator).
        logs = draw(lambda s: torch.rand(s, generator=generator, device=device), (steps, 2, *shape), batch_dim=2)
        logs = logs.clamp_min_(1e-12).log_()
        return torch.sub(logs[:, 0], logs[:, 1]).mul_(cfg.noise_scale)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, norm = self.config, self.config.norm
        step = eps * (2.5 / cfg.steps) if cfg.step_size is None else torch.full_like(eps, cfg.step_size)
        # The batch mean's gradient: under torchrun the global batch's mean, so each rank takes the same steps.
        step_b, batch = eps_like(step, x), max(global_batch_size(len(x)), 1)
        delta = cfg.init_scale * draw(lambda s: torch.randn(s, generator=generator, device=x.device), x.shape)
        x_adv = clip_to(x + project(delta, eps, norm), bounds)
        noises = self._noise(cfg.steps, x.shape, generator, x.device) if cfg.noise_scale > 0 else None
        trace, step_l1 = [], []
        for k in range(cfg.steps):
            if k == 0 and self._first_step is not None:
                loss, grad = self._first_step
                grad = grad / batch
            else:  # the gradient of the batch mean, as the authors ascend
                loss, grad = self._gradient(model, x_adv, y, 1.0 / batch)
            trace.append(loss)
            if cfg.noise == "laplacian":
                moved = x_adv + step_b * ascent_direction(grad if noises is None else grad + noises[k], norm)
                term = grad
            else:
                term = step_b * ascent_direction(grad, norm)
                moved = x_adv + term if noises is None else x_adv + term + noises[k]
            step_l1.append(torch.linalg.vector_norm(term, 1))  # one op now, the ratio once at the end
            x_adv = clip_to(x + project(moved - x, eps, norm), bounds)
        if noises is None:
            self.last_noise_to_grad = 0.0
        else:  # one device sync per call, not one per step (this runs inside every training batch)
            ratios = noises.abs().flatten(1).sum(1) / torch.stack(step_l1).clamp_min(1e-30 * x.numel())
            self.last_noise_to_grad = float(ratios.mean())
        return x_adv, torch.stack(trace)
