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

For geometry (convergence flags, iteration counts, subspace-constrained DeepFool as in Ortiz-Jimenez et al.,
"Hold me tight! Influence of discriminative features on deep network boundaries", NeurIPS 2020, METHODS.md §1e)
use :func:`deepfool_run`: the same step, with every w_k projected onto a subspace S (S·Sᵀ·w_k) when a
``projector`` is given, and a per-sample ``converged`` flag instead of success against a label::

    run = deepfool_run(model, x, projector=SubspaceProjector(basis), steps=100, bounds=None)
    margins = torch.where(run.converged, run.r.flatten(1).norm(dim=1), torch.inf)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
from torch import nn

from core.attacks.base import Attack, AttackConfig, Bounds, check_int, check_positive, eval_mode
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
        return deepfool_step(model, x_adv, classes, self.config.norm)

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


class Projector(Protocol):
    """Maps gradient differences ``w`` (n×K×d, flattened inputs) of the batch rows ``rows`` onto their subspaces."""

    def __call__(self, w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor: ...


class SubspaceProjector:
    """Orthogonal projection S·Sᵀ·w onto the span of the orthonormal columns of ``basis`` (d×m), for every row."""

    def __init__(self, basis: torch.Tensor) -> None:
        if basis.dim() != 2 or basis.shape[1] > basis.shape[0]:
            raise ConfigError(f"a subspace basis must be d×m with m ≤ d, got shape {tuple(basis.shape)}")
        self.basis = basis

    def __call__(self, w: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        basis = self.basis.to(dtype=w.dtype, device=w.device)
        return (w @ basis) @ basis.T


def deepfool_step(model: nn.Module, x_adv: torch.Tensor, classes: torch.Tensor, norm: str,
                  projector: Projector | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
    """One DeepFool step per row of ``x_adv``: ``classes`` (n×K) holds the original prediction first, then the
    candidates. With a ``projector`` every w_k is first projected onto the row's subspace (ℓ2 only)."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(x_adv)
        picked = logits.gather(1, classes)
        grads = [torch.autograd.grad(picked[:, k].sum(), x_adv, retain_graph=k + 1 < classes.shape[1])[0]
                 for k in range(classes.shape[1])]
    grads_t = torch.stack(grads, dim=1).flatten(2)
    w = grads_t[:, 1:] - grads_t[:, :1]
    if projector is not None:
        w = projector(w, rows if rows is not None else torch.arange(len(w), device=w.device))
    f = (picked[:, 1:] - picked[:, :1]).detach()
    dual = w.abs().sum(dim=2) if norm == "linf" else w.norm(dim=2)
    ratio = f.abs() / (dual + _TINY)
    best = ratio.argmin(dim=1)
    w_l = w[torch.arange(len(w)), best]
    f_l = f.abs()[torch.arange(len(f)), best].unsqueeze(1)
    if norm == "linf":
        r = (f_l + 1e-4) * w_l.sign() / (w_l.abs().sum(dim=1, keepdim=True) + _TINY)
    else:
        r = (f_l + 1e-4) * w_l / (w_l.pow(2).sum(dim=1, keepdim=True) + _TINY)
    return r.reshape(x_adv.shape)


@dataclass
class DeepFoolRun:
    """What :func:`deepfool_run` found, per sample (detached, on the input's device).

    ``r`` = x_adv − x (the overshoot included, after clipping when bounds were given); ``converged``: the prediction
    left the clean one within the iterations (otherwise ``r`` is the last iterate and is no margin);
    ``iterations``: steps taken; ``pred`` / ``pred_adv``: clean and final predictions.
    """

    x_adv: torch.Tensor
    r: torch.Tensor
    converged: torch.Tensor
    iterations: torch.Tensor
    pred: torch.Tensor
    pred_adv: torch.Tensor


def deepfool_run(
    model: nn.Module, x: torch.Tensor, *, norm: str = "l2", steps: int = 50, overshoot: float = 0.02,
    candidates: int = 10, bounds: Bounds = (0.0, 1.0), projector: Projector | None = None,
    on_iteration: Callable[[int, int], None] | None = None,
) -> DeepFoolRun:
    """Batched DeepFool with per-sample convergence, optionally constrained to subspaces (see the module doc).

    ``bounds=None`` leaves the input unclipped, which a subspace-constrained run needs (clipping would leave the
    subspace). ``on_iteration(i, active)`` is called after iteration ``i`` with the number of points still unflipped;
    an exception it raises (a cancel) ends the run. Rows whose step stops being finite (an input-invariant
    subspace makes ‖S·Sᵀ·w‖ vanish) are stopped and reported as not converged.
    """
    config = DeepFoolConfig(norm=norm, steps=steps, overshoot=overshoot, candidates=candidates)
    if projector is not None and norm != "l2":
        raise ConfigError("subspace-constrained DeepFool is defined for the ℓ2 norm only")
    scale = 1 + config.overshoot
    with eval_mode(model):
        x = x.detach()
        with torch.no_grad():
            logits = model(x)
        k = min(config.candidates, logits.shape[1])
        classes = logits.argsort(dim=1, descending=True)[:, :k]
        pred = classes[:, 0]
        r_total = torch.zeros_like(x)
        active = torch.ones(len(x), dtype=torch.bool, device=x.device)
        converged = torch.zeros_like(active)
        iterations = torch.zeros(len(x), dtype=torch.int64, device=x.device)
        for i in range(config.steps):
            idx = torch.nonzero(active).flatten()
            if len(idx) == 0:
                break
            x_cur = clip_to(x[idx] + scale * r_total[idx], bounds)
            step = deepfool_step(model, x_cur, classes[idx], config.norm, projector, idx)
            finite = torch.isfinite(step.flatten(1)).all(dim=1)
            r_total[idx[finite]] += step[finite]
            iterations[idx] += 1
            x_new = clip_to(x[idx] + scale * r_total[idx], bounds)
            with torch.no_grad():
                flipped = (model(x_new).argmax(1) != pred[idx]) & finite
            converged[idx[flipped]] = True
            active[idx[flipped | ~finite]] = False
            if on_iteration is not None:
                on_iteration(i + 1, int(active.sum()))
        x_adv = clip_to(x + scale * r_total, bounds)
        with torch.no_grad():
            pred_adv = model(x_adv).argmax(1)
    return DeepFoolRun(x_adv=x_adv, r=x_adv - x, converged=converged & (pred_adv != pred), iterations=iterations,
                       pred=pred, pred_adv=pred_adv)
