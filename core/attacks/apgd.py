"""Auto-PGD (APGD) with cross-entropy or DLR loss, and targeted APGD-DLR against the top classes.

Paper: Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
attacks", ICML 2020, https://arxiv.org/abs/2003.01690 — step schedule as in the authors' code: first step 2ε,
momentum 0.75; checkpoints at 22 % of the iterations, then each 3 % closer (at least 6 %); at a checkpoint the
step is halved and the iterate reset to the best point when at most 75 % of the k steps since the last one raised
the loss (k comparisons, the first with the loss just before the window), or when the step was not halved at the
last checkpoint and the best loss did not improve (never at the first checkpoint: the authors start the "halved
last time" flags set). One departure: at the first checkpoint the loss before the window is the random start's,
where the authors' code compares with a zero-filled row of its loss buffer (for CE, always a rise).
Threat model: ℓ∞ or ℓ2 ball of radius ε, clipped to the data bounds. Random start as the authors do.

Arguments (keyword-only config): ``norm`` ("linf"), ``steps`` (100), ``loss`` ("ce" or "dlr"), ``rho`` (0.75),
``targets`` (0 = untargeted; n > 0 runs targeted DLR against each of the n most likely other classes, keeping the
first success per point). A point leaves the batch as soon as it is fooled, so its trace is NaN from then on (all
NaN when the random start already fools it). Example::

    result = APGD(loss="dlr", targets=3, steps=50)(model, x, y, eps=0.1, generator=gen)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.attacks.base import AttackConfig, Bounds, LossFn, check_int, input_gradient
from core.attacks.gradient import GradientAttack, clip_to, eps_like
from core.attacks.norms import ascent_direction, project, random_in_ball
from core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class APGDConfig(AttackConfig):
    steps: int = 100
    loss: str = "ce"
    rho: float = 0.75
    targets: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm not in ("linf", "l2"):
            raise ConfigError(f"APGD supports norm 'linf' or 'l2', got {self.norm!r}")
        if self.loss not in ("ce", "dlr"):
            raise ConfigError(f"APGD loss must be 'ce' or 'dlr', got {self.loss!r}")
        check_int("steps", self.steps)
        check_int("targets", self.targets, low=0)
        if self.targets and self.loss != "dlr":
            raise ConfigError("targeted APGD uses the DLR loss: set loss='dlr'")
        if not isinstance(self.rho, (int, float)) or not 0 < self.rho <= 1 or not math.isfinite(self.rho):
            raise ConfigError(f"rho must be in (0, 1], got {self.rho!r}")


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of logits ratio (per sample; higher = closer to misclassified). Needs ≥ 3 (targeted: 4) classes."""
    z_sorted, _ = logits.sort(dim=1)
    z_y = logits.gather(1, y[:, None]).squeeze(1)
    if target is None:
        others = logits.clone()
        others.scatter_(1, y[:, None], float("-inf"))
        return -(z_y - others.amax(dim=1)) / (z_sorted[:, -1] - z_sorted[:, -3] + 1e-12)
    z_t = logits.gather(1, target[:, None]).squeeze(1)
    return -(z_y - z_t) / (z_sorted[:, -1] - 0.5 * (z_sorted[:, -3] + z_sorted[:, -4]) + 1e-12)


def checkpoints(steps: int) -> list[int]:
    """Iterations after which the step size is reconsidered: windows of 22 %, then 3 % shorter, at least 6 %
    (integer arithmetic as in the authors' code)."""
    window, shrink, shortest = max(int(0.22 * steps), 1), max(int(0.03 * steps), 1), max(int(0.06 * steps), 1)
    marks, at = [], window
    while at <= steps:
        marks.append(at)
        window = max(window - shrink, shortest)
        at += window
    return marks


def halve_step(window: torch.Tensor, rho: float, halved_last: torch.Tensor, best: torch.Tensor,
               best_last: torch.Tensor) -> torch.Tensor:
    """Per point, whether a checkpoint halves the step (the authors' ``check_oscillation`` and "no improvement"):
    ``window`` holds the loss just before the last k steps and after each of them ((k+1)×N); halve when at most
    ρ·k of those k steps raised the loss, or when the step was not halved at the previous checkpoint
    (``halved_last``) and the best loss has not risen since it (``best`` ≤ ``best_last``)."""
    rises = (window[1:] > window[:-1]).sum(0)
    oscillating = rises <= rho * (len(window) - 1)
    return oscillating | (~halved_last & (best <= best_last))


class APGD(GradientAttack):
    name = "apgd"
    config_class = APGDConfig

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
             target: torch.Tensor | None, generator: torch.Generator, bounds: Bounds) -> tuple[torch.Tensor, ...]:
        """One APGD run. A point leaves the batch as soon as it is fooled (its first fooling iterate is its answer,
        so the other points' iterates are unchanged); its trace is NaN from then on."""
        norm, steps, n = self.config.norm, self.config.steps, len(x)
        last: dict[str, torch.Tensor] = {}

        def loss_at(rows: torch.Tensor) -> LossFn:
            # One forward pass serves the loss, the gradient and the "fooled yet?" check of each step.
            def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
                logits = model(x_adv)
                last["logits"] = logits.detach()
                if self.config.loss == "ce":
                    return F.cross_entropy(logits, y[rows], reduction="none")
                return dlr_loss(logits, y[rows], None if target is None else target[rows])
            return loss_fn

        rows = torch.arange(n, device=x.device)
        step = 2.0 * eps.clone()
        x_adv = clip_to(x + random_in_ball(x.shape, eps, norm, generator, x.device), bounds)
        loss, grad = input_gradient(loss_at(rows), x_adv)
        loss_start = loss.clone()
        fooled = last["logits"].argmax(1) != y
        x_best, loss_best, grad_best = x_adv.clone(), loss.clone(), grad.clone()
        x_fooled, x_prev = x_adv.clone(), x_adv.clone()
        trace = torch.full((steps, n), float("nan"), dtype=loss.dtype, device=x.device)
        marks, last_mark = checkpoints(steps), 0
        best_at_mark, halved_at_mark = loss_best.clone(), torch.ones_like(fooled)
        for i in range(steps):
            rows = torch.nonzero(~fooled).flatten()
            if len(rows) == 0:
                break
            momentum = 0.75 if i > 0 else 1.0
            xa, ea, now_adv = x[rows], eps[rows], x_adv[rows]
            z = clip_to(xa + project(now_adv + eps_like(step[rows], xa) * ascent_direction(grad[rows], norm) - xa,
                                     ea, norm), bounds)
            moved = now_adv + momentum * (z - now_adv) + (1 - momentum) * (now_adv - x_prev[rows])
            new_adv = clip_to(xa + project(moved - xa, ea, norm), bounds)
            x_prev[rows], x_adv[rows] = now_adv, new_adv
            loss_a, grad_a = input_gradient(loss_at(rows), new_adv)
            grad[rows], trace[i, rows] = grad_a, loss_a
            now_fooled = last["logits"].argmax(1) != y[rows]
            x_fooled[rows[now_fooled]] = new_adv[now_fooled]
            fooled[rows[now_fooled]] = True
            better = loss_a > loss_best[rows]
            up = rows[better]
            x_best[up], grad_best[up], loss_best[up] = new_adv[better], grad_a[better], loss_a[better]
            if i + 1 in marks:
                # Include the loss just before the window: k comparisons for k steps, as the authors count.
                window = trace[last_mark - 1:i + 1] if last_mark else torch.cat([loss_start[None], trace[:i + 1]])
                halve = halve_step(window, self.config.rho, halved_at_mark, loss_best, best_at_mark) & ~fooled
                step[halve] /= 2.0
                x_adv[halve], grad[halve] = x_best[halve], grad_best[halve]
                halved_at_mark, best_at_mark, last_mark = halve, loss_best.clone(), i + 1
        return torch.where(fooled.view(-1, *([1] * (x.dim() - 1))), x_fooled, x_best), fooled, trace

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.config.targets:
            x_adv, _, trace = self._run(model, x, y, eps, None, generator, bounds)
            return x_adv, trace
        with torch.no_grad():
            order = model(x).argsort(dim=1, descending=True)
        if order.shape[1] < 4:
            raise ConfigError("targeted APGD-DLR needs at least 4 classes")
        x_adv, done, trace = x.clone(), torch.zeros(len(x), dtype=torch.bool, device=x.device), None
        for rank in range(1, min(self.config.targets, order.shape[1] - 1) + 1):
            todo = torch.nonzero(~done).flatten()
            if len(todo) == 0:
                break
            cand, fooled, trace_t = self._run(model, x[todo], y[todo], eps[todo], order[todo, rank], generator,
                                              bounds)
            keep = fooled | (rank == 1)
            x_adv[todo[keep]] = cand[keep]
            done[todo[fooled]] = True
            trace = trace_t if trace is None else trace
        return x_adv, trace if trace is not None else torch.empty(0)
