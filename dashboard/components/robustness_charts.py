"""Charts of the Robustness page. Each takes tables from core.evaluation.views and returns a titled figure.

Every move of the page's ε slider redraws all of them, so they are built from plain dicts in one ``go.Figure`` call
without a template (charts.BASE): eight figures in ≈ 40 ms instead of ≈ 500 ms with add_trace, update_* calls,
add_vline / add_hline and the plotly_white template.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.components.charts import BASE, GRID, LEGEND_BELOW

PALETTE = ("#c2410c", "#2563eb", "#16a34a", "#9333ea", "#0891b2", "#64748b")
# Ten classes need ten colours that all stand out on white (Streamlit's theme cycles some very pale ones).
CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf")
NORM_LABEL = {"linf": "ℓ∞", "l2": "ℓ2", "l2patch": "per-patch ℓ2"}
MARGIN = dict(l=60, r=20, t=50, b=90)
HEATMAP_MARGIN = dict(l=60, r=20, t=50, b=60)


def _axis(title: str, **extra: Any) -> dict[str, Any]:
    return dict(GRID, title=dict(text=title), **extra)


def _layout(title: str, height: int, x: dict[str, Any], y: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return dict(BASE, title=dict(text=title), height=height, xaxis=x, yaxis=y,
                **{"margin": MARGIN, "legend": LEGEND_BELOW, **extra})


def _figure(data: list[dict[str, Any]], layout: dict[str, Any]) -> go.Figure:
    return go.Figure(data=data, layout=layout)


def curve_figure(curves: Sequence[dict], eps: float, norm: str) -> go.Figure:
    """Robust accuracy vs ε: per model the minimal-norm curve (line), PGD-10 checks and the worst case at ε (a star,
    left out where an entry's ``worst`` is None)."""
    data = []
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        data.append(dict(type="scatter", x=c["curve"]["eps"].to_numpy(), y=c["curve"]["robust_acc"].to_numpy(),
                         mode="lines", name=f"{c['name']} · {c['curve_label']}", line=dict(color=colour),
                         hovertemplate="ε=%{x:.3f}: %{y:.1%}<extra></extra>"))
        data.append(dict(type="scatter", x=c["checks"]["eps"].to_numpy(), y=c["checks"]["robust_acc"].to_numpy(),
                         mode="markers", name=f"{c['name']} · PGD-10",
                         marker=dict(color=colour, size=9, symbol="circle-open"),
                         hovertemplate="PGD-10 ε=%{x:.3f}: %{y:.1%}<extra></extra>"))
        if c["worst"] is None:  # the attacks at ε are not computed yet: no star
            continue
        data.append(dict(type="scatter", x=np.array([eps]), y=np.array([c["worst"]]), mode="markers",
                         name=f"{c['name']} · worst case at ε", marker=dict(color=colour, size=15, symbol="star"),
                         hovertemplate="worst case ε=%{x:.3f}: %{y:.1%}<extra></extra>"))
    layout = _layout("Robust accuracy vs ε", 460, _axis(f"ε ({NORM_LABEL.get(norm, norm)}, image scale 0–1)"),
                     _axis("robust accuracy", range=[-0.02, 1.02], tickformat=".0%"),
                     shapes=[dict(type="line", x0=eps, x1=eps, y0=0, y1=1, yref="paper",
                                  line=dict(dash="dot", color="#475569", width=1.5))],
                     annotations=[dict(text=f"ε = {eps:g}", x=eps, y=1, yref="paper", xanchor="left",
                                       yanchor="top", showarrow=False, font=dict(color="#475569"))])
    return _figure(data, layout)


def class_bars(per_class: pd.DataFrame, eps: float, robust_label: str = "worst case") -> go.Figure:
    """Clean and robust accuracy per class; ``robust_label`` says what the robust bars count (the worst case over
    every attack, or the minimal-norm attack alone while the others have not run)."""
    names = per_class["class"].to_numpy(str)
    data = [dict(type="bar", x=names, y=per_class["clean_acc"].to_numpy(float), name="clean",
                 marker=dict(color="#2563eb"), hovertemplate="class %{x}: %{y:.1%}<extra>clean</extra>"),
            dict(type="bar", x=names, y=per_class["robust_acc"].to_numpy(float),
                 name=f"robust at ε = {eps:g} ({robust_label})", marker=dict(color="#c2410c"),
                 hovertemplate="class %{x}: %{y:.1%}<extra>robust</extra>")]
    return _figure(data, _layout("Clean vs robust accuracy per class", 380, _axis("class", type="category"),
                                 _axis("accuracy", range=[0, 1.02], tickformat=".0%"), barmode="group"))


def class_eps_heatmap(matrix: pd.DataFrame) -> go.Figure:
    """Classes × ε on a numeric ε axis, so the ticks are round values (0.05, 0.1, …), not the grid's own
    (0.01875, …); the hover gives each column's exact ε."""
    eps = np.array([float(c) for c in matrix.columns])
    data = [dict(type="heatmap", z=matrix.to_numpy(float), x=eps, y=np.array(matrix.index), colorscale="RdYlGn",
                 zmin=0, zmax=1, colorbar=dict(title=dict(text="robust"), tickformat=".0%"),
                 hovertemplate="class %{y}, ε=%{x:.3g}: %{z:.1%}<extra></extra>")]
    return _figure(data, _layout("Robust accuracy per class and ε", 380, _axis("ε", tickangle=0, nticks=8),
                                 _axis("class", type="category", autorange="reversed"), margin=HEATMAP_MARGIN))


def flip_heatmap(counts: np.ndarray, classes: Sequence[str], eps: float) -> go.Figure:
    names = np.array([str(c) for c in classes])
    text = np.where(counts > 0, counts.astype(str), "")
    data = [dict(type="heatmap", z=counts, x=names, y=names, colorscale="Reds", text=text, texttemplate="%{text}",
                 colorbar=dict(title=dict(text="points")),
                 hovertemplate="true %{y} → predicted %{x}: %{z}<extra></extra>")]
    return _figure(data, _layout(f"Where attacked points go (ε = {eps:g})", 420,
                                 _axis("prediction under attack", type="category"),
                                 _axis("true class", type="category", autorange="reversed"), margin=HEATMAP_MARGIN))


def norm_violin(norms: pd.DataFrame, eps: float, norm: str, method: str, classes: Sequence[str],
                without: dict[str, str] | None = None) -> go.Figure:
    """Minimal flipping perturbation per class; the dotted line at ε is labelled in the right margin, clear of the
    last class's violin. A class of ``without`` ({class: why}) keeps its place on the axis, marked "none"."""
    data = [dict(type="violin", x=norms["class"].to_numpy(str), y=norms["min_norm"].to_numpy(float),
                 box=dict(visible=True), meanline=dict(visible=True), points=False, spanmode="hard",
                 line=dict(color="#2563eb"), fillcolor="#bfdbfe", name="minimal norm", hoverinfo="y")]
    if without:
        names = np.array(list(without), dtype=str)
        data.append(dict(type="scatter", x=names, y=np.zeros(len(names)), mode="text", text=np.full(len(names), "none"),
                         textposition="top center", textfont=dict(color="#64748b"), name="no value",
                         customdata=np.array(list(without.values()), dtype=str),
                         hovertemplate="class %{x}: %{customdata}<extra></extra>"))
    layout = _layout(f"Minimal perturbation per class ({method})", 380,
                     _axis("class", type="category", categoryorder="array", categoryarray=[str(c) for c in classes]),
                     _axis(f"smallest {NORM_LABEL.get(norm, norm)} perturbation that flips"), showlegend=False,
                     margin=dict(MARGIN, r=70),
                     shapes=[dict(type="line", x0=0, x1=1, xref="paper", y0=eps, y1=eps,
                                  line=dict(dash="dot", color="#c2410c", width=1.5))],
                     annotations=[dict(text=f"ε = {eps:g}", x=1, xref="paper", y=eps, xanchor="left",
                                       yanchor="middle", showarrow=False, font=dict(color="#c2410c"))])
    return _figure(data, layout)


def attacks_without_gain(gains: pd.DataFrame) -> list[str]:
    """The attacks of a ``gains`` table that change no class's robust accuracy (all their bars would be 0)."""
    return [c for c in gains.columns if c != "class"
            and np.allclose(np.nan_to_num(gains[c].to_numpy(float)), 0.0, atol=1e-9)]


def gain_bars(gains: pd.DataFrame) -> go.Figure:
    """Per class, points of robust accuracy each stronger attack removes compared to PGD-10. An attack that removes
    nothing in any class gets no (invisible, zero-height) bars and no legend entry; the chart names it instead."""
    flat = attacks_without_gain(gains)
    shown = [c for c in gains.columns if c != "class" and c not in flat]
    data = [dict(type="bar", x=gains["class"].to_numpy(str), y=gains[attack].to_numpy(float) * 100, name=attack,
                 marker=dict(color=PALETTE[(list(gains.columns).index(attack) - 1) % len(PALETTE)]),
                 hovertemplate="class %{x}: %{y:.1f} points<extra>" + attack + "</extra>")
            for attack in shown]
    values = gains[shown].to_numpy(float) * 100 if shown else np.zeros(1)
    top = max(float(np.nanmax(values)), 0.0) if np.isfinite(values).any() else 0.0
    low = min(float(np.nanmin(values)), 0.0) if np.isfinite(values).any() else 0.0
    pad = 0.1 * max(top - low, 1.0)  # headroom, so the tallest bar is not flush with the frame
    annotations = [dict(text=f"no gain in any class: {', '.join(flat)}", x=0, xref="paper", y=1, yref="paper",
                        xanchor="left", yanchor="bottom", showarrow=False, font=dict(color="#475569", size=12))]
    return _figure(data, _layout("Gain of stronger attacks over PGD-10, per class", 380,
                                 _axis("class", type="category"),
                                 _axis("robust accuracy removed (points)", range=[low - (pad if low < 0 else 0),
                                                                                  top + pad]),
                                 barmode="group", annotations=annotations if flat else []))


def temperature_figure(sweep: pd.DataFrame) -> go.Figure:
    data = [dict(type="scatter", x=group["T"].to_numpy(float), y=group["robust_acc"].to_numpy(float),
                 mode="lines+markers", name=f"class {name}", line=dict(width=1.5),
                 hovertemplate=f"class {name}" + ", T=%{x:g}: %{y:.1%}<extra></extra>")
            for name, group in sweep.groupby("class", sort=False)]
    temperatures = np.unique(sweep["T"].to_numpy(float))
    # One legend entry per class: a column on the right, since a wrapped row under the plot would cover the axis title.
    layout = _layout("Temperature-PGD sweep per class", 380,
                     _axis("temperature T (log scale; T = 1 is PGD)", type="log", tickvals=temperatures,
                           ticktext=[f"{t:g}" for t in temperatures]),
                     _axis("robust accuracy", tickformat=".0%"),
                     legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02), colorway=CLASS_COLOURS,
                     margin=dict(l=60, r=90, t=50, b=60))
    return _figure(data, layout)


def weight_norm_scatter(per_class: pd.DataFrame, norms: np.ndarray) -> go.Figure:
    """One dot per class; both ranges are padded so the dots at the edges keep their class labels in view."""
    robust = per_class["robust_acc"].to_numpy(float)
    data = [dict(type="scatter", x=norms, y=robust, mode="markers+text",
                 text=per_class["class"].to_numpy(str), textposition="top center",
                 marker=dict(size=12, color="#c2410c"),
                 hovertemplate="class %{text}: ‖W‖=%{x:.3f}, robust %{y:.1%}<extra></extra>")]
    finite = norms[np.isfinite(norms)] if len(norms) else np.zeros(0)
    left, right = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    x_pad = 0.08 * (right - left) if right > left else 0.05 * max(abs(right), 1e-3)
    high = float(np.nanmax(robust)) if np.isfinite(robust).any() else 1.0
    low = max(float(np.nanmin(robust)) - 0.08, -0.06) if np.isfinite(robust).any() else -0.06
    # Above the highest dot: room for its label, about 16 % of the shown span at this height.
    top = high + 0.16 * max(high - low, 0.3)
    return _figure(data, _layout("Class robustness vs last-layer weight norm", 380,
                                 _axis("‖W_c‖₂ (classifier row)", range=[left - x_pad, right + x_pad]),
                                 # A fixed 20 % step on a wide range: no "120 %" tick in the headroom.
                                 _axis("robust accuracy", tickformat=".0%", range=[low, top],
                                       **({"dtick": 0.2} if top - low > 0.6 else {})),
                                 showlegend=False))
