"""Robust vs non-robust units of a layer, and ablation.

For each unit (a feature of a linear layer, or a channel of a convolution, averaged over space):
* usefulness — η², the share of the unit's clean-activation variance explained by the class (between-class
  variance ÷ total variance, in [0, 1]): how well its mean separates the classes;
* robustness — 1 / (1 + mean |a(x') − a(x)| / std a(x)): 1 when attack leaves the unit alone, → 0 when it moves
  the unit by many clean standard deviations.
Quadrants split both at their medians. ``ablated`` switches units off (output set to 0) by a forward hook that is
removed afterwards, whatever happens. Example::

    scores = unit_scores(model, "penultimate", x, y, x_adv)
    with ablated(model, "penultimate", scores.nonrobust_useful(5)):
        ...  # clean and robust accuracy without those units
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
from torch import nn

from core.latent.hooks import extract_features, hook_point


CONSTANT = "constant on clean inputs"


@dataclass(frozen=True)
class UnitScores:
    usefulness: np.ndarray   # U
    robustness: np.ndarray   # U
    movement: np.ndarray     # U: mean |Δa| / std a
    clean_mean: np.ndarray   # classes × U: class-conditional clean means
    # U: the unit has one value on every clean input of the sample (a dead ReLU, mostly). Its η² is 0 and its
    # robustness says only whether the attack wakes it (0) or not (1), so it gets a category of its own.
    constant: np.ndarray | None = None

    def quadrant(self, useful_at: float | None = None, robust_at: float | None = None) -> np.ndarray:
        """Per unit: 'useful & robust', 'useful & non-robust', 'not useful & robust', 'not useful & non-robust',
        or 'constant on clean inputs'; thresholds default to the medians (half the units on each side)."""
        useful = self.usefulness >= (np.median(self.usefulness) if useful_at is None else useful_at)
        robust = self.robustness >= (np.median(self.robustness) if robust_at is None else robust_at)
        names = np.array(["not useful & non-robust", "not useful & robust", "useful & non-robust",
                          "useful & robust"])
        labels = names[useful.astype(int) * 2 + robust.astype(int)]
        return labels if self.constant is None else np.where(self.constant, CONSTANT, labels)

    def nonrobust_useful(self, k: int, useful_at: float | None = None) -> list[int]:
        """The k useful units (usefulness ≥ ``useful_at``, default the median; never a constant one) that move
        most under attack."""
        threshold = np.median(self.usefulness) if useful_at is None else useful_at
        live = np.ones(len(self.usefulness), bool) if self.constant is None else ~self.constant
        useful = np.nonzero((self.usefulness >= threshold) & live)[0]
        return [int(i) for i in useful[np.argsort(-self.movement[useful])][:k]]


def unit_activations(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor:
    """N×U activations (convolution channels averaged over space) at ``layer``, on the CPU."""
    return extract_features(model, x, layer, spatial_mean=True)


def unit_maps(model: nn.Module, layer: str, x: torch.Tensor) -> torch.Tensor | None:
    """N×U×H×W spatial activations of a convolutional ``layer`` on the CPU, or None where the layer has no spatial
    extent (a linear layer, ``penultimate``)."""
    maps = extract_features(model, x, layer, keep_shape=True)
    return maps if maps.dim() == 4 else None


def unit_scores(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor,
                num_classes: int | None = None) -> UnitScores:
    clean, adv = unit_activations(model, layer, x).double(), unit_activations(model, layer, x_adv).double()
    y = y.cpu()
    classes = int(num_classes or int(y.max()) + 1)
    means = torch.stack([clean[y == c].mean(0) if bool((y == c).any()) else clean.mean(0) for c in range(classes)])
    counts = torch.bincount(y, minlength=classes).double()
    total = clean.var(0, unbiased=False)
    between = (counts[:, None] * (means - clean.mean(0)) ** 2).sum(0) / counts.sum()
    usefulness = torch.where(total > 1e-12, between / total.clamp_min(1e-12), torch.zeros_like(total))
    movement = (adv - clean).abs().mean(0) / clean.std(0, unbiased=False).clamp_min(1e-6)
    return UnitScores(usefulness=usefulness.numpy(), robustness=(1 / (1 + movement)).numpy(),
                      movement=movement.numpy(), clean_mean=means.numpy(), constant=(total <= 1e-12).numpy())


@contextmanager
def ablated(model: nn.Module, layer: str, units: Sequence[int]) -> Iterator[nn.Module]:
    """Within the block, ``units`` of ``layer`` output 0 (for ``penultimate``: the head's input features)."""
    module, pre = hook_point(model, layer)
    index = torch.as_tensor(list(units), dtype=torch.long)

    def zero(value: torch.Tensor) -> torch.Tensor:
        value = value.clone()
        value[:, index.to(value.device)] = 0
        return value

    handle = (module.register_forward_pre_hook(lambda _m, args: (zero(args[0]), *args[1:])) if pre
              else module.register_forward_hook(lambda _m, _a, out: zero(out)))
    try:
        yield model
    finally:
        handle.remove()


def ablation_study(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, units: Sequence[int], *,
                   eps: float, norm: str = "linf", steps: int = 10, seed: int = 0,
                   bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict[str, float]:
    """Clean and PGD robust accuracy with and without ``units`` switched off (the attack sees the ablated model)."""
    from core.attacks import PGD
    from core.utils import make_generator

    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)

    def measure() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            clean = (model(x).argmax(1) == y).float().mean()
        result = PGD(norm=norm, steps=steps)(model, x, y, eps, bounds=bounds,
                                             generator=make_generator(seed, "ablation"))
        return float(clean), float(result.robust.float().mean())

    was_training = model.training
    try:
        clean, robust = measure()
        with ablated(model, layer, units):
            clean_off, robust_off = measure()
    finally:
        model.train(was_training)
    return {"clean_acc": clean, "robust_acc": robust, "clean_acc_ablated": clean_off,
            "robust_acc_ablated": robust_off, "units": len(units)}
