"""Plotly chart builders. Every chart has a title and labelled axes; pages add a one-line caption."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from core.evaluation import pareto_front
from core.evaluation.protocol import HEADLINE_STEPS
from core.utils import round_step
from dashboard.components.labels import SHORT_METHOD_LABELS, label

# One colour per method on every chart of the dashboard (a plugin's method gets OTHER_METHOD_COLOUR).
METHOD_COLOURS = {"erm": "#64748b", "fgsm-rs": "#0ea5e9", "n-fgsm": "#6366f1", "pgd-at": "#c2410c",
                  "trades": "#16a34a", "mart": "#a16207", "dale": "#7c3aed", "dale-kl": "#db2777"}
OTHER_METHOD_COLOUR = "#a855f7"
# Shipped models are circles; a run trained or imported here is a diamond.
SHIPPED_SYMBOL, OWN_SYMBOL = "circle", "diamond"
# Points closer than this to another one (in pixels of a typical hub chart) are drawn again in a zoomed inset.
CROWDED_PX = 16.0
PLOT_PX = np.array([440.0, 250.0])
# Where the inset may go, in fractions of the plot area (its tick labels outside, left and below): top left first
# (no model is much more accurate under attack than on clean inputs, so that corner is usually empty), then the other
# corners; the first one free of points.
INSET_SPOTS = (((0.14, 0.52), (0.5, 0.96)), ((0.58, 0.97), (0.14, 0.56)), ((0.14, 0.52), (0.14, 0.56)))
# Primary above-left of its point, comparison below-left: the points sit near 100 % clean, so text goes left.
ROLE_TEXT_POSITIONS = ("top left", "bottom left", "middle left")
# Accuracy from 0 to 1 on a heatmap: Viridis reads the same to colour-blind eyes and in greyscale (red→green did
# not: a teacher's students could not tell the weak classes from the strong ones); yellow is high.
ACCURACY_SCALE = "Viridis"
LAYOUT = dict(template="plotly_white", margin=dict(l=60, r=20, t=50, b=90), font=dict(size=13),
              legend=dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0))
# Charts that slider moves redraw are built from plain dicts in one go.Figure call and without a template: plotly's
# make_subplots, add_trace / update_* calls, add_vline and template merging cost 30–100 ms per figure.
BASE = dict(font=dict(size=13), plot_bgcolor="white", paper_bgcolor="white", hoverlabel=dict(font_size=13))
GRID = dict(gridcolor="#e5e7eb", zerolinecolor="#cbd5e1")
LEGEND_BELOW = dict(orientation="h", yanchor="top", y=-0.18, xanchor="left", x=0)


def method_colour(method: str) -> str:
    return METHOD_COLOURS.get(method, OTHER_METHOD_COLOUR)


# For a second run of a method already shown in its own colour: none of these is a method's colour.
EXTRA_RUN_COLOURS = ("#0f766e", "#1e3a8a", "#b91c1c", "#ca8a04", "#4d7c0f", "#9d174d")


def run_colours(methods: Mapping[str, str]) -> dict[str, str]:
    """One colour per run (key → method), the same on every page: the first run of each method in its method's
    colour, as in the hub's scatter, and each further run of a method in a colour of its own."""
    colours, taken, extra = {}, set(), iter(EXTRA_RUN_COLOURS * 2)
    for key, method in methods.items():
        colour = method_colour(method)
        colours[key] = colour if colour not in taken else next(extra)
        taken.add(colours[key])
    return colours


def robust_measure(attacks: Iterable[Any]) -> tuple[str, str]:
    """What the robust accuracies of these runs measured, short (an axis title) and in words (a caption), from
    their final metrics' ``attack``: PGD-20 for models trained or imported here, the worst case over PGD and a
    probe for the shipped patch models (their axis said "PGD-20" beside a note that said otherwise)."""
    kinds = {str(a) for a in attacks if isinstance(a, str) and a}
    named = sorted((k for k in kinds if not k.startswith("worst of")),
                   key=lambda k: (not k.startswith("pgd-"), int(k[4:]) if k[4:].isdigit() else 0, k))
    worst = sorted(kinds - set(named))
    # An attack's name in capitals ("pgd-20" → PGD-20); a description ("worst of PGD-10 … and the probe") as it is.
    short = [k.upper() for k in named] + ["worst case"] * bool(worst)
    words = [k.upper() for k in named] + [f"the {k.replace('worst of', 'worst case of', 1)}" for k in worst]
    if not short:
        return f"PGD-{HEADLINE_STEPS}", f"PGD-{HEADLINE_STEPS}"
    return " or ".join(short), " or ".join(words)


def pareto_figure(table: pd.DataFrame, highlight: Mapping[str, str] | Sequence[str] = ()) -> go.Figure:
    """Clean vs robust accuracy of all runs with metrics, the Pareto front as a staircase. ``highlight`` maps run ids
    to a short label written next to their (larger) point, e.g. {id: "primary"}; a plain sequence of ids enlarges
    them without a label. Crowded points are drawn again in a zoomed inset."""
    roles = dict(highlight) if isinstance(highlight, Mapping) else dict.fromkeys(highlight, "")
    data = table.dropna(subset=["clean acc", "robust acc"])
    measure = robust_measure(data["attack"] if "attack" in data else ())[0]
    clean, robust = data["clean acc"].to_numpy(float), data["robust acc"].to_numpy(float)
    x_axis, y_axis = percent_axis(clean), percent_axis(robust)
    inset = _inset(clean, robust, x_axis["range"], y_axis["range"])
    in_inset = (np.zeros(len(data), bool) if inset is None else
                _inside(clean, robust, inset["xaxis2"]["range"], inset["yaxis2"]["range"]))
    fig = go.Figure()
    # The inset with its tick labels (left, below) and its title (above), in fractions of the plot.
    spot = None if inset is None else ((inset["xaxis2"]["domain"][0] - 40 / PLOT_PX[0], inset["xaxis2"]["domain"][1]),
                                       (inset["yaxis2"]["domain"][0] - 22 / PLOT_PX[1],
                                        inset["yaxis2"]["domain"][1] + 16 / PLOT_PX[1]))
    _add_points(fig, data, roles, "", np.where(in_inset, "", [roles.get(i, "") for i in data["id"]]),
                y_axis["range"], x_axis["range"], spot)
    if inset is not None:
        _add_points(fig, data, roles, "2", np.where(in_inset, [roles.get(i, "") for i in data["id"]], ""),
                    inset["yaxis2"]["range"])
    add_legend_keys(fig, data)
    # Fixed-width legend entries pack several to a row; sized by their text, a narrow chart (1024 px screen) stacks
    # them one per row over the x-axis title.
    fig.update_layout(title="Clean vs robust accuracy", height=440, xaxis=dict(title="clean test accuracy", **x_axis),
                      yaxis=dict(title=f"robust accuracy ({measure}, own ε)", **y_axis), **(inset or {}),
                      **{**LAYOUT, "legend": {**LAYOUT["legend"], "entrywidth": 96, "entrywidthmode": "pixels",
                                              "y": -0.2, "font": {"size": 12}}})
    return fig


def role_text_positions(data: pd.DataFrame, roles: Mapping[str, str], y_range: Sequence[float],
                        x_range: Sequence[float] | None = None, avoid: Sequence[Sequence[float]] | None = None
                        ) -> dict[str, str]:
    """Where each role's label goes: ROLE_TEXT_POSITIONS in order, but below a point in the top fifth of its axes
    and above one in the bottom fifth (plotly clips text at the axes' edge: TRADES as primary, at the top of the
    zoomed inset, lost its label). ``avoid`` is the inset's (x, y) domain on the main axes: a label that would run
    under it goes right of its point, or above or below it (an import at 97 % clean had its "primary" under the
    inset)."""
    positions: dict[str, str] = {}
    y = dict(zip(data["id"], data["robust acc"].to_numpy(float)))
    x = dict(zip(data["id"], data["clean acc"].to_numpy(float)))
    for i, run_id in enumerate(roles):
        position = ROLE_TEXT_POSITIONS[min(i, 2)]
        if run_id in y:
            height = float(_to_fraction(np.array(y[run_id]), y_range))
            if position.startswith("top") and height > 0.8:
                position = position.replace("top", "bottom")
            elif position.startswith("bottom") and height < 0.2:
                position = position.replace("bottom", "top")
            if position in positions.values():  # two labels on the same side of nearby points would overlap
                position = "middle left"
            if avoid is not None and x_range is not None:
                at = (float(_to_fraction(np.array(x[run_id]), x_range)), height)
                position = _clear_of(position, at, len(roles[run_id]), avoid)
        positions[run_id] = position
    return positions


def _label_box(position: str, at: tuple[float, float], chars: int) -> tuple[float, float, float, float]:
    """The fraction of the plot a label at ``position`` of a point takes: x0, x1, y0, y1 (11 px text, ≈ 6.5 px a
    character, on a typical hub chart of PLOT_PX)."""
    width, height = (chars * 6.5 + 14) / PLOT_PX[0], 18 / PLOT_PX[1]
    vertical, horizontal = position.split()
    x0 = {"left": at[0] - width, "right": at[0], "center": at[0] - width / 2}[horizontal]
    y0 = {"top": at[1], "bottom": at[1] - height, "middle": at[1] - height / 2}[vertical]
    return x0, x0 + width, y0, y0 + height


def _clear_of(position: str, at: tuple[float, float], chars: int, avoid: Sequence[Sequence[float]]) -> str:
    """``position`` when its label stays off the ``avoid`` box and inside the plot, else the first alternative
    that does (``position`` again when none does)."""
    vertical = position.split()[0]
    others = (f"{vertical} right", "top center", "bottom center", "top right", "bottom right")
    for candidate in dict.fromkeys((position, *others)):
        x0, x1, y0, y1 = _label_box(candidate, at, chars)
        under = x0 < avoid[0][1] and x1 > avoid[0][0] and y0 < avoid[1][1] and y1 > avoid[1][0]
        if not under and x0 >= 0 and x1 <= 1 and y0 >= 0 and y1 <= 1:
            return candidate
    return position


def _add_points(fig: go.Figure, data: pd.DataFrame, roles: dict[str, str], axes: str, text: np.ndarray,
                y_range: Sequence[float], x_range: Sequence[float] | None = None,
                avoid: Sequence[Sequence[float]] | None = None) -> None:
    """One trace per method (legend entries come from :func:`add_legend_keys`) and the Pareto staircase, on the main
    axes (``axes=""``) or the inset's (``"2"``, whose y range is ``y_range``); labels keep off ``avoid`` (see
    :func:`role_text_positions`)."""
    positions = role_text_positions(data, roles, y_range, x_range, avoid)
    text = pd.Series(text, index=data.index)
    for method, group in data.groupby("method"):
        colour = method_colour(str(method))
        fig.add_trace(go.Scatter(
            x=group["clean acc"].to_numpy(float), y=group["robust acc"].to_numpy(float), mode="markers+text",
            name=label(SHORT_METHOD_LABELS, str(method)), legendgroup=str(method), showlegend=False,
            xaxis=f"x{axes}", yaxis=f"y{axes}",
            # Explicit opacity: with per-point sizes plotly draws "bubbles" at 0.7, paler than the same method's
            # colour on the other charts.
            marker=dict(size=np.where(group["id"].isin(roles), 18, 11), color=colour, opacity=1.0,
                        symbol=np.where(group["source"] == "shipped", SHIPPED_SYMBOL, OWN_SYMBOL),
                        line=dict(width=1, color="white")),
            text=text[group.index].to_numpy(str), textfont=dict(size=11, color=colour),
            textposition=np.array([positions.get(i, "top left") for i in group["id"]]),
            customdata=np.stack([group["name"].to_numpy(str), group["ε"].to_numpy(float).astype(str)], axis=1),
            hovertemplate="%{customdata[0]}<br>clean %{x:.3f} · robust %{y:.3f} at ε=%{customdata[1]}"
                          "<extra></extra>"))
    if len(data):
        x, y = pareto_front(data["clean acc"].to_numpy(float), data["robust acc"].to_numpy(float))
        # A ring marks every Pareto-optimal model; the staircase needs two of them to be a line.
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers" if len(x) > 1 else "markers",
                                 name="Pareto-optimal", legendgroup="pareto", showlegend=not axes, legendrank=2000,
                                 xaxis=f"x{axes}", yaxis=f"y{axes}", line=dict(dash="dot", color="#111"),
                                 line_shape="vh", hoverinfo="skip",
                                 marker=dict(size=22, symbol="circle-open", color="#111", line=dict(width=2))))


def add_legend_keys(fig: go.Figure, data: pd.DataFrame) -> None:
    """Legend-only entries: a coloured circle per method, then the marker shapes when not every model is shipped."""
    nowhere = np.array([np.nan])
    for method in sorted(data["method"].unique()):
        fig.add_trace(go.Scatter(x=nowhere, y=nowhere, mode="markers", legendgroup=str(method),
                                 name=label(SHORT_METHOD_LABELS, str(method)),
                                 marker=dict(size=11, color=method_colour(str(method)))))
    if (data["source"] != "shipped").any():
        for symbol, name in ((SHIPPED_SYMBOL, "shipped"), (OWN_SYMBOL, "trained / imported")):
            fig.add_trace(go.Scatter(x=nowhere, y=nowhere, mode="markers", name=name, legendgroup=name,
                                     marker=dict(size=11, symbol=symbol, color="white",
                                                 line=dict(width=1.5, color="#334155"))))


def _to_fraction(values: np.ndarray, axis_range: Sequence[float]) -> np.ndarray:
    return (values - axis_range[0]) / (axis_range[1] - axis_range[0])


def _inside(x: np.ndarray, y: np.ndarray, x_range: Sequence[float], y_range: Sequence[float]) -> np.ndarray:
    return (x >= x_range[0]) & (x <= x_range[1]) & (y >= y_range[0]) & (y <= y_range[1])


def crowded_cluster(x: np.ndarray, y: np.ndarray, x_range: Sequence[float], y_range: Sequence[float]) -> np.ndarray:
    """Indices of the largest group of points that overlap on a typical chart (chained within CROWDED_PX); empty
    when no two points do."""
    pixels = np.stack([_to_fraction(x, x_range), _to_fraction(y, y_range)], axis=1) * PLOT_PX
    close = np.linalg.norm(pixels[:, None] - pixels[None], axis=-1) < CROWDED_PX
    best: list[int] = []
    unseen = set(range(len(x)))
    while unseen:
        group, todo = set(), [unseen.pop()]
        while todo:
            i = todo.pop()
            group.add(i)
            todo += [j for j in np.flatnonzero(close[i]) if j in unseen]
            unseen -= set(todo)
        best = sorted(group) if len(group) > len(best) else best
    return np.array(best if len(best) > 1 else [], dtype=int)


def _zoom_format(axis_range: Sequence[float]) -> str:
    return ".0%" if axis_range[1] - axis_range[0] >= 0.05 else ".1%"


def _inset(x: np.ndarray, y: np.ndarray, x_range: Sequence[float], y_range: Sequence[float]) -> dict | None:
    """Axes of a zoomed inset over the crowded points, in the first corner of the plot free of points (None when no
    points overlap or no corner is free), and a dotted box on the main axes around the zoomed area."""
    cluster = crowded_cluster(x, y, x_range, y_range)
    if not len(cluster):
        return None
    ranges = []
    for values in (x[cluster], y[cluster]):
        # At least 3 points of accuracy wide, so that markers 1 point apart are well apart; the spread plus a fifth
        # of it on each side, room for the Pareto ring (22 px) of a point on the edge.
        half = max(0.7 * (values.max() - values.min()), 0.015)
        low, high = (values.max() + values.min()) / 2 - half, (values.max() + values.min()) / 2 + half
        # Shifted down rather than running past 100 %, with room for the ring of a point at 100 %.
        shift = max(0.0, high - 1.0 - 0.25 * half)
        ranges.append([low - shift, high - shift])
    fx, fy = _to_fraction(x, x_range), _to_fraction(y, y_range)
    box_x, box_y = _to_fraction(np.array(ranges[0]), x_range), _to_fraction(np.array(ranges[1]), y_range)
    for spot_x, spot_y in INSET_SPOTS:
        margin = 0.06
        points_in = _inside(fx, fy, (spot_x[0] - margin, spot_x[1] + margin), (spot_y[0] - margin, spot_y[1] + margin))
        overlaps_box = (box_x[0] < spot_x[1] and box_x[1] > spot_x[0] and box_y[0] < spot_y[1] and box_y[1] > spot_y[0])
        if not points_in.any() and not overlaps_box:
            break
    else:
        return None
    ticks = dict(nticks=4, showline=True, mirror=True, linecolor="#94a3b8", tickfont=dict(size=11), showgrid=True,
                 gridcolor="#eef2f7", zeroline=False)
    return dict(xaxis2=dict(domain=list(spot_x), range=ranges[0], anchor="y2", tickformat=_zoom_format(ranges[0]),
                            **ticks),
                yaxis2=dict(domain=list(spot_y), range=ranges[1], anchor="x2", tickformat=_zoom_format(ranges[1]),
                            **ticks),
                shapes=[dict(type="rect", xref="x", yref="y", x0=ranges[0][0], x1=ranges[0][1], y0=ranges[1][0],
                             y1=ranges[1][1], line=dict(color="#94a3b8", width=1, dash="dot"))],
                annotations=[dict(text="zoom of the dotted box", xref="paper", yref="paper", showarrow=False,
                                  x=spot_x[0], y=spot_y[1], xanchor="left", yanchor="bottom",
                                  font=dict(size=11, color="#64748b"))])


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
    """Clean / robust / FGSM accuracy (left axis) and the training loss (right axis) per epoch. The loss axis runs
    from 0 to a round bound in five round steps, so its ticks sit on the accuracy grid's lines (0, 20 %, … 100 %)
    instead of plotly's own ticks between them (2.05, 1.70, 0.995, …)."""
    x = np.array([e["epoch"] for e in epochs])
    losses = np.array([e["loss"] for e in epochs], dtype=float)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=losses, name="training loss", yaxis="y2",
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
                      yaxis2=dict(title="loss", overlaying="y", side="right", showgrid=False, **loss_axis(losses)),
                      **{**LAYOUT, "legend": {**LAYOUT["legend"], "y": -0.3}})
    return fig


def loss_axis(losses: np.ndarray) -> dict[str, Any]:
    """Range and ticks for a loss axis beside an accuracy axis on [0, 1.02]: [0, 1.02·U] with ticks every U/5,
    U/5 the smallest round step (1, 2, 2.5 or 5 × 10^k) for which U reaches the largest finite loss. Without a
    finite positive loss, plotly's own axis."""
    finite = losses[np.isfinite(losses)]
    if not len(finite) or finite.max() <= 0:
        return {"tickformat": ".3g"}
    step = round_step(float(finite.max()), 5)
    return {"range": [0, 5.1 * step], "tick0": 0, "dtick": step, "tickformat": "~g"}


def per_class_heatmap(epochs: list[dict[str, Any]], title: str) -> go.Figure | None:
    """Per-class PGD robust accuracy as a class × epoch heatmap (None before the first evaluated epoch)."""
    rows = [e for e in epochs if e.get("per_class_robust_acc")]
    if not rows:
        return None
    classes = list(rows[-1]["per_class_robust_acc"])
    z = np.array([[e["per_class_robust_acc"].get(c, np.nan) for e in rows] for c in classes], dtype=float)
    # Drawn as the Robustness page's class × ε heatmap: class 0 at the top, percent on the colour bar.
    fig = go.Figure(go.Heatmap(z=z, x=np.array([e["epoch"] for e in rows]), y=np.array(classes, dtype=str),
                               zmin=0, zmax=1, colorscale=ACCURACY_SCALE,
                               colorbar=dict(title=dict(text="robust"), tickformat=".0%"),
                               hovertemplate="class %{y}, epoch %{x}: %{z:.1%}<extra></extra>"))
    fig.update_layout(title=title, xaxis=dict(title="epoch", dtick=1 if len(rows) <= 20 else None),
                      yaxis_title="class", height=360,
                      **{k: v for k, v in LAYOUT.items() if k != "legend"})
    fig.update_yaxes(type="category", autorange="reversed")
    return fig
