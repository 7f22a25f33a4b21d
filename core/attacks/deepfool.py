"""DeepFool: the minimal perturbation that crosses the linearised decision boundary, batched.

Paper: Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to fool deep neural networks",
CVPR 2016, https://arxiv.org/abs/1511.04599 — algorithm as in the authors' code (METHODS.md §1a): over the top-K
classes, w_k = ∇f_k − ∇f_ŷ and f'_k = f_k − f_ŷ; l = argmin_k |f'_k| / ‖w_k‖ (dual norm); step
r = (|f'_l| + 1e-4) · w_l / ‖w_l‖₂² (ℓ2) or (|f'_l| + 1e-4) · sign(w_l) / ‖w_l‖₁ (ℓ∞); iterate on points that have not
flipped; final perturbation (1 + overshoot) · Σ r.
Threat model: minimal-norm — ε only caps the result (use a large ε for the unconstrained distance); clipped to
the data bounds. ``norms`` of the result are the per-sample margins.

Arguments (keyword-only config): ``norm`` ("l2" or "linf"), ``steps`` (50), ``overshoot`` (0.02),
``candidates`` (10, the top-K classes considered). Shapes: x N×…, y N. Example::

    result = DeepFool(norm="l2")(model, x, y, eps=10.0)   # result.norms["l2"] = DeepFool margins
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attacks.base import Attack, AttackConfig, Bounds, check_int, check_positive
from core.attacks.gradient import clip_to
from core.errors import ConfigError

_TINY = 1e-12


@dataclass(frozen=True, kw_only=True)
class DeepFoolConfig(AttackConfig):
    norm: str = "l2"
    steps: int = 50
    overshoot: float = 0.02
    candidates: int = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in ("l2", "linf"):
            raise ConfigError(f"DeepFool supports norm 'l2' or 'linf', got {self.norm!r}")
        check_int("steps", self.steps)
        check_int("candidates", self.candidates)
        check_positive("overshoot", self.overshoot, allow_zero=True)


class DeepFool(Attack):
    name = "deepfool"
    config_class = DeepFoolConfig

    def _step(self, model: nn.Module, x_adv: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """One DeepFool step for every row of ``x_adv`` toward its nearest linearised boundary."""
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = model(x_adv)
            picked = logits.gather(1, classes)
            grads = [torch.autograd.grad(picked[:, k].sum(), x_adv, retain_graph=k + 1 < classes.shape[1])[0]
                     for k in range(classes.shape[1])]
        grads_t = torch.stack(grads, dim=1).flatten(2)
        w = grads_t[:, 1:] - grads_t[:, :1]
        f = (picked[:, 1:] - picked[:, :1]).detach()
        dual = w.abs().sum(dim=2) if self.config.norm == "linf" else w.norm(dim=2)
        ratio = f.abs() / (dual + _TINY)
        best = ratio.argmin(dim=1)
        w_l = w[torch.arange(len(w)), best]
        f_l = f.abs()[torch.arange(len(f)), best].unsqueeze(1)
        if self.config.norm == "linf":
            r = (f_l + 1e-4) * w_l.sign() / (w_l.abs().sum(dim=1, keepdim=True) + _TINY)
        else:
            r = (f_l + 1e-4) * w_l / (w_l.pow(2).sum(dim=1, keepdim=True) + _TINY)
        return r.reshape(x_adv.shape)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = model(x)
        k = min(self.config.candidates, logits.shape[1])
        # The original prediction first, then the other top classes (as the authors do).
        classes = logits.argsort(dim=1, descending=True)[:, :k]
        r_total = torch.zeros_like(x)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        pred0 = classes[:, 0]
        trace = []  # per iteration: which points are still unflipped
        for _ in range(self.config.steps):
            idx = torch.nonzero(active).flatten()
            if len(idx) == 0:
                break
            x_cur = clip_to(x[idx] + (1 + self.config.overshoot) * r_total[idx], bounds)
            r_total[idx] += self._step(model, x_cur, classes[idx])
            x_new = clip_to(x[idx] + (1 + self.config.overshoot) * r_total[idx], bounds)
            with torch.no_grad():
                flipped = model(x_new).argmax(1) != pred0[idx]
            active[idx[flipped]] = False
            trace.append(active.float())
        x_adv = clip_to(x + (1 + self.config.overshoot) * r_total, bounds)
        return x_adv, torch.stack(trace) if trace else torch.empty(0)
