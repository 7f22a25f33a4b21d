"""Run (or read back) a model's standard evaluation with visible progress, and shape it for the charts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from core.evaluation import views
from core.evaluation.bundle import Bundle, attack_summary, combine
from dashboard import cache


@dataclass
class ModelResults:
    run_id: str
    name: str
    bundle: Bundle
    curve: pd.DataFrame          # the minimal-norm table
    checks: pd.DataFrame         # PGD-10 at a few grid points
    at_eps: dict[str, pd.DataFrame]
    has_full: bool

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table that answers "robust at ε?", labelled (the minimal-norm one as 'min-norm')."""
        return {"min-norm": self.curve, **self.at_eps}


def run_bundle(run_id: str, name: str, bundle: Bundle, device: str) -> ModelResults:
    """Each spec comes from the store when computed before (by anyone), else is computed here and stored."""
    specs = [("curve", bundle.curve), ("checks", bundle.checks), *bundle.at_eps]
    done = [s for _, s in specs if cache.is_stored(s)]
    tables: dict[str, pd.DataFrame] = {}
    bar = st.progress(0.0, text=f"{name}: evaluating…") if len(done) < len(specs) else None
    for i, (label, spec) in enumerate(specs):
        if bar is not None:
            bar.progress(i / len(specs), text=f"{name}: {label} ({spec.attack}) — {i}/{len(specs)}")
        tables[label], _ = cache.evaluation(spec, device)
    if bar is not None:
        bar.empty()
    # The full ensemble is a background job: read its table once it exists, never start it here.
    has_full = bundle.full.attack == "full" and cache.is_stored(bundle.full)
    at_eps = {k: tables[k] for k, _ in bundle.at_eps}
    if has_full:
        at_eps["full"], _ = cache.evaluation(bundle.full, device)
    return ModelResults(run_id=run_id, name=name, bundle=bundle, curve=tables["curve"], checks=tables["checks"],
                        at_eps=at_eps, has_full=has_full)


def curve_entry(results: ModelResults) -> dict[str, Any]:
    bundle = results.bundle
    grid = (0.0, *bundle.grid)
    curve = views.robust_curve(results.curve, grid)
    checks = views.robust_curve(results.checks, views.table_eps(results.checks))
    worst = float(combine(results.tables, bundle.eps)["robust"].mean())
    return {"name": results.name, "curve": curve, "checks": checks, "worst": worst,
            "curve_label": f"{bundle.curve.attack.upper()} (one minimal-norm run)"}


def check_gap(results: ModelResults) -> float:
    """Largest difference, in points, between the minimal-norm curve and PGD-10 at the checked ε."""
    eps = views.table_eps(results.checks)
    from_curve = views.robust_curve(results.curve, eps)["robust_acc"].to_numpy()
    from_pgd = views.robust_curve(results.checks, eps)["robust_acc"].to_numpy()
    return float(np.abs(from_curve - from_pgd).max() * 100) if len(eps) else 0.0


def worst_per_class(results: ModelResults, classes: Sequence[str]) -> pd.DataFrame:
    """Clean and worst-case robust accuracy per class at the bundle's ε."""
    combined = combine(results.tables, results.bundle.eps)
    y = combined["y"].to_numpy()
    clean = (combined["pred_clean"] == combined["y"]).to_numpy()
    rows = [{"class": str(name), "n": int((y == c).sum()), "clean_acc": float(clean[y == c].mean()),
             "robust_acc": float(combined["robust"].to_numpy()[y == c].mean())}
            for c, name in enumerate(classes) if (y == c).any()]
    return pd.DataFrame(rows)


def class_eps(results: ModelResults, classes: Sequence[str]) -> pd.DataFrame:
    """Per class and ε, from the minimal-norm run (the only table that answers every ε of the grid)."""
    return views.class_eps_matrix(results.curve, results.bundle.grid, classes)


def temperature_sweep(results: ModelResults, classes: Sequence[str]) -> pd.DataFrame:
    frames = []
    for label, table in results.at_eps.items():
        if label.startswith("tpgd") or label == "pgd-10":
            t = 1.0 if label == "pgd-10" else float(label.split("=", 1)[1])
            pc = views.per_class_accuracy(table, results.bundle.eps, classes)
            frames.append(pc.assign(T=t))
    return pd.concat(frames).sort_values(["class", "T"], key=lambda s: s if s.name == "T" else s.map(
        {str(c): i for i, c in enumerate(classes)}))


def gains(results: ModelResults, classes: Sequence[str]) -> pd.DataFrame:
    eps = results.bundle.eps
    base = views.per_class_accuracy(results.at_eps["pgd-10"], eps, classes)
    out = pd.DataFrame({"class": base["class"]})
    tpgd = [t for k, t in results.at_eps.items() if k.startswith("tpgd")]
    groups = {"PGD-100": [results.at_eps["pgd-100"]], "T-PGD (worst T)": tpgd, "quick ensemble":
              [results.at_eps["quick"]]}
    if results.has_full:
        groups["full ensemble"] = [results.at_eps["full"]]
    y = results.at_eps["pgd-10"]["y"].to_numpy()
    for name, tables in groups.items():
        robust = views.worst_case(tables, eps)
        per = np.array([robust[y == c].mean() if (y == c).any() else np.nan for c in range(len(classes))])
        out[name] = base["robust_acc"].to_numpy() - per
    return out


def summary_rows(results: ModelResults) -> pd.DataFrame:
    frame = attack_summary(results.tables, results.bundle.eps)
    labels = {"min-norm": f"{results.bundle.curve.attack.upper()} (minimal norm > ε)", "pgd-10": "PGD-10",
              "pgd-100": "PGD-100", "quick": "quick ensemble", "full": "full ensemble"}
    frame["attack"] = [labels.get(a, a.replace("tpgd", "T-PGD")) for a in frame["attack"]]
    frame.insert(0, "model", results.name)
    return frame
