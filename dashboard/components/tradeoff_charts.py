"""Charts of the Trade-off Explorer: worst-class vs mean robustness, training curves with ρ, ν, per-class bars."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.components.charts import LAYOUT, METHOD_COLOURS

EXTRA_COLOURS = {"mart": "#a16207", "dale": "#7c3aed", "dale-kl": "#db2777"}
PALETTE = ("#c2410c", "#2563eb", "#16a34a", "#7c3aed", "#64748b", "#db2777")


def method_colour(method: str) -> str:
    return {**METHOD_COLOURS, **EXTRA_COLOURS}.get(method, "#a855f7")


def class_table(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run with per-class robust accuracy: mean over classes and the worst class."""
    rows = []
    for run in runs:
        per_class = (run.get("final_metrics") or {}).get("per_class_robust_acc") or {}
        if not per_class:
            continue
        worst = min(per_class, key=per_class.get)
        rows.append({"id": run["id"], "name": run["name"], "method": run["method"],
                     "mean": float(np.mean(list(per_class.values()))), "worst": float(per_class[worst]),
                     "worst class": worst})
    return pd.DataFrame(rows, columns=["id", "name", "method", "mean", "worst", "worst class"])


def worst_vs_mean(table: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    for method, group in table.groupby("method"):
        fig.add_trace(go.Scatter(
            x=group["mean"].to_numpy(float), y=group["worst"].to_numpy(float), mode="markers", name=str(method),
            marker=dict(size=13, color=method_colour(str(method)), line=dict(width=1, color="white")),
            text=group["name"].to_numpy(str), customdata=group["worst class"].to_numpy(str),
            hovertemplate="%{text}<br>mean %{x:.1%} · worst class %{customdata}: %{y:.1%}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="worst = mean",
                             line=dict(dash="dot", color="#94a3b8"), hoverinfo="skip"))
    lo = float(min(table["worst"].min(), table["mean"].min())) if len(table) else 0.0
    fig.update_layout(title="Worst class vs mean robust accuracy", xaxis_title="mean per-class robust accuracy",
                      yaxis_title="robust accuracy of the worst class", height=420, **LAYOUT)
    fig.update_xaxes(range=[max(0.0, lo - 0.05), 1.01], tickformat=".0%")
    fig.update_yaxes(range=[max(0.0, lo - 0.05), 1.01], tickformat=".0%")
    return fig


def accuracy_curves(histories: dict[str, list[dict[str, Any]]]) -> go.Figure:
    """Clean (solid), PGD (dashed) and FGSM (dotted, where recorded) test accuracy over epochs, per run."""
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        colour = PALETTE[i % len(PALETTE)]
        epochs = [h["epoch"] for h in history]
        for key, dash, label in (("clean_acc", "solid", "clean"), ("robust_acc", "dash", "PGD"),
                                 ("fgsm_acc", "dot", "FGSM")):
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines", name=f"{label} · {name}",
                                         line=dict(color=colour, dash=dash)))
    fig.update_layout(title="Test accuracy over training", xaxis_title="epoch", yaxis_title="accuracy",
                      height=400, **LAYOUT)
    fig.update_yaxes(tickformat=".0%")
    return fig


def loss_curves(histories: dict[str, list[dict[str, Any]]], rho: dict[str, float]) -> go.Figure:
    """ℓ_nom (solid) and ℓ_ro (dashed) per epoch, with a dotted line at each DALE run's ρ."""
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        colour = PALETTE[i % len(PALETTE)]
        epochs = [h["epoch"] for h in history]
        for key, dash, label in (("loss_nom", "solid", "ℓ_nom (clean)"), ("loss_ro", "dash", "ℓ_ro (robust)")):
            values = [h.get(key) for h in history]
            if any(v is not None for v in values):
                fig.add_trace(go.Scatter(x=epochs, y=values, mode="lines", name=f"{label} · {name}",
                                         line=dict(color=colour, dash=dash)))
        if name in rho:
            fig.add_hline(y=rho[name], line=dict(color=colour, dash="dot", width=1.5),
                          annotation_text=f"ρ = {rho[name]:g}", annotation_position="top left")
    fig.update_layout(title="Clean and robust training loss", xaxis_title="epoch",
                      yaxis_title="training loss (mean per epoch)", height=400, **LAYOUT)
    return fig


def nu_curves(histories: dict[str, list[dict[str, Any]]]) -> go.Figure:
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        values = [h.get("nu") for h in history]
        if any(v is not None for v in values):
            fig.add_trace(go.Scatter(x=[h["epoch"] for h in history], y=values, mode="lines+markers", name=name,
                                     line=dict(color=PALETTE[i % len(PALETTE)])))
    fig.update_layout(title="Dual variable ν (weight of the clean loss)", xaxis_title="epoch",
                      yaxis_title="ν at the end of the epoch", height=400, **LAYOUT)
    return fig


def per_class_bars(runs: dict[str, dict[str, float]], eps_label: str) -> go.Figure:
    fig = go.Figure()
    for i, (name, per_class) in enumerate(runs.items()):
        classes = list(per_class)
        fig.add_trace(go.Bar(x=classes, y=[per_class[c] for c in classes], name=name,
                             marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate="class %{x}: %{y:.1%}<extra>" + name + "</extra>"))
    fig.update_layout(title="Per-class robust accuracy", xaxis_title="class",
                      yaxis_title=f"robust accuracy ({eps_label})", barmode="group", height=400, **LAYOUT)
    fig.update_xaxes(type="category")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    return fig
