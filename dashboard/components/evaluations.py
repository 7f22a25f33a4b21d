"""Run (or read back) a model's standard evaluation with visible progress, and shape it for the charts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
import streamlit as st

from core.evaluation import views
from core.evaluation.bundle import Bundle, attack_summary, combine
from core.evaluation.suite import EvalSpec
from core.jobs import list_jobs, submit_job
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
    missing: tuple[str, ...] = ()  # labels of the bundle's attacks at ε that are not computed (yet)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table that answers "robust at ε?", labelled (the minimal-norm one as 'min-norm')."""
        return {"min-norm": self.curve, **self.at_eps}

    @property
    def complete(self) -> bool:
        return not self.missing


def run_bundle(run_id: str, name: str, bundle: Bundle, device: str, *, at_eps: bool = True) -> ModelResults:
    """Each spec comes from the store when computed before (by anyone), else is computed here and stored.

    With ``at_eps=False`` only the ε-free runs (the minimal-norm curve and its PGD-10 checks) are computed when
    missing; an attack at the bundle's ε is read when stored and otherwise left out and named in ``missing``, so a
    new ε is answered at once from the minimal-norm run."""
    every = [("curve", bundle.curve), ("checks", bundle.checks), *bundle.at_eps, ("full", bundle.full)]
    found = cache.stored_ids([spec for _, spec in every])  # one query per rerun: a slider move pays this
    stored = {label: spec.eval_id in found for label, spec in every}
    every.pop()  # the full ensemble is a background job: read when stored (below), never computed here
    missing = tuple(label for label, _ in bundle.at_eps if not at_eps and not stored[label])
    specs = [(label, spec) for label, spec in every if label not in missing]
    tables: dict[str, pd.DataFrame] = {}
    bar = st.progress(0.0, text=f"{name}: evaluating…") if not all(stored[label] for label, _ in specs) else None
    for i, (label, spec) in enumerate(specs):
        if bar is not None:
            what = label if label == spec.attack else f"{label} ({spec.attack})"  # not "quick (quick)"
            bar.progress(i / len(specs), text=f"{name}: computing {what}, {i}/{len(specs)} — once: stored results "
                                              "are read back on every later visit")
        tables[label], _ = cache.evaluation(spec, device)
    if bar is not None:
        bar.empty()
    # The full ensemble is a background job: read its table once it exists, never start it here.
    has_full = bundle.full.attack == "full" and stored["full"]
    at_eps_tables = {k: tables[k] for k, _ in bundle.at_eps if k in tables}
    if has_full:
        at_eps_tables["full"], _ = cache.evaluation(bundle.full, device)
    return ModelResults(run_id=run_id, name=name, bundle=bundle, curve=tables["curve"], checks=tables["checks"],
                        at_eps=at_eps_tables, has_full=has_full, missing=missing)


def missing_specs(results: ModelResults) -> list[Any]:
    """The specs of the attacks at ε that ``results`` lacks (what a background job computes)."""
    return [spec for label, spec in results.bundle.at_eps if label in results.missing]


def curve_entry(results: ModelResults) -> dict[str, Any]:
    """The curve chart's entry of a model; no worst-case star while attacks at ε are missing (it would be the
    minimal-norm line's own value, not a worst case)."""
    bundle = results.bundle
    grid = (0.0, *bundle.grid)
    curve = views.robust_curve(results.curve, grid)
    checks = views.robust_curve(results.checks, views.table_eps(results.checks))
    worst = float(combine(results.tables, bundle.eps)["robust"].mean()) if results.complete else None
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


def temperature_sweep(results: ModelResults, classes: Sequence[str]) -> pd.DataFrame | None:
    """Per-class robust accuracy under Temperature-PGD per T (T = 1 is PGD-10); None until those are computed."""
    if any(label.startswith("tpgd") or label == "pgd-10" for label in results.missing):
        return None
    frames = []
    for label, table in results.at_eps.items():
        if label.startswith("tpgd") or label == "pgd-10":
            t = 1.0 if label == "pgd-10" else float(label.split("=", 1)[1])
            pc = views.per_class_accuracy(table, results.bundle.eps, classes)
            frames.append(pc.assign(T=t))
    return pd.concat(frames).sort_values(["class", "T"], key=lambda s: s if s.name == "T" else s.map(
        {str(c): i for i, c in enumerate(classes)}))


def gains(results: ModelResults, classes: Sequence[str]) -> pd.DataFrame | None:
    """Per class, the robust accuracy each stronger attack removes beyond PGD-10 (never negative: a point PGD-10
    broke stays broken); Temperature-PGD by its worst T, T = 1 included, as in the sweep. None until the attacks
    at ε are computed."""
    if not results.complete:
        return None
    eps, base = results.bundle.eps, results.at_eps["pgd-10"]
    tpgd = [t for k, t in results.at_eps.items() if k.startswith("tpgd")]
    out = pd.DataFrame({"class": [str(c) for c in classes]})
    out["PGD-100"] = views.class_gain(base, results.at_eps["pgd-100"], eps, classes)["gain"].to_numpy()
    out["T-PGD (worst T)"] = views.worst_setting_gain(base, tpgd, eps, classes)["gain"].to_numpy()
    labels = {"quick": "quick ensemble", "full": "full ensemble"} if results.has_full else {"quick": "quick ensemble"}
    for key, name in labels.items():
        out[name] = views.class_gain(base, results.at_eps[key], eps, classes)["gain"].to_numpy()
    return out


def summary_rows(results: ModelResults) -> pd.DataFrame:
    frame = attack_summary(results.tables, results.bundle.eps)
    labels = {"min-norm": f"{results.bundle.curve.attack.upper()} (minimal norm > ε)", "pgd-10": "PGD-10",
              "pgd-100": "PGD-100", "quick": "quick ensemble", "full": "full ensemble"}
    frame["attack"] = [labels.get(a, a.replace("tpgd", "T-PGD")) for a in frame["attack"]]
    frame.insert(0, "model", results.name)
    return frame


def percent_cells(table: pd.DataFrame) -> pd.DataFrame:
    """Percentages as text with one decimal, and "not run" where a model lacks that attack: the full ensemble runs
    per model, and Streamlit printed the empty cell as "None"."""
    return table.map(lambda v: "not run" if pd.isna(v) else f"{v:.1f}%")


def queued_eval_ids() -> set[str]:
    """The eval ids that a queued or running background job is computing."""
    ids = set()
    for job in list_jobs(cache.registry(), active_only=True):
        if job["kind"] == "eval":
            ids |= {EvalSpec.from_dict(d).eval_id for d in job["args"].get("specs", [job["args"].get("spec")]) if d}
    return ids


def _estimate(reference: Bundle | None) -> float | None:
    """What the attacks at ε took for the same model at the reference ε (stored durations), if all are known."""
    if reference is None:
        return None
    seconds = [cache.evaluation_seconds(spec) for _, spec in reference.at_eps]
    return sum(seconds) if all(s is not None for s in seconds) else None


def at_eps_notice(pending: Sequence[ModelResults], references: dict[str, Bundle], *, dataset: str, norm: str,
                  device: str, on_compute: Any) -> None:
    """Say what a new ε shows without its attacks, and offer them: now (``on_compute``, a button callback) or as one
    background job per model (its trust checks included). Jobs already queued for the same specs are not doubled."""
    eps = pending[0].bundle.eps
    queued = queued_eval_ids()
    waiting = [r for r in pending if not {s.eval_id for s in missing_specs(r)} <= queued]
    names = ", ".join(r.name for r in pending)
    if not waiting:
        st.info(f"PGD-10, PGD-100, Temperature-PGD, the quick ensemble and the trust checks at ε = {eps:g} are being "
                f"computed in the background for {names} (progress under *Export and background evaluations*). The "
                "page updates itself when they finish; until then the per-class views use the minimal-norm run.",
                icon=":material/hourglass_top:")
        return
    estimates = [_estimate(references.get(r.run_id)) for r in waiting]
    took = (f" At ε = {references[waiting[0].run_id].eps:g} they took about {sum(estimates):.0f} s in all."
            if all(e is not None for e in estimates) else "")
    box = st.container(border=True, key="rob_pending")
    box.markdown(f":material/speed: **ε = {eps:g} is shown from the minimal-norm run alone** (it answers every ε at "
                 f"once). PGD-10, PGD-100, Temperature-PGD, the quick ensemble and the trust checks have not run at "
                 f"this ε for {', '.join(r.name for r in waiting)}, so there is no worst-case star, and the per-class "
                 f"views count only the minimal-norm attack.{took}")
    left, right = box.columns(2)
    left.button("Compute them now", key="rob_compute_now", on_click=on_compute, icon=":material/play_arrow:",
                help="Runs here with a progress bar; the page waits.")
    if right.button("Compute them in the background", key="rob_compute_bg", icon=":material/rocket_launch:",
                    help="One job per model; you can keep moving the slider. The page updates when they finish."):
        for r in waiting:
            args: dict[str, Any] = {"specs": [spec.to_dict() for spec in missing_specs(r)], "device": device}
            if cache.stored_trust_checks(r.run_id, dataset, eps, norm) is None:
                args["trust"] = {"run_id": r.run_id, "dataset": dataset, "eps": eps, "norm": norm}
            submit_job(cache.registry(), "eval", args, device=device)
        st.toast(f"Queued {len(waiting)} background evaluation(s) at ε = {eps:g}.")
        st.rerun()


def summary_table(results: Sequence[ModelResults], short: Sequence[str], shared: str, eps: float) -> None:
    """The robust-accuracy table (attack × model, %) at ε and its caption; ``short``: the models' names without the
    part they all share (``shared``)."""
    summary = pd.concat([summary_rows(r) for r in results])
    order = list(dict.fromkeys(summary["attack"]))
    table = 100 * summary.pivot(index="attack", columns="model", values="robust_acc").reindex(
        index=order, columns=[r.name for r in results]).rename(columns=dict(zip([r.name for r in results], short)))
    missing = table.isna().to_numpy().any()
    # Models with no attack at ε yet (one partway through a background job has some): their worst case is the curve's.
    curve_only = [name for r, name in zip(results, short) if not r.at_eps]
    # In percent with one decimal, like every accuracy on the page (Streamlit's "percent" format drops trailing zeros).
    st.dataframe(percent_cells(table) if missing else table,
                 column_config=None if missing else {name: st.column_config.NumberColumn(format="%.1f%%")
                                                     for name in short}, key="rob_summary")
    attack = results[0].bundle.curve.attack.upper()
    st.caption(f"Robust accuracy (%) at ε = {eps:g} on the first {len(results[0].curve)} test points"
               + (f"; every model here is a {shared} model" if shared else "")
               + ("; “not run”: that attack has not been run on that model (the full ensemble runs per model, below)."
                  if missing else ".")
               # Otherwise the FMN row's figure appeared again as "worst case per point", read as a verdict.
               + (f" For {', '.join(curve_only)} only {attack} has run at this ε so far: its worst case per point is "
                  "that one attack's until the attacks at ε (above) run." if curve_only else ""))


def class_metrics(spread: dict[str, Any]) -> None:
    """Four metrics of how unequal robustness is across classes (``spread``: core.evaluation.views.disparity)."""
    m = st.columns(4)
    m[0].metric("mean class robustness", f"{spread['mean']:.1%}")
    tied = spread["worst_all"]
    # Every class at the lowest figure: "least robust class 2 · 0.0 %" hid that 5, 8 and 9 were at 0 too.
    m[1].metric("least robust class" if len(tied) < 2 else f"least robust class ({len(tied)} tied)",
                f"{spread['worst']}{f' +{len(tied) - 1}' if len(tied) > 1 else ''} · {spread['worst_acc']:.1%}",
                help=None if len(tied) < 2 else f"Classes {', '.join(tied[:-1])} and {tied[-1]} are all at "
                                                f"{spread['worst_acc']:.1%}.")
    m[2].metric("most robust class", f"{spread['best']} · {spread['best_acc']:.1%}")
    # Both in percentage points: the std of accuracies given in %, and how far the worst class lies below their mean
    # (worst − mean ≤ 0), said in words under a red down arrow: "↓ -14.1 points" read as a double negative. Short
    # enough for a quarter of the page ("worst class 14.1 points bel…" was cut at 1280 px); the help says it in full.
    m[3].metric("spread (std) by class", f"{spread['std'] * 100:.1f} points",
                f"worst {abs(spread['worst_gap']) * 100:.1f} below mean", delta_color="red",
                delta_arrow="down" if spread["worst_gap"] < 0 else "off",
                help="The standard deviation of the per-class robust accuracies, and how far the least robust class "
                     f"({spread['worst']}) lies below their mean, both in percentage points.")


def weight_correlation(weight_norms: np.ndarray, per_class: pd.DataFrame) -> float:
    """Pearson r between each class's classifier-row norm and its robust accuracy (NaN for fewer than 3 classes)."""
    if len(weight_norms) <= 2:
        return float("nan")
    return float(np.corrcoef(weight_norms, per_class["robust_acc"].to_numpy())[0, 1])
