"""Plotly chart builders. Every chart has a title and labelled axes; pages add a one-line caption."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.evaluation import pareto_front
from dashboard.components.labels import SHORT_METHOD_LABELS, label

METHOD_COLOURS = {"erm": "#64748b", "fgsm-rs": "#0ea5e9", "n-fgsm": "#6366f1", "pgd-at": "#c2410c",
                  "trades": "#16a34a"}
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=90), font=dict(size=13),
              legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0))
# Charts that slider moves redraw are built from plain dicts in one go.Figure call and without a template: plotly's
# make_subplots, add_trace / update_* calls, add_vline and template merging cost 30–100 ms per figure.
BASE = dict(font=dict(size=13), plot_bgcolor="white", paper_bgcolor="white", hoverlabel=dict(font_size=13))
GRID = dict(gridcolor="#e5e7eb", zerolinecolor="#cbd5e1")
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0)


def pareto_figure(table: pd.DataFrame, highlight: Sequence[str] = ()) -> go.Figure:
    """Clean vs robust accuracy of all runs with metrics, the Pareto front as a staircase."""
    data = table.dropna(subset=["clean acc", "robust acc"])
    fig = go.Figure()
    for method, group in data.groupby("method"):
        sizes = np.where(group["id"].isin(highlight), 18, 11)
        fig.add_trace(go.Scatter(
            x=group["clean acc"].to_numpy(float), y=group["robust acc"].to_numpy(float), mode="markers",
            name=label(SHORT_METHOD_LABELS, str(method)),
            marker=dict(size=sizes, color=METHOD_COLOURS.get(str(method), "#a855f7"),
                        line=dict(width=1, color="white")),
            text=group["name"].to_numpy(str), customdata=group["ε"].to_numpy(float),
            hovertemplate="%{text}<br>clean %{x:.3f} · robust %{y:.3f} at ε=%{customdata}<extra></extra>"))
    if len(data):
        x, y = pareto_front(data["clean acc"].to_numpy(float), data["robust acc"].to_numpy(float))
        # A ring marks every Pareto-optimal model; the staircase needs two of them to be a line.
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if len(x) > 1 else "markers",
                                 name="Pareto-optimal", line=dict(dash="dot", color="#111"), line_shape="vh",
                                 marker=dict(size=22, symbol="circle-open", color="#111", line=dict(width=2)),
                                 hoverinfo="skip"))
    # Fixed-width legend entries pack several to a row; sized by their text, a narrow chart (1024 px screen) stacks
    # them one per row over the x-axis title.
    fig.update_layout(title="Clean vs robust accuracy", xaxis_title="clean test accuracy",
                      yaxis_title="robust accuracy (PGD at the model's ε)", height=420,
                      **{**LAYOUT, "legend": {**LAYOUT["legend"], "entrywidth": 80, "entrywidthmode": "pixels",
                                              "y": -0.2, "font": {"size": 12}}})
    fig.update_xaxes(**percent_axis(data["clean acc"].to_numpy(float)))
    fig.update_yaxes(**percent_axis(data["robust acc"].to_numpy(float)))
    return fig


def percent_axis(values: np.ndarray) -> dict[str, Any]:
    """An accuracy axis from a little below the lowest value to 100 %, padded at both ends so markers on the edges
    (the Pareto ring is 22 px wide) are drawn whole; its ticks stay within [low, 100 %], so no "105 %"."""
    finite = values[np.isfinite(values)]
    low = max(0.0, float(finite.min()) - 0.05) if len(finite) else 0.0
    pad = 0.06 * (1.0 - low)
    step = next(s for s in (0.02, 0.05, 0.1, 0.2, 0.25) if (1.0 - low) / s <= 6)
    ticks = 1.0 - step * np.arange(int((1.0 - low) / step + 1e-9) + 1)
    return dict(range=[low - pad, 1.0 + pad], tickvals=ticks[::-1], tickformat=".0%", zeroline=False)


def training_curves(epochs: list[dict[str, Any]], title: str) -> go.Figure:
    """Loss (left axis) and clean / robust / FGSM accuracy (right axis) per epoch."""
    x = np.array([e["epoch"] for e in epochs])
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=np.array([e["loss"] for e in epochs]), name="training loss", yaxis="y2",
                             line=dict(color="#94a3b8", dash="dash")))
    for key, name, colour in (("clean_acc", "clean accuracy", "#2563eb"), ("robust_acc", "PGD robust accuracy",
                              "#c2410c"), ("fgsm_acc", "FGSM accuracy", "#0ea5e9")):
        if any(key in e for e in epochs):
            fig.add_trace(go.Scatter(x=x, y=np.array([e.get(key, np.nan) for e in epochs]), name=name,
                                     mode="lines+markers", line=dict(color=colour)))
    warned = [e["epoch"] for e in epochs if e.get("warning")]
    for epoch in warned:
        fig.add_vline(x=epoch, line=dict(color="#dc2626", dash="dot"), annotation_text="CO?")
    fig.update_layout(title=title, xaxis=dict(title="epoch", dtick=1 if len(x) <= 20 else None), height=360,
                      yaxis=dict(title="accuracy", range=[0, 1.02], tickformat=".0%"),
                      yaxis2=dict(title="loss", overlaying="y", side="right", showgrid=False, tickformat=".3g"),
                      **{**LAYOUT, "legend": {**LAYOUT["legend"], "y": -0.3}})
    return fig


def per_class_heatmap(epochs: list[dict[str, Any]], title: str) -> go.Figure | None:
    """Per-class PGD robust accuracy as a class × epoch heatmap (None before the first evaluated epoch)."""
    rows = [e for e in epochs if e.get("per_class_robust_acc")]
    if not rows:
        return None
    classes = list(rows[-1]["per_class_robust_acc"])
    z = np.array([[e["per_class_robust_acc"].get(c, np.nan) for e in rows] for c in classes], dtype=float)
    fig = go.Figure(go.Heatmap(z=z, x=np.array([e["epoch"] for e in rows]), y=np.array(classes, dtype=str),
                               zmin=0, zmax=1, colorscale="RdYlGn", colorbar=dict(title="robust acc"),
                               hovertemplate="class %{y}, epoch %{x}: %{z:.2f}<extra></extra>"))
    fig.update_layout(title=title, xaxis=dict(title="epoch", dtick=1 if len(rows) <= 20 else None),
                      yaxis_title="class", height=360,
                      **{k: v for k, v in LAYOUT.items() if k != "legend"})
    fig.update_yaxes(type="category")
    return fig
