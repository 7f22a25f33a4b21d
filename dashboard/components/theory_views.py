"""Figures of the Theory Lab: U(t) and V(t) per class, accuracy over t, and the ⟨w_{j,r}, x_p⟩ heatmap."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from core.theory.views import seconds_left
from dashboard.components.lab_views import BASE, GRID

CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


# Plotly's toolbar (modebar) shows over the top ~30 px of a chart on hover: titles sit below that strip.
MODEBAR_PX = 30


def _title(text: str) -> dict[str, Any]:
    return dict(text=text, yref="container", y=1.0, yanchor="top", pad=dict(t=MODEBAR_PX))


def _layout(title: str, y_title: str, height: int = 330, **extra: Any) -> dict[str, Any]:
    return dict(BASE, title=_title(title), height=height + MODEBAR_PX,
                margin=dict(l=60, r=10, t=50 + MODEBAR_PX, b=45),
                xaxis=dict(GRID, title=dict(text="iteration t")), yaxis=dict(GRID, title=dict(text=y_title)),
                legend=dict(font=dict(size=11)), **extra)


def features_figure(history: Sequence[dict[str, Any]], k: int, title: str, y_max: float) -> go.Figure:
    """U_j(t) (solid) and V_j(t) (dashed) per class j: how much each neuron group has aligned with u_j and v_j."""
    t = np.array([h["t"] for h in history])
    data = []
    for j in range(k):
        colour = CLASS_COLOURS[j % len(CLASS_COLOURS)]
        data.append(dict(type="scatter", x=t, y=np.array([h[f"U_{j}"] for h in history]), mode="lines",
                         name=f"U_{j} (robust)", line=dict(color=colour, width=2.5)))
        data.append(dict(type="scatter", x=t, y=np.array([h[f"V_{j}"] for h in history]), mode="lines",
                         name=f"V_{j} (non-robust)", line=dict(color=colour, dash="dash")))
    layout = _layout(title, "max_r ⟨w_{j,r}, feature⟩")
    layout["yaxis"]["range"] = [min(0.0, *(d["y"].min() for d in data if len(d["y"]))), y_max]
    return go.Figure(data=data, layout=layout)


def accuracy_figure(history: Sequence[dict[str, Any]], title: str, chance: float) -> go.Figure:
    t = np.array([h["t"] for h in history])
    series = (("clean_acc", "clean", "solid", "#0f172a"), ("robust_acc_pgd", "robust (PGD from x)", "dash", "#c2410c"),
              ("robust_acc", "robust (worst case)", "dot", "#7c3aed"))
    data = [dict(type="scatter", x=t, y=np.array([h[key] for h in history]), mode="lines", name=name,
                 line=dict(color=colour, dash=dash)) for key, name, dash, colour in series]
    data.append(dict(type="scatter", x=[0, max(int(t.max()) if len(t) else 1, 1)], y=[chance, chance], mode="lines",
                     name="chance", line=dict(color="#94a3b8", dash="dot", width=1), hoverinfo="skip"))
    layout = _layout(title, "test accuracy")
    layout["yaxis"].update(range=[0, 1.02], tickformat=".0%")
    return go.Figure(data=data, layout=layout)


ROLE_COLOURS = {1: "#16a34a", 2: "#c2410c", 0: "#94a3b8"}


def heatmap_figure(heat: dict[str, Any], title: str) -> go.Figure:
    """Rows: class j · neuron r; columns: the example's patches, robust first, then non-robust, then noise."""
    z = heat["z"]
    limit = float(np.abs(z).max()) or 1.0
    columns = np.arange(z.shape[1])
    data = [dict(type="heatmap", z=z, x=columns, y=heat["rows"], colorscale="RdBu_r", zmid=0, zmin=-limit,
                 zmax=limit, customdata=np.broadcast_to(heat["patches"], z.shape),
                 hovertemplate="%{y}, patch %{customdata}: %{z:.3f}<extra></extra>",
                 colorbar=dict(title=dict(text="⟨w, x_p⟩")))]
    shapes, annotations = [], []
    roles, labels = heat["roles"], heat["labels"]
    for role in (1, 2, 0):
        where = np.nonzero(roles == role)[0]
        if not len(where):
            continue
        shapes.append(dict(type="rect", xref="x", yref="paper", x0=where[0] - 0.5, x1=where[-1] + 0.5, y0=1.0,
                           y1=1.04, fillcolor=ROLE_COLOURS[role], line=dict(width=0)))
        # A narrow group at either end (the lone robust patch) is labelled outward, clear of its neighbour's label.
        narrow = len(where) < 0.2 * len(roles)
        anchor, x = "center", (where[0] + where[-1]) / 2
        if narrow and where[0] == 0:
            anchor, x = "right", where[-1] + 0.5
        elif narrow and where[-1] == len(roles) - 1:
            anchor, x = "left", where[0] - 0.5
        annotations.append(dict(text=f"{labels[role]} ({len(where)})", x=x, xanchor=anchor, y=1.05, xref="x",
                                yref="paper", showarrow=False, yanchor="bottom", font=dict(size=11)))
    layout = dict(BASE, title=_title(title), height=400, margin=dict(l=120, r=10, t=70 + MODEBAR_PX, b=40),
                  # a fixed range: autorange would widen the axis to fit the role labels (annotations count there)
                  xaxis=dict(title=dict(text="patch (sorted by role)"), showgrid=False,
                             range=[-0.5, len(roles) - 0.5]),
                  yaxis=dict(autorange="reversed", tickfont=dict(size=10)), shapes=shapes, annotations=annotations)
    return go.Figure(data=data, layout=layout)


def duration_text(seconds: float) -> str:
    """A rough duration: to 5 s under 90 s, to half a minute from there."""
    if seconds < 90:
        return f"{max(5, round(seconds / 5) * 5):.0f} s"
    return f"{round(seconds / 30) / 2:g} min"


def progress_text(status: str, history: Sequence[dict[str, Any]], iterations: int) -> str:
    """The progress bar's line: status, iteration, and while running the time left at the recent pace."""
    text = f"{status} · t = {history[-1]['t'] if history else 0} of {iterations}"
    if status != "running":
        return text
    left = seconds_left(history, iterations)
    return text + (" · timing the first iterations…" if left is None else f" · about {duration_text(left)} left")
