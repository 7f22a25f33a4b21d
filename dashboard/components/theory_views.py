"""Figures of the Theory Lab: U(t) and V(t) per class, accuracy over t, and the ⟨w_{j,r}, x_p⟩ heatmap."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.theory.views import seconds_left
from dashboard.components.charts import BASE, GRID, LEGEND_BELOW

CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


# Plotly's toolbar (modebar) shows over the top ~30 px of a chart on hover: titles sit below that strip.
MODEBAR_PX = 30


def _title(text: str) -> dict[str, Any]:
    return dict(text=text, yref="container", y=1.0, yanchor="top", pad=dict(t=MODEBAR_PX))


TITLE_PX = 30  # the title's own line, under the toolbar strip
LEGEND_GAP_PX = 62  # tick labels and the x-axis title, between the plot and the legend below it
X_TITLE = "iteration t"


def _layout(title: str, y_title: str, height: int = 330, **extra: Any) -> dict[str, Any]:
    # The legend sits below the plot, wrapping as the width needs (plotly widens the bottom margin for it): at the
    # right it took half of a chart's width in a 1024 px window. Its offset is in pixels below the x-axis title.
    top, bottom = MODEBAR_PX + TITLE_PX, 30
    plot_px = height + MODEBAR_PX - top - bottom
    return dict(BASE, title=_title(title), height=height + MODEBAR_PX, margin=dict(l=60, r=10, t=top, b=bottom),
                xaxis=dict(GRID, title=dict(text=X_TITLE, standoff=6)), yaxis=dict(GRID, title=dict(text=y_title)),
                legend=dict(LEGEND_BELOW, y=-LEGEND_GAP_PX / plot_px, font=dict(size=11)), **extra)


# Plotly renders HTML sub/superscripts in titles and legends, not TeX: "w_{j,r}" showed its braces.
FEATURE_AXIS = "max<sub>r</sub> ⟨w<sub>j,r</sub>, feature⟩"
FEATURE_TITLE = "Feature alignment U<sub>j</sub>(t), V<sub>j</sub>(t)"
ACCURACY_TITLE = "Test accuracy over iterations t"
HEATMAP_TITLE = "⟨w<sub>j,r</sub>, x<sub>p</sub>⟩ on the first test input"


def finite_max(history: Sequence[dict[str, Any]], k: int) -> float:
    """The largest finite U, V, U_j or V_j in ``history`` (0 if none): a diverged run's NaN must not spread."""
    keys = ["U", "V", *(f"U_{j}" for j in range(k)), *(f"V_{j}" for j in range(k))]
    values = np.array([[h[key] for key in keys] for h in history], dtype=float).ravel()
    values = values[np.isfinite(values)]
    return float(values.max()) if len(values) else 0.0


def features_figure(history: Sequence[dict[str, Any]], k: int, title: str, y_max: float) -> go.Figure:
    """U_j(t) (solid) and V_j(t) (dashed) per class j: how much each neuron group has aligned with u_j and v_j."""
    t = np.array([h["t"] for h in history])
    data = []
    for j in range(k):
        colour = CLASS_COLOURS[j % len(CLASS_COLOURS)]
        data.append(dict(type="scatter", x=t, y=np.array([h[f"U_{j}"] for h in history]), mode="lines",
                         name=f"U<sub>{j}</sub> robust", line=dict(color=colour, width=2.5)))
        data.append(dict(type="scatter", x=t, y=np.array([h[f"V_{j}"] for h in history]), mode="lines",
                         name=f"V<sub>{j}</sub> non-robust", line=dict(color=colour, dash="dash")))
    layout = _layout(title, FEATURE_AXIS, height=380)
    lows = [float(np.nanmin(d["y"])) for d in data if len(d["y"]) and np.isfinite(d["y"]).any()]
    layout["yaxis"]["range"] = [min([0.0, *lows]), y_max]
    return go.Figure(data=data, layout=layout)


def accuracy_figure(history: Sequence[dict[str, Any]], title: str, chance: float) -> go.Figure:
    t = np.array([h["t"] for h in history])
    series = (("clean_acc", "clean", "solid", "#0f172a"), ("robust_acc_pgd", "robust (PGD from x)", "dash", "#c2410c"),
              ("robust_acc", "robust (worst case)", "dot", "#7c3aed"))
    data = [dict(type="scatter", x=t, y=np.array([h[key] for h in history]), mode="lines", name=name,
                 line=dict(color=colour, dash=dash)) for key, name, dash, colour in series]
    data.append(dict(type="scatter", x=[0, max(int(t.max()) if len(t) else 1, 1)], y=[chance, chance], mode="lines",
                     name="chance", line=dict(color="#94a3b8", dash="dot", width=1), hoverinfo="skip"))
    layout = _layout(title, "test accuracy", height=350)
    layout["yaxis"].update(range=[0, 1.02], tickformat=".0%")
    return go.Figure(data=data, layout=layout)


ROLE_COLOURS = {1: "#16a34a", 2: "#c2410c", 0: "#94a3b8"}
MIN_GROUP_SHARE = 0.12  # a role group narrower than this share of the x axis is widened to it


def column_edges(roles: np.ndarray) -> np.ndarray:
    """Column edges for the heatmap, roles sorted robust, non-robust, noise: every patch is one unit wide, except
    that a role group with few patches (the lone robust one: 1 px at 64 columns) is widened to MIN_GROUP_SHARE of
    the patch count, so that each group is visible at any width."""
    widths = np.ones(len(roles))
    floor = MIN_GROUP_SHARE * len(roles)
    for role in (1, 2, 0):
        where = roles == role
        if where.any():
            widths[where] = max(1.0, floor / int(where.sum()))
    return np.concatenate([[0.0], np.cumsum(widths)])


SATURATE_PERCENTILE = 99  # a panel's colours span ± this percentile of its |⟨w, x_p⟩|; larger values saturate
ROW_PX = 16  # per heatmap row: room for 11 px labels, readable on a projector


def panel_limit(z: np.ndarray) -> float:
    """A panel's symmetric colour range: the SATURATE_PERCENTILE-th percentile of its finite |values|. AT's one
    robust cell (≈ 4.6) set the range and left its ±0.16 non-robust rows, and all of ST's panel, white."""
    values = np.abs(np.asarray(z, dtype=float)).ravel()
    values = values[np.isfinite(values)]
    return float(np.percentile(values, SATURATE_PERCENTILE)) if len(values) else 0.0


def _colour_bar_title(z: np.ndarray, limit: float) -> str:
    top = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 0.0
    text = f"⟨w, x<sub>p</sub>⟩<br>±{limit:.2g}"
    return text + (f"<br>(max {top:.2g}:<br>saturated)" if top > 1.05 * limit else "")


def heatmap_figure(heats: dict[str, dict[str, Any] | None], title: str) -> go.Figure:
    """One heatmap per run (``heats``: panel name → ``patch_heatmap`` output, None while a run has no weights yet),
    stacked, each with its own symmetric colour range (``panel_limit``) and bar stating it: one shared range let
    AT's largest weight wash out both panels. Rows: class j · neuron r; columns: the example's patches, robust
    first, then non-robust, then noise."""
    names = list(heats)
    drawn = [h for h in heats.values() if h is not None]
    first = drawn[0] if drawn else None
    spacing = 0.06
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=spacing)
    axes = {}
    span = (1 - spacing * (len(names) - 1)) / len(names)
    for row, name in enumerate(names, start=1):
        heat = heats[name]
        if heat is None:
            continue
        axis = "coloraxis" if row == 1 else f"coloraxis{row}"
        z = np.asarray(heat["z"], dtype=float)
        limit = panel_limit(z) or 1.0
        # each panel's bar spans its own row (rows run top to bottom)
        top = 1 - (row - 1) * (span + spacing)
        axes[axis] = dict(colorscale="RdBu_r", cmid=0, cmin=-limit, cmax=limit,
                          colorbar=dict(title=dict(text=_colour_bar_title(z, limit), font=dict(size=12)),
                                        thickness=14, y=top - span / 2, len=span, yanchor="middle",
                                        tickfont=dict(size=11)))
        fig.add_trace(go.Heatmap(z=z, x=column_edges(heat["roles"]), y=heat["rows"], coloraxis=axis,
                                 customdata=np.broadcast_to(heat["patches"], z.shape), name=name,
                                 hovertemplate=f"{name}<br>%{{y}}, patch %{{customdata}}: %{{z:.3f}}<extra></extra>"),
                      row=row, col=1)
        fig.update_yaxes(autorange="reversed", tickfont=dict(size=11), title=dict(text=name, font=dict(size=13)),
                         row=row, col=1)
    shapes, annotations = [], []
    if first is not None:
        roles, labels, edges = first["roles"], first["labels"], column_edges(first["roles"])
        for role in (1, 2, 0):
            where = np.nonzero(roles == role)[0]
            if not len(where):
                continue
            x0, x1 = edges[where[0]], edges[where[-1] + 1]
            shapes.append(dict(type="rect", xref="x", yref="paper", x0=x0, x1=x1, y0=1.0, y1=1.03,
                               fillcolor=ROLE_COLOURS[role], line=dict(width=0)))
            annotations.append(dict(text=f"{labels[role]} ({len(where)})", x=(x0 + x1) / 2, xanchor="center",
                                    y=1.035, xref="x", yref="paper", showarrow=False, yanchor="bottom",
                                    font=dict(size=11)))
        fig.update_xaxes(range=[0, edges[-1]])
    rows = max((len(h["rows"]) for h in drawn), default=16)
    fig.update_layout(BASE, title=_title(title), height=140 + MODEBAR_PX + len(names) * (60 + ROW_PX * rows),
                      margin=dict(l=170, r=10, t=70 + MODEBAR_PX, b=50), shapes=shapes, annotations=annotations,
                      **axes)
    # Narrow role groups are widened (column_edges), so the axis shows no patch numbers: hover gives them.
    fig.update_xaxes(showticklabels=False, showgrid=False)
    fig.update_xaxes(title=dict(text="patches sorted by role (hover: patch number)"), row=len(names), col=1)
    return fig


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
