"""Charts of the Robustness page. Each takes tables from core.evaluation.views and returns a titled figure."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.components.charts import LAYOUT

PALETTE = ("#c2410c", "#2563eb", "#16a34a", "#9333ea", "#0891b2", "#64748b")
NORM_LABEL = {"linf": "ℓ∞", "l2": "ℓ2", "l2patch": "per-patch ℓ2"}


def curve_figure(curves: Sequence[dict], eps: float, norm: str) -> go.Figure:
    """Robust accuracy vs ε: per model the minimal-norm curve (line), PGD-10 checks and the worst case at ε (a star,
    left out where an entry's ``worst`` is None)."""
    fig = go.Figure()
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        fig.add_trace(go.Scatter(x=c["curve"]["eps"].to_numpy(), y=c["curve"]["robust_acc"].to_numpy(),
                                 mode="lines", name=f"{c['name']} · {c['curve_label']}", line=dict(color=colour),
                                 hovertemplate="ε=%{x:.3f}: %{y:.1%}<extra></extra>"))
        fig.add_trace(go.Scatter(x=c["checks"]["eps"].to_numpy(), y=c["checks"]["robust_acc"].to_numpy(),
                                 mode="markers", name=f"{c['name']} · PGD-10", marker=dict(color=colour, size=9,
                                                                                          symbol="circle-open"),
                                 hovertemplate="PGD-10 ε=%{x:.3f}: %{y:.1%}<extra></extra>"))
        if c["worst"] is None:  # the attacks at ε are not computed yet: no star
            continue
        fig.add_trace(go.Scatter(x=np.array([eps]), y=np.array([c["worst"]]), mode="markers",
                                 name=f"{c['name']} · worst case at ε", marker=dict(color=colour, size=15,
                                                                                   symbol="star"),
                                 hovertemplate="worst case ε=%{x:.3f}: %{y:.1%}<extra></extra>"))
    fig.add_vline(x=eps, line_dash="dot", line_color="#475569", annotation_text=f"ε = {eps:g}",
                  annotation_position="top right")
    fig.update_layout(title="Robust accuracy vs ε", xaxis_title=f"ε ({NORM_LABEL.get(norm, norm)}, image scale 0–1)",
                      yaxis_title="robust accuracy", height=460, **LAYOUT)
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    return fig


def class_bars(per_class: pd.DataFrame, eps: float, robust_label: str = "worst case") -> go.Figure:
    """Clean and robust accuracy per class; ``robust_label`` says what the robust bars count (the worst case over
    every attack, or the minimal-norm attack alone while the others have not run)."""
    fig = go.Figure()
    fig.add_trace(go.Bar(x=per_class["class"].to_numpy(str), y=per_class["clean_acc"].to_numpy(float),
                         name="clean", marker_color="#2563eb"))
    fig.add_trace(go.Bar(x=per_class["class"].to_numpy(str), y=per_class["robust_acc"].to_numpy(float),
                         name=f"robust at ε = {eps:g} ({robust_label})", marker_color="#c2410c"))
    fig.update_layout(title="Clean vs robust accuracy per class", xaxis_title="class", yaxis_title="accuracy",
                      barmode="group", height=380, **LAYOUT)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_xaxes(type="category")
    return fig


def class_eps_heatmap(matrix: pd.DataFrame) -> go.Figure:
    fig = go.Figure(go.Heatmap(z=matrix.to_numpy(float), x=np.array([f"{float(c):.3g}" for c in matrix.columns]),
                               y=np.array(matrix.index),
                               colorscale="RdYlGn", zmin=0, zmax=1, colorbar=dict(title="robust", tickformat=".0%"),
                               hovertemplate="class %{y}, ε=%{x}: %{z:.1%}<extra></extra>"))
    fig.update_layout(title="Robust accuracy per class and ε", xaxis_title="ε", yaxis_title="class", height=380,
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=50, b=60)})
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_xaxes(type="category")
    return fig


def flip_heatmap(counts: np.ndarray, classes: Sequence[str], eps: float) -> go.Figure:
    names = np.array([str(c) for c in classes])
    text = np.where(counts > 0, counts.astype(str), "")
    fig = go.Figure(go.Heatmap(z=counts, x=names, y=names, colorscale="Reds", text=text, texttemplate="%{text}",
                               colorbar=dict(title="points"),
                               hovertemplate="true %{y} → predicted %{x}: %{z}<extra></extra>"))
    fig.update_layout(title=f"Where attacked points go (ε = {eps:g})", xaxis_title="prediction under attack",
                      yaxis_title="true class", height=420, **{**LAYOUT, "margin": dict(l=60, r=20, t=50, b=60)})
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_xaxes(type="category")
    return fig


def norm_violin(norms: pd.DataFrame, eps: float, norm: str, method: str, classes: Sequence[str]) -> go.Figure:
    fig = go.Figure(go.Violin(x=norms["class"].to_numpy(str), y=norms["min_norm"].to_numpy(float), box_visible=True,
                              meanline_visible=True, points=False, spanmode="hard", line_color="#2563eb",
                              fillcolor="#bfdbfe",
                              name="minimal norm", hoverinfo="y"))
    fig.add_hline(y=eps, line_dash="dot", line_color="#c2410c", annotation_text=f"ε = {eps:g}")
    fig.update_layout(title=f"Minimal perturbation per class ({method})", xaxis_title="class",
                      yaxis_title=f"smallest {NORM_LABEL.get(norm, norm)} perturbation that flips", height=380,
                      showlegend=False, **LAYOUT)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(c) for c in classes])
    return fig


def gain_bars(gains: pd.DataFrame) -> go.Figure:
    """Per class, points of robust accuracy each stronger attack removes compared to PGD-10."""
    fig = go.Figure()
    for i, attack in enumerate(c for c in gains.columns if c != "class"):
        fig.add_trace(go.Bar(x=gains["class"].to_numpy(str), y=gains[attack].to_numpy(float) * 100, name=attack,
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate="class %{x}: %{y:.1f} points<extra>" + attack + "</extra>"))
    fig.update_layout(title="Gain of stronger attacks over PGD-10, per class", xaxis_title="class",
                      yaxis_title="robust accuracy removed (points)", barmode="group", height=380, **LAYOUT)
    fig.update_xaxes(type="category")
    return fig


def temperature_figure(sweep: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for i, (name, group) in enumerate(sweep.groupby("class", sort=False)):
        fig.add_trace(go.Scatter(x=group["T"].to_numpy(float), y=group["robust_acc"].to_numpy(float),
                                 mode="lines+markers", name=f"class {name}", line=dict(width=1.5),
                                 hovertemplate=f"class {name}" + ", T=%{x:g}: %{y:.1%}<extra></extra>"))
    fig.update_layout(title="Temperature-PGD sweep per class", xaxis_title="temperature T (log scale; T = 1 is PGD)",
                      yaxis_title="robust accuracy", height=380, **LAYOUT)
    # One entry per class: a column on the right, since a wrapped row under the plot would cover the axis title.
    fig.update_layout(legend=dict(orientation="v", yanchor="top", y=1, xanchor="left", x=1.02),
                      margin=dict(r=90, b=60))
    temperatures = np.unique(sweep["T"].to_numpy(float))
    fig.update_xaxes(type="log", tickvals=temperatures, ticktext=[f"{t:g}" for t in temperatures])
    fig.update_yaxes(tickformat=".0%")
    return fig


def weight_norm_scatter(per_class: pd.DataFrame, norms: np.ndarray) -> go.Figure:
    fig = go.Figure(go.Scatter(x=norms, y=per_class["robust_acc"].to_numpy(float), mode="markers+text",
                               text=per_class["class"].to_numpy(str), textposition="top center",
                               marker=dict(size=12, color="#c2410c"),
                               hovertemplate="class %{text}: ‖W‖=%{x:.3f}, robust %{y:.1%}<extra></extra>"))
    fig.update_layout(title="Class robustness vs last-layer weight norm", xaxis_title="‖W_c‖₂ (classifier row)",
                      yaxis_title="robust accuracy", height=380, showlegend=False, **LAYOUT)
    # Room above 100 % for the dots and their class labels (robust classes sit at the top).
    low = float(np.nanmin(per_class["robust_acc"].to_numpy(float))) if len(per_class) else 0.0
    fig.update_yaxes(tickformat=".0%", range=[max(low - 0.08, -0.02), 1.045])
    return fig
