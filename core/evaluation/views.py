"""Views of per-sample tables: curves, per-class accuracy, flip matrices, disparity, gains, weight norms.

Every function here reads tables produced by ``per_sample_table`` / ``evaluate`` and computes nothing adversarial
itself, so each chart of the Robustness page is a cheap projection of something already persisted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.evaluation.table import eps_column


def robust_flags(table: pd.DataFrame, eps: float) -> np.ndarray:
    """Per point: still correctly classified at ``eps`` (from the minimal norm when the table has one)."""
    if "min_norm" in table:
        return ((table["pred_clean"] == table["y"]) & (table["min_norm"] > eps)).to_numpy()
    col = f"pred_adv@{eps_column(eps)}"
    if col not in table:
        raise KeyError(f"ε = {eps:g} is not in this table's grid")
    return (table[col] == table["y"]).to_numpy()


def table_eps(table: pd.DataFrame) -> list[float]:
    """The ε values a fixed-ε table was computed at."""
    return sorted(float(c.split("@", 1)[1]) for c in table.columns if c.startswith("pred_adv@"))


def robust_grid(table: pd.DataFrame, eps_grid: Sequence[float]) -> np.ndarray:
    """Points × ε booleans: robust at each ε of the grid. One comparison for a minimal-norm table (the Robustness
    page asks for ~50 ε on every slider move), one column per ε otherwise."""
    grid = np.asarray(eps_grid, dtype=float)
    if "min_norm" in table:
        correct = (table["pred_clean"] == table["y"]).to_numpy()
        return correct[:, None] & (table["min_norm"].to_numpy()[:, None] > grid[None, :])
    return np.stack([robust_flags(table, e) for e in grid], axis=1) if len(grid) else np.zeros((len(table), 0), bool)


def robust_curve(table: pd.DataFrame, eps_grid: Sequence[float]) -> pd.DataFrame:
    """Robust accuracy at every ε of the grid (a minimal-norm table answers any ε)."""
    return pd.DataFrame({"eps": np.asarray(eps_grid, dtype=float),
                         "robust_acc": robust_grid(table, eps_grid).mean(axis=0).astype(float)})


def per_class_accuracy(table: pd.DataFrame, eps: float, classes: Sequence[str]) -> pd.DataFrame:
    """Clean and robust accuracy per class at ``eps`` (one row per class, in class order)."""
    clean = (table["pred_clean"] == table["y"]).to_numpy()
    robust = robust_flags(table, eps)
    y = table["y"].to_numpy()
    rows = []
    for c, name in enumerate(classes):
        mask = y == c
        rows.append({"class": str(name), "n": int(mask.sum()),
                     "clean_acc": float(clean[mask].mean()) if mask.any() else float("nan"),
                     "robust_acc": float(robust[mask].mean()) if mask.any() else float("nan")})
    return pd.DataFrame(rows)


def class_eps_matrix(table: pd.DataFrame, eps_grid: Sequence[float], classes: Sequence[str]) -> pd.DataFrame:
    """Robust accuracy per class (rows) and ε (columns); NaN for a class with no points."""
    robust = robust_grid(table, eps_grid)
    y = table["y"].to_numpy()
    onehot = y[None, :] == np.arange(len(classes))[:, None]
    counts = onehot.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (onehot.astype(float) @ robust.astype(float)) / counts
    return pd.DataFrame(acc, index=[str(c) for c in classes], columns=[f"{e:g}" for e in eps_grid])


def flip_matrix(table: pd.DataFrame, eps: float, num_classes: int) -> np.ndarray:
    """Counts of (true class → prediction under attack at ``eps``) over the points the attack flipped: classified
    correctly on the clean input and wrongly after the attack.

    Points already wrong on clean data are no attack's doing and are left out (``clean_errors`` counts them), as are
    the points that stay correct, so the diagonal is empty.
    """
    col = f"pred_adv@{eps_column(eps)}"
    if col not in table:
        raise KeyError(f"ε = {eps:g} is not in this table's grid")
    y = table["y"].to_numpy()
    pred = table[col].to_numpy()
    flipped = (table["pred_clean"].to_numpy() == y) & (pred != y)
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (y[flipped], pred[flipped]), 1)
    return counts


def clean_errors(table: pd.DataFrame) -> int:
    """How many points are misclassified on the clean input (the ones ``flip_matrix`` leaves out)."""
    return int((table["pred_clean"] != table["y"]).sum())


def disparity(per_class: pd.DataFrame) -> dict[str, float | str]:
    """How unequal robustness is across classes: spread, worst class against the mean, best and worst names."""
    robust = per_class["robust_acc"].to_numpy(dtype=float)
    ok = np.isfinite(robust)
    if not ok.any():
        return {"std": float("nan"), "mean": float("nan"), "worst_gap": float("nan"), "worst": "", "best": "",
                "worst_all": []}
    valid = per_class[ok]
    worst, best = valid.loc[valid["robust_acc"].idxmin()], valid.loc[valid["robust_acc"].idxmax()]
    mean = float(robust[ok].mean())
    return {"std": float(robust[ok].std()), "mean": mean, "worst_gap": float(worst["robust_acc"] - mean),
            "worst": str(worst["class"]), "best": str(best["class"]),
            "worst_acc": float(worst["robust_acc"]), "best_acc": float(best["robust_acc"]),
            # Every class at the lowest figure: "least robust class 2 · 0.0 %" hid that 5, 8 and 9 were at 0 too.
            "worst_all": [str(c) for c in valid.loc[valid["robust_acc"] == worst["robust_acc"], "class"]]}


def class_gain(base: pd.DataFrame, strong: pd.DataFrame | Sequence[pd.DataFrame], eps: float,
               classes: Sequence[str]) -> pd.DataFrame:
    """Per class, the robust accuracy a stronger attack removes beyond a baseline (PGD-10): the share of the class's
    points that the baseline leaves robust and the stronger attack breaks.

    A stronger attack is reported as the per-point worst case together with the weaker one (Croce & Hein 2020): a
    point the baseline broke stays broken, so ``strong`` (one table, or several taken point by point) is combined
    with ``base`` and the gain is never negative. The tables must hold the same points in the same order.
    """
    tables = [strong] if isinstance(strong, pd.DataFrame) else list(strong)
    y = base["y"].to_numpy()
    key = "index" if "index" in base else "y"  # the per-sample tables' point ids; labels alone as a fallback
    for table in tables:
        if key not in table or not np.array_equal(table[key].to_numpy(), base[key].to_numpy()):
            raise ValueError("the tables do not hold the same points in the same order")
    base_robust, worst = robust_flags(base, eps), worst_case([base, *tables], eps)
    rows = []
    for c, name in enumerate(classes):
        mask = y == c
        a = float(base_robust[mask].mean()) if mask.any() else float("nan")
        b = float(worst[mask].mean()) if mask.any() else float("nan")
        rows.append({"class": str(name), "base": a, "strong": b, "gain": a - b})
    return pd.DataFrame(rows)


def worst_setting_gain(base: pd.DataFrame, settings: Sequence[pd.DataFrame], eps: float,
                       classes: Sequence[str]) -> pd.DataFrame:
    """Per class, what the strongest single setting of an attack (e.g. the temperature T of Temperature-PGD) removes
    from the baseline's robust accuracy, the baseline counted as one of the settings (T = 1 is PGD-10).

    Its ``strong`` column is the lowest per-class robust accuracy over the baseline and the settings, so the gain is
    never negative and equals how far the lowest point of the class's line in a per-setting sweep lies below the
    baseline's point (0 where the baseline is lowest).
    """
    per = [per_class_accuracy(t, eps, classes)["robust_acc"].to_numpy(float) for t in (base, *settings)]
    lowest = np.min(np.stack(per), axis=0)
    return pd.DataFrame({"class": [str(c) for c in classes], "base": per[0], "strong": lowest,
                         "gain": per[0] - lowest})


def worst_case(tables: Sequence[pd.DataFrame], eps: float) -> np.ndarray:
    """Per point: robust against every attack of the list (the worst case per point, never an average)."""
    flags = [robust_flags(t, eps) for t in tables]
    return np.logical_and.reduce(flags) if flags else np.zeros(0, dtype=bool)


def last_layer(model: nn.Module, num_classes: int) -> nn.Linear:
    """The classifier head: the last ``nn.Linear`` with one output per class."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_classes]
    if not heads:
        raise ValueError(f"the model has no linear layer with {num_classes} outputs")
    return heads[-1]


@torch.no_grad()
def class_weight_norms(model: nn.Module, num_classes: int) -> np.ndarray:
    """‖W_c‖₂ of the classifier head's row for each class (Tian et al.: weaker classes have smaller rows)."""
    return last_layer(model, num_classes).weight.detach().norm(dim=1).cpu().numpy()


def min_norms_by_class(table: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """The finite minimal perturbation norms of correctly classified points, labelled by class (for a violin)."""
    clean = table["pred_clean"] == table["y"]
    finite = np.isfinite(table["min_norm"])
    rows = table[clean & finite]
    return pd.DataFrame({"class": [str(classes[int(c)]) for c in rows["y"]],
                         "min_norm": rows["min_norm"].to_numpy(dtype=float)})


def classes_without_min_norms(table: pd.DataFrame, classes: Sequence[str]) -> dict[str, str]:
    """{class: why} for the classes ``min_norms_by_class`` has no value for: no test point of theirs among the
    table's, none classified correctly (nothing to perturb), or no flip found for any of the correct ones."""
    y = table["y"].to_numpy()
    clean = (table["pred_clean"] == table["y"]).to_numpy()
    finite = np.isfinite(table["min_norm"].to_numpy(dtype=float))
    why = {}
    for c, name in enumerate(classes):
        mask = y == c
        if not mask.any():
            why[str(name)] = "no test point"
        elif not clean[mask].any():
            why[str(name)] = "no correctly classified point"
        elif not finite[mask & clean].any():
            why[str(name)] = "no flip found"
    return why
