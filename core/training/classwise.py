"""Class-wise defences (Tian et al., KDD 2021, https://arxiv.org/abs/2105.14240; the form is inferred).

* Training: each sample's loss is weighted by its class's weight (normalised by the batch's total weight).
  ``fixed`` weights come from the user; ``adaptive`` weights are recomputed after every epoch from the per-class
  robust accuracy r_c of the previous epoch's training batches on their own adversarial inputs (never from test
  data):  w_c = (1 − s) + s·K·(1 − r_c) / Σ_j (1 − r_j)  (strength s), so the weakest classes weigh most and the
  weights average 1.
* Inference: a logit bias b (added to the weakest class's logit) tuned on held-out data to lift the worst class's
  robust accuracy, refused whenever it would lower mean clean accuracy on that data by more than the user's bound.
  The attack is re-run against the biased model for every candidate: a bias is judged as deployed (white-box).
Both are reported as worst-class vs mean robust accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from core.attacks import PGD
from core.data import Dataset
from core.errors import ConfigError
from core.utils import make_generator

BIAS_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)


def adaptive_weights(per_class_robust: Sequence[float], strength: float) -> list[float]:
    """w_c = (1 − s) + s·K·(1 − r_c)/Σ(1 − r_j); uniform when every class is fully robust."""
    r = np.asarray(per_class_robust, dtype=float)
    gaps = 1.0 - r
    if gaps.sum() <= 0:
        return [1.0] * len(r)
    return [float(w) for w in (1.0 - strength) + strength * len(r) * gaps / gaps.sum()]


def check_class_weights(weights: Sequence[float], num_classes: int) -> None:
    if len(weights) != num_classes:
        raise ConfigError(f"the class weights (--class-weights) are {len(weights)} values but the dataset has "
                          f"{num_classes} classes: give one per class")


def weighted_mean(per_sample: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return per_sample.mean()
    w = weights[y]
    return (per_sample * w).sum() / w.sum()


def sample_weights(y: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """∂ weighted_mean / ∂ per_sample: each sample's share of the batch loss."""
    if weights is None:
        return torch.full(y.shape, 1.0 / len(y), device=y.device)
    w = weights[y].float()
    return w / w.sum()


def weights_for_epoch(config: Any, classes: Sequence[str], last_metrics: dict[str, Any] | None) -> list[float] | None:
    """The class weights of the next epoch (None: unweighted)."""
    if config.class_weighting == "fixed":
        return list(config.class_weights)
    if config.class_weighting == "adaptive" and last_metrics and last_metrics.get("train_robust_per_class"):
        robust = last_metrics["train_robust_per_class"]
        return adaptive_weights([robust.get(str(c), 1.0) for c in classes], config.class_weight_strength)
    return None


class LogitBias(nn.Module):
    """``model`` with a constant added to its logits (a deployable wrapper: attacks see the bias too)."""

    def __init__(self, model: nn.Module, bias: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("bias", bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x) + self.bias


@dataclass(frozen=True)
class BiasResult:
    bias: list[float]
    worst_class: str
    rows: list[dict[str, Any]]  # one per candidate: value, clean acc, mean robust, worst-class robust, allowed
    before: dict[str, Any]
    after: dict[str, Any]


def class_report(model: nn.Module, data: Dataset, eps: float, norm: str, steps: int = 10,
                 seed: int = 0) -> dict[str, Any]:
    """Clean and PGD robust accuracy, overall and per class, with the worst class."""
    device = next(model.parameters()).device
    x, y = data.x.to(device), data.y.to(device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).cpu()
    model.train(was_training)
    result = PGD(norm=norm, steps=steps)(model, x, y, eps, bounds=data.bounds,
                                         generator=make_generator(seed, "logit-bias"))
    robust = (result.logits_adv.argmax(1) == y).cpu()
    per_class = {str(c): float(robust[data.y == i].float().mean()) for i, c in enumerate(data.classes)
                 if bool((data.y == i).any())}
    worst = min(per_class, key=per_class.__getitem__)
    return {"clean_acc": float(clean.float().mean()), "robust_acc": float(robust.float().mean()),
            "per_class_robust_acc": per_class, "worst_class": worst, "worst_robust_acc": per_class[worst]}


def tune_logit_bias(model: nn.Module, tune: Dataset, *, eps: float, norm: str, max_clean_drop: float,
                    steps: int = 10, grid: Sequence[float] = BIAS_GRID, evaluate_on: Dataset | None = None,
                    seed: int = 0) -> BiasResult:
    """Bias the worst class's logit by the grid value that most lifts its robust accuracy on ``tune`` while mean
    clean accuracy on ``tune`` drops by at most ``max_clean_drop`` (0 is always allowed). A bias that leaves the
    worst-class robust accuracy where it was is not chosen, whatever it does to the mean (a tester was offered one
    that raised the tuning half's mean and lowered the held-out one): then the bias is 0. ``before``/``after``
    report ``evaluate_on`` (default: ``tune``) without and with the chosen bias."""
    if not np.isfinite(max_clean_drop) or max_clean_drop < 0:
        raise ConfigError(f"the clean-accuracy bound must be a number ≥ 0, got {max_clean_drop!r}")
    base = class_report(model, tune, eps, norm, steps, seed)
    classes = [str(c) for c in tune.classes]
    worst = classes.index(base["worst_class"])
    device = next(model.parameters()).device
    # Judged by the worst class after the bias (which may no longer be the one biased), then the mean.
    rows, best_value, best_key = [], 0.0, (base["worst_robust_acc"], base["robust_acc"])
    for value in grid:
        bias = torch.zeros(len(classes), device=device)
        bias[worst] = float(value)
        report = class_report(LogitBias(model, bias), tune, eps, norm, steps, seed)
        allowed = base["clean_acc"] - report["clean_acc"] <= max_clean_drop + 1e-12
        rows.append({"bias": float(value), "clean_acc": report["clean_acc"], "robust_acc": report["robust_acc"],
                     "biased_class_robust_acc": report["per_class_robust_acc"][base["worst_class"]],
                     "worst_robust_acc": report["worst_robust_acc"], "allowed": bool(allowed)})
        key = (report["worst_robust_acc"], report["robust_acc"])
        if allowed and report["worst_robust_acc"] > base["worst_robust_acc"] and key > best_key:
            best_value, best_key = float(value), key
    chosen = torch.zeros(len(classes), device=device)
    chosen[worst] = best_value
    target = evaluate_on if evaluate_on is not None else tune
    before = base if evaluate_on is None else class_report(model, target, eps, norm, steps, seed)
    after = class_report(LogitBias(model, chosen), target, eps, norm, steps, seed)
    return BiasResult(bias=chosen.cpu().tolist(), worst_class=base["worst_class"], rows=rows, before=before,
                      after=after)
