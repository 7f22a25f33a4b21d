"""The standard evaluation of one model at one ε: which attacks, and how their tables combine.

A minimal-norm attack (FMN when registered, else DeepFool) gives the whole robustness curve in one run; PGD-10 checks
it at a few points of the grid. At the chosen ε the model also meets PGD-100, Temperature-PGD over a log-spaced T
sweep (Tian et al.) and the quick ensemble; the full ensemble is added when a background job has computed it.
Robust accuracy is always the worst case per point over everything run (Croce & Hein 2020), never an average.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from core.attacks import ATTACKS
from core.evaluation.suite import EvalSpec
from core.evaluation.table import eps_column
from core.evaluation.views import robust_flags
from core.utils import round_step

# At most: the grid's step is the first round one (core.utils.round_step) that fits the range in this many points,
# one a lecturer can read out (0.02, 0.04, …); top / 16 gave 0.01875, 0.0375, 0.05625.
CURVE_POINTS = 16
# Test points the Robustness page evaluates unless the user picks another number.
PAGE_POINTS = 360
CHECK_POINTS = 4
TEMPERATURES = (0.1, 0.3, 3.0, 10.0)
# Strongest first: the prediction a broken point is shown with comes from the first attack that breaks it.
STRENGTH_ORDER = ("full", "quick", "pgd-100", "tpgd", "pgd-10", "min-norm")


def eps_range(norm: str, input_shape: Sequence[int], model_eps: float | None) -> float:
    """The largest ε worth plotting: past where standard models break, up to where robust ones do."""
    if norm == "linf":
        return round(min(1.0, max(0.3, 3 * (model_eps or 0.1))), 3)
    return round(max(1.0, 0.25 * math.sqrt(int(np.prod(input_shape))), 3 * (model_eps or 0.0)), 2)


def page_view(model_norm: str | None, model_eps: float | None, norm: str,
              input_shape: Sequence[int]) -> tuple[float, tuple[float, ...], float]:
    """(top of the ε range, the ε slider's grid (:func:`curve_grid`), the default ε) of the Robustness page when a
    model trained in ``model_norm`` at ``model_eps`` is the primary one and ``norm`` is shown: its own ε when the
    norms agree, else the grid's fifth point. The page and the shipped evaluations (core.evaluation.shipped) both
    use it, so the evaluations shipped with the default models are exactly the ones the page asks for."""
    own = model_norm == norm
    top = eps_range(norm, input_shape, model_eps if own else None)
    grid = curve_grid(top)
    eps = float(model_eps) if own and model_eps else grid[min(4, len(grid) - 1)]
    return top, grid, round(eps, 6)


def curve_grid(top: float, points: int = CURVE_POINTS) -> tuple[float, ...]:
    """Round multiples of :func:`round_step` up to ``top`` (0.02, 0.04, …, 0.3 for top = 0.3), and ``top`` itself
    where the step does not land on it."""
    step = round_step(top, points)
    count = int(math.floor(top / step + 1e-9))
    grid = [round(k * step, 10) for k in range(1, count + 1)]
    if not math.isclose(grid[-1], top, rel_tol=1e-9):
        grid.append(float(top))
    return tuple(float(v) for v in grid)


def minimal_norm_attack() -> str:
    return "fmn" if "fmn" in ATTACKS else "deepfool"


@dataclass(frozen=True)
class Bundle:
    """The specs of one model's standard evaluation (hashable: a cache key)."""

    curve: EvalSpec
    checks: EvalSpec
    at_eps: tuple[tuple[str, EvalSpec], ...]
    full: EvalSpec
    eps: float
    grid: tuple[float, ...]


def standard_bundle(run_id: str, dataset: str, *, eps: float, norm: str, top: float, n: int | None = None,
                    seed: int = 0) -> Bundle:
    grid = curve_grid(top)
    common = dict(run_id=run_id, dataset=dataset, n=n, seed=seed)
    # FMN at 50 steps: within 3 points of PGD-10 at every ε of a 16-point grid in under a third of its time.
    curve_kwargs = {"norm": norm, "steps": 50} if minimal_norm_attack() == "fmn" else {"norm": norm}
    curve = EvalSpec.make(attack=minimal_norm_attack(), attack_kwargs=curve_kwargs, **common)
    # CHECK_POINTS evenly spaced points of the grid, ending at its top (0.12, 0.18, 0.24, 0.3 for 0.02, …, 0.3).
    step = max(len(grid) // CHECK_POINTS, 1)
    checks = EvalSpec.make(attack="pgd", attack_kwargs={"norm": norm, "steps": 10},
                           eps_grid=grid[::-1][::step][:CHECK_POINTS][::-1], **common)
    at_eps = [("pgd-10", EvalSpec.make(attack="pgd", attack_kwargs={"norm": norm, "steps": 10}, eps_grid=(eps,),
                                       **common)),
              ("pgd-100", EvalSpec.make(attack="pgd", attack_kwargs={"norm": norm, "steps": 100}, eps_grid=(eps,),
                                        **common))]
    at_eps += [(f"tpgd T={t:g}", EvalSpec.make(attack="tpgd", attack_kwargs={"norm": norm, "steps": 10,
                                                                              "temperature": t},
                                                eps_grid=(eps,), **common)) for t in TEMPERATURES]
    at_eps.append(("quick", EvalSpec.make(attack="quick", attack_kwargs={"norm": norm}, eps_grid=(eps,), **common)))
    full = EvalSpec.make(attack="full" if "full" in ATTACKS else "quick", attack_kwargs={"norm": norm},
                         eps_grid=(eps,), **common)
    return Bundle(curve=curve, checks=checks, at_eps=tuple(at_eps), full=full, eps=float(eps), grid=grid)


def _family(name: str) -> str:
    return "tpgd" if name.startswith("tpgd") else name


def combine(tables: dict[str, pd.DataFrame], eps: float) -> pd.DataFrame:
    """One row per point at ``eps``: robust against each attack, worst case over all, and where it was sent.

    ``tables`` maps an attack label to its per-sample table (a minimal-norm table under "min-norm").
    """
    first = next(iter(tables.values()))
    out = first[["index", "y", "pred_clean"]].copy()
    flags = {}
    for name, table in tables.items():
        flags[name] = robust_flags(table, eps)
        out[f"robust[{name}]"] = flags[name]
    out["robust"] = np.logical_and.reduce(list(flags.values()))
    adv = out["pred_clean"].to_numpy().copy()
    unset = out["pred_clean"].to_numpy() == out["y"].to_numpy()
    order = sorted(tables, key=lambda n: STRENGTH_ORDER.index(_family(n)) if _family(n) in STRENGTH_ORDER else 99)
    for name in order:
        # A minimal-norm table's only prediction is where its smallest perturbation crossed to.
        cols = [c for c in tables[name].columns if c.startswith("pred_adv@")]
        col = f"pred_adv@{eps_column(eps)}" if "min_norm" not in tables[name] else cols[0]
        if col not in tables[name]:
            continue
        broken = unset & ~flags[name]
        adv[broken] = tables[name][col].to_numpy()[broken]
        unset &= ~broken
    out[f"pred_adv@{eps_column(eps)}"] = adv
    if "min-norm" in tables:
        out["min_norm"] = tables["min-norm"]["min_norm"].to_numpy()
    return out


EXPORT_FORMATS = ("csv", "parquet")


def export_table(table: pd.DataFrame, fmt: str) -> bytes:
    """A per-sample table as the bytes of a file: "csv" (UTF-8, header, no index) or "parquet" (pyarrow)."""
    if fmt == "csv":
        return table.to_csv(index=False).encode()
    if fmt == "parquet":
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(EXPORT_FORMATS)}")


def attack_summary(tables: dict[str, pd.DataFrame], eps: float) -> pd.DataFrame:
    """Robust accuracy at ``eps`` of every attack, and the worst case over all of them (last row)."""
    rows = [{"attack": name, "robust_acc": float(robust_flags(t, eps).mean())} for name, t in tables.items()]
    combined = combine(tables, eps)
    rows.append({"attack": "worst case per point", "robust_acc": float(combined["robust"].mean())})
    return pd.DataFrame(rows)
