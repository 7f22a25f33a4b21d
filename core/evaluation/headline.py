"""A model's headline figures: the clean and robust accuracy the hub, the cards and the CLI show for it.

One protocol for every model, shipped, trained or imported, so two rows of the hub can be compared: PGD-20 (random
start, seed 0) at the model's own ε and norm on the first HEADLINE_N points of the test split (all of them
for the built-in datasets). Before, a shipped model showed PGD-20 on the whole test split, a trained one its last
epoch's PGD-10 check on a seeded held-out subset, and an import of the shipped weights the latter again: the very
same weights read 50.7 % in one row and 51.2 % in the next.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from core.data import Dataset
from core.evaluation.protocol import HEADLINE_N, HEADLINE_STEPS

__all__ = ["HEADLINE_N", "HEADLINE_STEPS", "headline_metrics", "headline_points"]


def headline_points(test: Dataset) -> Dataset:
    return test.subset(n=min(len(test), HEADLINE_N))


def headline_metrics(model: nn.Module, test: Dataset, norm: str, eps: float | None,
                     device: torch.device | None = None) -> dict[str, Any]:
    """Clean accuracy, and with an ε > 0 the PGD-20 robust accuracy overall and per class, on the headline points;
    ``n``, ``attack``, ``eps`` and ``norm`` say how they were measured."""
    from core.attacks import PGD
    from core.evaluation.table import per_sample_table, predict, summarize

    points = headline_points(test)
    if not eps:
        device = device or next(model.parameters()).device
        clean = float((predict(model, points.x, device) == points.y).float().mean()) if len(points) else 0.0
        return {"clean_acc": clean, "n": len(points)}
    table = per_sample_table(model, points, PGD(norm=norm, steps=HEADLINE_STEPS), [eps], seed=0, device=device)
    summary = summarize(table, eps, points.classes)
    return {"clean_acc": summary["clean_acc"], "robust_acc": summary["robust_acc"], "n": summary["n"],
            "attack": f"pgd-{HEADLINE_STEPS}", "eps": float(eps), "norm": norm,
            "per_class_robust_acc": {k: v["robust_acc"] for k, v in summary["per_class"].items()}}
