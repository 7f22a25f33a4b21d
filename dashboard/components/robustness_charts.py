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

from dashboard.components.charts import ACCURACY_SCALE, BASE, GRID, LEGEND_BELOW

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


KEY_COLOUR = "#111827"  # near black: the slate ERM line (#64748b) and the keys were hard to tell apart
LEGEND_ROW_PX = 22


def curve_figure(curves: Sequence[dict], eps: float, norm: str, colours: Sequence[str] | None = None,
                 scale: str = "image scale 0–1") -> go.Figure:
    """Robust accuracy vs ε: per model the minimal-norm curve (line), PGD-10 checks and the worst case at ε (a star,
    left out where an entry's ``worst`` is None), in ``colours`` (one per entry; else the palette's); ``scale``
    says in what units ε is (toy data is not an image in 0–1).

    The legend names each model once (its colour) and each mark once, in a neutral colour: three entries per model
    came to 12 rows' worth with four models and ran over the x-axis. It hangs from the bottom of the figure, one
    entry to a row (a model's marks share its legend group, so clicking it hides them all, and plotly puts each
    group on a row of its own anyway), with the bottom margin grown to hold its rows."""
    data, nowhere = [], np.array([np.nan])
    for i, c in enumerate(curves):
        colour = colours[i] if colours is not None else PALETTE[i % len(PALETTE)]
        group = f"model {i}"
        data.append(dict(type="scatter", x=c["curve"]["eps"].to_numpy(), y=c["curve"]["robust_acc"].to_numpy(),
                         mode="lines", name=c["name"], legendgroup=group, line=dict(color=colour, width=2.5),
                         hovertemplate=f"{c['curve_label']}, ε=%{{x:.3f}}: %{{y:.1%}}<extra>{c['name']}</extra>"))
        data.append(dict(type="scatter", x=c["checks"]["eps"].to_numpy(), y=c["checks"]["robust_acc"].to_numpy(),
                         mode="markers", name=f"{c['name']} · PGD-10", legendgroup=group, showlegend=False,
                         marker=dict(color=colour, size=9, symbol="circle-open"),
                         hovertemplate=f"PGD-10 ε=%{{x:.3f}}: %{{y:.1%}}<extra>{c['name']}</extra>"))
        if c["worst"] is None:  # the attacks at ε are not computed yet: no star
            continue
        data.append(dict(type="scatter", x=np.array([eps]), y=np.array([c["worst"]]), mode="markers",
                         name=f"{c['name']} · worst case at ε", legendgroup=group, showlegend=False,
                         marker=dict(color=colour, size=15, symbol="star"),
                         hovertemplate=f"worst case ε=%{{x:.3f}}: %{{y:.1%}}<extra>{c['name']}</extra>"))
    marks = [dict(mode="lines", name=curves[0]["curve_label"] if curves else "minimal-norm run",
                  line=dict(color=KEY_COLOUR, width=2.5)),
             dict(mode="markers", name="PGD-10 check", marker=dict(color=KEY_COLOUR, size=9, symbol="circle-open"))]
    if any(c["worst"] is not None for c in curves):
        marks.append(dict(mode="markers", name="worst case per point at ε",
                          marker=dict(color=KEY_COLOUR, size=13, symbol="star")))
    for j, mark in enumerate(marks):
        data.append(dict(type="scatter", x=nowhere, y=nowhere, legendgroup="marks", hoverinfo="skip",
                         legendgrouptitle=dict(text="marks (every model)") if j == 0 else None, **mark))
    rows = len(curves) + 1 + len(marks)
    layout = _layout("Robust accuracy vs ε", 400 + LEGEND_ROW_PX * rows,
                     _axis(f"ε ({NORM_LABEL.get(norm, norm)}, {scale})"),
                     _axis("robust accuracy", range=[-0.02, 1.02], tickformat=".0%"),
                     margin={**MARGIN, "b": 70 + LEGEND_ROW_PX * rows},
                     legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left",
                                 entrywidth=1, entrywidthmode="fraction", tracegroupgap=0),
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
    data = [dict(type="heatmap", z=matrix.to_numpy(float), x=eps, y=np.array(matrix.index), colorscale=ACCURACY_SCALE,
                 zmin=0, zmax=1, colorbar=dict(title=dict(text="robust"), tickformat=".0%"),
                 hovertemplate="class %{y}, ε=%{x:.3g}: %{z:.1%}<extra></extra>")]
    return _figure(data, _layout("Robust accuracy per class and ε", 380, _axis("ε", tickangle=0),
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


# Directions a class label may take from its dot, first choice first (y up): beside the dot, then the same
# directions further out with a thin line to the dot, for dots too close together to tell whose label is beside them.
LABEL_DIRECTIONS = ((0, 1), (0, -1), (1, 0), (-1, 0), (0.8, 0.8), (-0.8, 0.8), (0.8, -0.8), (-0.8, -0.8))
# The plot area of the narrowest half-page chart (a 1280 px screen), in pixels: labels apart there are further apart
# on a wider screen (the height is fixed). A label takes about 8 px a character and 16 px of height, a dot 12 px.
LABEL_PLOT_PX, CHAR_PX, LABEL_PX, DOT_PX, LINE_PX = (300.0, 240.0), 8.0, 16.0, 12.0, 22.0
# Pixels a label keeps clear of another dot; the cost (in px² of overlap) of a label that reads as another dot's
# (another dot closer to it than OWN_MARGIN times its own) or whose line passes over another dot; the cost of a line.
CLEAR_PX, AMBIGUOUS_COST, OWN_MARGIN, LINE_COST = 4.0, 200.0, 1.5, 60.0
# More classes than this are not labelled (hover names them): the labels could not be read, and placing 100 of them
# takes ~70 ms on every rerun of the page.
MAX_LABELLED = 20


def _overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Areas shared by the box ``a`` (x0, y0, x1, y1) and each box of ``b`` (n × 4)."""
    w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    return w * h


def plot_pixels(x: np.ndarray, y: np.ndarray, x_range: Sequence[float], y_range: Sequence[float]) -> np.ndarray:
    """Points (n × 2) in pixels of :data:`LABEL_PLOT_PX`, y up."""
    return np.stack([(np.asarray(x, float) - x_range[0]) / (x_range[1] - x_range[0]) * LABEL_PLOT_PX[0],
                     (np.asarray(y, float) - y_range[0]) / (y_range[1] - y_range[0]) * LABEL_PLOT_PX[1]], axis=1)


def _candidates(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Offsets (k × 2, px, y up) of a label's centre from its dot, and whether each needs a line to the dot."""
    half = np.array([CHAR_PX * len(text) / 2, LABEL_PX / 2])
    beside = np.array([np.array(d) * (DOT_PX / 2 + half + 1) for d in LABEL_DIRECTIONS])
    away = beside + np.array(LABEL_DIRECTIONS) * LINE_PX
    return np.vstack([beside, away]), np.repeat([False, True], len(LABEL_DIRECTIONS))


def _box(centre: np.ndarray, text: str) -> np.ndarray:
    half = np.array([CHAR_PX * len(text) / 2, LABEL_PX / 2])
    return np.concatenate([centre - half, centre + half])


def _near_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of each point to the segment a–b."""
    t = np.clip(((points - a) @ (b - a)) / max(float((b - a) @ (b - a)), 1e-9), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * (b - a)), axis=1)


def label_offsets(x: np.ndarray, y: np.ndarray, text: Sequence[str], x_range: Sequence[float],
                  y_range: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per dot, where its label goes (offset in pixels, y up) and whether a line joins it to its dot, so that no label
    covers another dot or label, leaves the plot, or sits as near another dot as its own: greedily, the most crowded
    dots first, each taking the cheapest candidate of :func:`_candidates` (beside the dot before a line)."""
    centres = plot_pixels(x, y, x_range, y_range)
    dots = np.concatenate([centres - DOT_PX / 2 - CLEAR_PX, centres + DOT_PX / 2 + CLEAR_PX], axis=1)
    area = np.array([[0.0, 0.0, *LABEL_PLOT_PX]])
    crowd = (np.linalg.norm(centres[:, None] - centres[None], axis=-1) < 40).sum(axis=1)
    offsets, lines = np.zeros((len(centres), 2)), np.zeros(len(centres), dtype=bool)
    placed = np.zeros((0, 4))
    for i in np.argsort(-crowd, kind="stable"):
        others, other_centres = np.delete(dots, i, axis=0), np.delete(centres, i, axis=0)
        candidates, with_line = _candidates(text[i])
        costs = []
        for offset, line in zip(candidates, with_line):
            mid = centres[i] + offset
            box = _box(mid, text[i])
            # Overlap with the dots (kept a few pixels clear) and the labels placed so far; ten times the part of the
            # label outside the plot (on the axes' ticks); a label beside its dot must be clearly nearer it than any
            # other dot, and a line must not cross another dot.
            cost = (_overlap(box, others).sum() + _overlap(box, placed).sum()
                    + 10 * ((box[2] - box[0]) * (box[3] - box[1]) - _overlap(box, area)[0]))
            if len(other_centres) and line:
                cost += LINE_COST + AMBIGUOUS_COST * int((_near_segment(other_centres, centres[i], mid)
                                                          < DOT_PX / 2 + 1).sum())
            elif len(other_centres):
                nearest = float(np.linalg.norm(other_centres - mid, axis=1).min())
                cost += AMBIGUOUS_COST * (nearest < OWN_MARGIN * float(np.linalg.norm(offset)))
            costs.append(cost)
        best = int(np.argmin(costs))
        offsets[i], lines[i] = candidates[best], with_line[best]
        placed = np.vstack([placed, _box(centres[i] + offsets[i], text[i])])
    return offsets, lines


def label_boxes(x: np.ndarray, y: np.ndarray, text: Sequence[str], offsets: np.ndarray, x_range: Sequence[float],
                y_range: Sequence[float]) -> np.ndarray:
    """Each label's box (x0, y0, x1, y1) in pixels of :data:`LABEL_PLOT_PX`, at its offset from its dot."""
    centres = plot_pixels(x, y, x_range, y_range) + offsets
    return np.array([_box(c, t) for c, t in zip(centres, text)]).reshape(-1, 4)


def _label_annotations(x: np.ndarray, y: np.ndarray, text: Sequence[str], x_range: Sequence[float],
                       y_range: Sequence[float]) -> list[dict[str, Any]]:
    """The class labels as annotations: shifted beside their dot, or at the end of a thin line from it."""
    offsets, lines = label_offsets(x, y, text, x_range, y_range)
    notes = []
    for xi, yi, name, (dx, dy), line in zip(x, y, text, offsets, lines):
        note = dict(x=float(xi), y=float(yi), text=str(name), font=dict(size=12, color="#475569"))
        if line:
            note.update(showarrow=True, ax=float(dx), ay=float(-dy), arrowhead=0, arrowwidth=1,
                        arrowcolor="#94a3b8", standoff=DOT_PX / 2)
        else:
            note.update(showarrow=False, xshift=float(dx), yshift=float(dy))
        notes.append(note)
    return notes


def weight_norm_scatter(per_class: pd.DataFrame, norms: np.ndarray) -> go.Figure:
    """One dot per class; both ranges are padded so the dots at the edges keep their class labels in view, and each
    label goes where it covers no other dot or label and reads as its own dot's (:func:`label_offsets`)."""
    robust = per_class["robust_acc"].to_numpy(float)
    names = per_class["class"].to_numpy(str)
    finite = norms[np.isfinite(norms)] if len(norms) else np.zeros(0)
    left, right = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    x_pad = 0.08 * (right - left) if right > left else 0.05 * max(abs(right), 1e-3)
    high = float(np.nanmax(robust)) if np.isfinite(robust).any() else 1.0
    low = max(float(np.nanmin(robust)) - 0.08, -0.06) if np.isfinite(robust).any() else -0.06
    # Above the highest dot: room for its label, about 16 % of the shown span at this height.
    top = high + 0.16 * max(high - low, 0.3)
    x_range, y_range = [left - x_pad, right + x_pad], [low, top]
    shown = np.isfinite(norms) & np.isfinite(robust)
    data = [dict(type="scatter", x=norms, y=robust, mode="markers", text=names,
                 marker=dict(size=DOT_PX, color="#c2410c"),
                 hovertemplate="class %{text}: ‖W‖=%{x:.3f}, robust %{y:.1%}<extra></extra>")]
    return _figure(data, _layout("Class robustness vs last-layer weight norm", 380,
                                 _axis("‖W_c‖₂ (classifier row)", range=x_range),
                                 # A fixed 20 % step on a wide range: no "120 %" tick in the headroom.
                                 _axis("robust accuracy", tickformat=".0%", range=y_range,
                                       **({"dtick": 0.2} if top - low > 0.6 else {})),
                                 showlegend=False, annotations=_label_annotations(
                                     norms[shown], robust[shown], names[shown], x_range, y_range)
                                 if shown.sum() <= MAX_LABELLED else []))
