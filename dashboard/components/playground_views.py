"""Figures of the Playground: decision regions with points, ε-balls and adversarial arrows; accuracy over time;
the Langevin panel (DALE's samples over the loss inside the ε-ball, next to PGD's point), and the few texts that
compare its numbers (``loss_text``, ``loss_delta``, ``noise_text``: no ratio against a loss or gradient near 0).

Built from plain dicts in one constructor call and without a template (as in lab_views): the live panels redraw
several times a second. The ε-balls, the arrows and the point markers are each a single trace (NaN-separated
polylines, per-point symbol arrays), never one layout shape per point.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from core.playground import Frame, LangevinPanel, grid_axis
from dashboard.components.lab_views import BASE, GRID

CLASS_COLOURS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#db2777", "#0891b2", "#ca8a04", "#475569",
                 "#dc2626", "#4d7c0f")
ADV_COLOUR = "#b91c1c"
BALL_COLOUR = "rgba(30, 41, 59, 0.16)"
# Symbols carry the verdict at ε; colours carry the class.
STATUS = (("circle", "robust at ε"), ("circle-open", "correct, not robust at ε"), ("x-thin-open", "misclassified"))
CIRCLE_VERTICES = 24
# A cross-entropy below this is "≈ 0": the model gives the true class p > 0.9999, and differences (let alone ratios)
# between such losses are float32 rounding, not something the attack did.
LOSS_FLOOR = 1e-4
# A measured noise/gradient ratio above this means the loss gradient vanished (a saturated softmax), not that T is
# large: the temperatures offered stop at 30 and the measured ratio stays near T wherever there is a gradient.
FLAT_RATIO = 1000.0


def loss_text(loss: float) -> str:
    """A loss for a label: three significant digits, or "≈ 0" under ``LOSS_FLOOR``."""
    return f"{loss:.3g}" if loss >= LOSS_FLOOR else "≈ 0"


def loss_delta(sample_mean: float, pgd_loss: float) -> tuple[str, str]:
    """(delta text, delta arrow) comparing the Langevin samples' mean loss with PGD's: a difference, not a ratio,
    and no number at all when both are ≈ 0 (deep inside the class, where they differ by rounding only)."""
    if max(sample_mean, pgd_loss) < LOSS_FLOOR:
        return "both ≈ 0: the ball lies deep inside the class", "off"
    return f"{sample_mean - pgd_loss:+.2g} vs PGD", "auto"


def pgd_note(panel: LangevinPanel) -> str | None:
    """An honest word when the panel's numbers could contradict "PGD finds the worst case": samples above PGD's
    peak (the loss is not concave), or fixed-step PGD stopping short of the star. None when neither happened."""
    notes = []
    above = panel.samples_above_pgd
    if above > 0:
        notes.append(f"{above:.0%} of the samples have a higher loss than PGD's point (up to "
                     f"{loss_text(float(panel.sample_loss.max()))}): PGD's climb ended on a local peak, and the "
                     "noise carried them to a higher one.")
    if panel.pgd_loss - panel.fixed_step_loss > max(LOSS_FLOOR, 1e-3 * panel.pgd_loss):
        notes.append(f"PGD's fixed steps stopped at loss {loss_text(panel.fixed_step_loss)}, zigzagging across a "
                     "kink of the loss; the star is where the climb ends once the step shrinks (loss "
                     f"{loss_text(panel.pgd_loss)}). At T = 0 the samples sit where the fixed steps stopped.")
    return " ".join(notes) or None


def noise_text(temperature: float, noise_scale: float, noise_to_grad: float) -> str:
    """How much noise the sampler added, in words a lecture can use."""
    if temperature == 0:
        return "T = 0: no noise, so every sample takes PGD's fixed steps"
    if not np.isfinite(noise_to_grad) or noise_to_grad > FLAT_RATIO:
        return (f"noise scale c = {noise_scale:.2e}; the loss is flat here (its gradient vanishes), so the noise "
                "decides every step and the samples walk at random")
    return f"noise scale c = {noise_scale:.2e}, measured noise ≈ {noise_to_grad:.2f}× the gradient"


def _hex_to_rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


def _plane_layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    """A square [0, 1]² plane with equal aspect, axis titles and the legend under the plot."""
    axis = dict(GRID, range=[0, 1], constrain="domain", showgrid=False, zeroline=False, mirror=True,
                showline=True, linecolor="#94a3b8")
    # The legend sits at the figure's bottom edge (container coordinates) in a fixed margin: placed as a share of
    # the plot's height (y = -0.2) it left ~80 px of blank under the x-axis title and ~50 px over the plane at
    # 1280 px, as the figure's height was spent on margins the equal-aspect plane could not use.
    return dict(BASE, title=dict(text=title), height=height, margin=dict(l=55, r=10, t=45, b=110),
                xaxis=dict(axis, title=dict(text="x₁ (input units)")),
                yaxis=dict(axis, title=dict(text="x₂ (input units)"), scaleanchor="x", scaleratio=1),
                # Two entries a row: one a row (each wrapped alone in a half-width column) took 7 rows.
                # ("normal": "grouped", the default with legend groups, gave each group a row of its own.)
                legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, xanchor="left", x=0,
                            font=dict(size=11),
                            entrywidth=0.5, entrywidthmode="fraction", traceorder="normal"),
                **extra)


def regions_trace(probs: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """The decision regions: p(class 1) as a two-colour heatmap for two classes, else a blend of the class
    colours weighted by their probabilities (an RGB image) — pale where the model is unsure."""
    axis = grid_axis(probs.shape[0])
    if probs.shape[2] == 2:
        low, high = (_hex_to_rgb(c) * 0.45 + 255 * 0.55 for c in CLASS_COLOURS[:2])
        scale = [[0.0, f"rgb{tuple(int(v) for v in low)}"], [0.5, "rgb(255,255,255)"],
                 [1.0, f"rgb{tuple(int(v) for v in high)}"]]
        return dict(type="heatmap", x=axis, y=axis, z=probs[:, :, 1], zmin=0, zmax=1, colorscale=scale,
                    name="p(class)", showscale=True, hoverongaps=False,
                    # Over the plane, not beside it: beside it, bar, ticks and title took ~60 px of a half-width
                    # column's ~380 and left the plane 213 px square at 1280 px. (Under it, it met the x-axis
                    # title at some widths: the offset is a share of the plane's height.)
                    colorbar=dict(title=dict(text=f"p({classes[1]})", side="right"), thickness=10, len=0.6,
                                  orientation="h", x=1, xanchor="right", y=1.02, yanchor="bottom",
                                  tickfont=dict(size=11)),
                    hovertemplate=f"x₁ %{{x:.2f}}, x₂ %{{y:.2f}}: p({classes[1]}) = %{{z:.2f}}<extra></extra>")
    colours = np.stack([_hex_to_rgb(CLASS_COLOURS[k % len(CLASS_COLOURS)]) for k in range(probs.shape[2])])
    confidence = probs.max(axis=2, keepdims=True)
    mixed = probs @ colours
    # Unsure cells fade to white: blend with white by how far the top probability is from a coin flip.
    sure = (confidence - 1 / probs.shape[2]) / (1 - 1 / probs.shape[2])
    rgb = 255 - 0.5 * sure * (255 - mixed)
    step = float(axis[1] - axis[0])
    return dict(type="image", z=np.clip(rgb, 0, 255).astype(np.uint8), x0=0.0, dx=step, y0=0.0, dy=step,
                name="regions", hovertemplate="x₁ %{x:.2f}, x₂ %{y:.2f}<extra></extra>")


def level_segments(axis_x: np.ndarray, axis_y: np.ndarray, z: np.ndarray, level: float) -> np.ndarray:
    """Marching squares: the line z = level as NaN-separated segments (rows of (x, y)), one or two per cell.

    Computed here rather than by a plotly contour trace, which the browser would recompute at every redraw.
    """
    d = z - level
    corners = (d[:-1, :-1], d[:-1, 1:], d[1:, 1:], d[1:, :-1])  # around each cell: (i,j) (i,j+1) (i+1,j+1) (i+1,j)
    i, j = np.meshgrid(np.arange(d.shape[0] - 1), np.arange(d.shape[1] - 1), indexing="ij")
    xs = (axis_x[j], axis_x[j + 1], axis_x[j + 1], axis_x[j])
    ys = (axis_y[i], axis_y[i], axis_y[i + 1], axis_y[i + 1])
    crossings = []
    for a in range(4):  # edge a joins corner a and corner a+1
        b = (a + 1) % 4
        va, vb = corners[a], corners[b]
        cut = (va < 0) != (vb < 0)
        t = np.where(cut, va / np.where(cut, va - vb, 1.0), np.nan)
        crossings.append((xs[a] + t * (xs[b] - xs[a]), ys[a] + t * (ys[b] - ys[a])))
    px = np.stack([c[0] for c in crossings], axis=-1).reshape(-1, 4)
    py = np.stack([c[1] for c in crossings], axis=-1).reshape(-1, 4)
    hit = ~np.isnan(px)
    segments = []
    for count, pairs in ((2, None), (4, ((0, 1), (2, 3)))):
        rows = np.flatnonzero(hit.sum(1) == count)
        if not len(rows):
            continue
        if pairs is None:  # the two cut edges, in order
            order = np.argsort(~hit[rows], axis=1, kind="stable")[:, :2]
            pairs_xy = [(np.take_along_axis(px[rows], order, 1), np.take_along_axis(py[rows], order, 1))]
        else:  # a saddle: pair the edges around two opposite corners
            pairs_xy = [(px[rows][:, list(p)], py[rows][:, list(p)]) for p in pairs]
        for sx, sy in pairs_xy:
            gap = np.full((len(sx), 1), np.nan)
            segments.append(np.stack([np.hstack([sx, gap]).ravel(), np.hstack([sy, gap]).ravel()], axis=1))
    return np.concatenate(segments) if segments else np.empty((0, 2))


def boundary_trace(probs: np.ndarray) -> dict[str, Any] | None:
    """The decision boundary p = ½ as a line (two classes only; with more the colours show it)."""
    if probs.shape[2] != 2:
        return None
    axis = grid_axis(probs.shape[0])
    line = level_segments(axis, axis, probs[:, :, 1], 0.5)
    return dict(type="scatter", x=line[:, 0], y=line[:, 1], mode="lines", line=dict(color="#0f172a", width=2),
                name="decision boundary", hoverinfo="skip")


def ball_outlines(x: np.ndarray, eps: float, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """All ε-balls as one NaN-separated polyline: squares for ℓ∞, circles for ℓ2."""
    if norm == "linf":
        shape = eps * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1], [-1, -1]], dtype=np.float32)
    else:
        angle = np.linspace(0, 2 * np.pi, CIRCLE_VERTICES + 1, dtype=np.float32)
        shape = eps * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    outlines = x[:, None, :] + shape[None]
    gap = np.full((len(x), 1, 2), np.nan, dtype=np.float32)
    flat = np.concatenate([outlines, gap], axis=1).reshape(-1, 2)
    return flat[:, 0], flat[:, 1]


def point_traces(x: np.ndarray, y: np.ndarray, frame: Frame, classes: Sequence[str]) -> list[dict[str, Any]]:
    """One scatter per class (its colour); the symbol of each point says robust / not robust / misclassified."""
    points = frame.points
    status = np.where(points.robust, 0, np.where(points.correct, 1, 2))
    symbols = np.array([s for s, _ in STATUS], dtype=object)
    labels = np.array([name for _, name in STATUS], dtype=object)
    traces = []
    for k, name in enumerate(classes):
        mask = y == k
        index = np.flatnonzero(mask)
        colour = CLASS_COLOURS[k % len(CLASS_COLOURS)]
        # Plotly draws a legend entry with its trace's first marker, open or filled by that point's verdict, so
        # the same class looked different from panel to panel: its entry is a trace of its own, always filled.
        traces.append(dict(
            type="scatter", x=x[mask, 0], y=x[mask, 1], mode="markers", name=f"class {name}", showlegend=False,
            legendgroup=f"class {name}",
            marker=dict(color=colour, size=7, symbol=symbols[status[mask]], line=dict(width=1.5, color=colour)),
            customdata=index, text=labels[status[mask]],
            hovertemplate=f"point %{{customdata}} · {name}<br>%{{text}}<extra></extra>"))
        traces.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=f"class {name}",
                           legendgroup=f"class {name}", hoverinfo="skip",
                           marker=dict(symbol="circle", color=colour, size=8, line=dict(width=1.5, color=colour))))
    for symbol, name in STATUS:  # legend entries for the symbols, in neutral grey
        traces.append(dict(type="scatter", x=[None], y=[None], mode="markers", name=name,
                           marker=dict(symbol=symbol, color="#334155", size=8, line=dict(width=1.5, color="#334155"))))
    return traces


def arrow_traces(x: np.ndarray, frame: Frame) -> list[dict[str, Any]]:
    """Arrows from each point that PGD flips to its adversarial point: one line trace and one marker trace."""
    flipped = frame.points.flipped
    start, end = x[flipped], frame.points.x_adv[flipped]
    gap = np.full((len(start), 1, 2), np.nan, dtype=np.float32)
    path = np.concatenate([start[:, None], end[:, None], gap], axis=1).reshape(-1, 2)
    delta = end - start
    # Plotly's marker angle is clockwise from north; the axes have equal scales, so this is the drawn direction.
    angle = np.degrees(np.arctan2(delta[:, 0], delta[:, 1]))
    return [dict(type="scatter", x=path[:, 0], y=path[:, 1], mode="lines", name="PGD step (flips the class)",
                 line=dict(color=ADV_COLOUR, width=1.5), hoverinfo="skip", legendgroup="adv"),
            dict(type="scatter", x=end[:, 0], y=end[:, 1], mode="markers", name="adversarial point",
                 marker=dict(symbol="arrow", angle=angle, size=9, color=ADV_COLOUR), legendgroup="adv",
                 showlegend=False, hovertemplate="adversarial point (%{x:.3f}, %{y:.3f})<extra></extra>")]


def decision_figure(frame: Frame, x: np.ndarray, y: np.ndarray, classes: Sequence[str], *, eps: float, norm: str,
                    title: str, show_balls: bool = True, show_arrows: bool = True,
                    selected: int | None = None, height: int = 580) -> go.Figure:
    """Decision regions of the frame's model with the training points, their ε-balls and adversarial arrows."""
    data: list[dict[str, Any]] = [regions_trace(frame.probs, classes)]
    boundary = boundary_trace(frame.probs)
    if boundary is not None:
        data.append(boundary)
    if show_balls and eps > 0:
        bx, by = ball_outlines(x, eps, norm)
        data.append(dict(type="scatter", x=bx, y=by, mode="lines", line=dict(color=BALL_COLOUR, width=0.8),
                         name=f"ε-ball ({'ℓ∞ square' if norm == 'linf' else 'ℓ2 circle'}, ε = {eps:g})",
                         hoverinfo="skip"))
    data += point_traces(x, y, frame, classes)
    if show_arrows and eps > 0 and frame.points.flipped.any():
        data += arrow_traces(x, frame)
    if selected is not None and 0 <= selected < len(x):
        data.append(dict(type="scatter", x=x[selected:selected + 1, 0], y=x[selected:selected + 1, 1],
                         mode="markers", name=f"selected point {selected}", hoverinfo="skip",
                         marker=dict(symbol="circle-open", size=20, color="#0f172a", line=dict(width=2.5))))
    return go.Figure(data=data, layout=_plane_layout(title, height, clickmode="event+select", dragmode="pan"))


def accuracy_figure(history: Sequence[dict[str, Any]], title: str, *, eps: float, chance: float,
                    height: int = 290) -> go.Figure:
    """Held-out clean and robust accuracy (PGD at ε) over training steps, with the training-set ones dotted."""
    step = np.array([h["step"] for h in history], dtype=np.int64)
    series = (("clean_acc", "clean (held-out)", "solid", "#0f172a"),
              ("robust_acc", f"robust at ε = {eps:g} (held-out)", "dash", ADV_COLOUR),
              ("train_robust_acc", "robust at ε (training points)", "dot", "#f97316"))
    data: list[dict[str, Any]] = [
        dict(type="scatter", x=step, y=np.array([h[key] for h in history]), mode="lines", name=name,
             line=dict(color=colour, dash=dash, width=2)) for key, name, dash, colour in series]
    right = max(int(step.max()) if len(step) else 1, 1)
    data.append(dict(type="scatter", x=[0, right], y=[chance, chance], mode="lines", name="chance",
                     line=dict(color="#94a3b8", dash="dot", width=1), hoverinfo="skip"))
    # The legend sits at the figure's bottom edge (container coordinates), under the axis title, never over it.
    layout = dict(BASE, title=dict(text=title), height=height + 40, margin=dict(l=60, r=10, t=45, b=100),
                  xaxis=dict(GRID, title=dict(text="training step")),
                  yaxis=dict(GRID, title=dict(text="accuracy"), range=[0, 1.02], tickformat=".0%"),
                  legend=dict(orientation="h", yref="container", yanchor="bottom", y=0, xanchor="left", x=0,
                              font=dict(size=11)))
    return go.Figure(data=data, layout=layout)


def lattice_note(panel: LangevinPanel) -> str | None:
    """Why the ℓ∞ samples sit on a regular grid (students asked): every step moves each coordinate by exactly ±η,
    so a chain from x lands on points of spacing η, and many chains share one. None for ℓ2 (no grid there)."""
    if panel.norm != "linf" or not len(panel.samples):
        return None
    distinct = len(np.unique(np.round((panel.samples - panel.x) / panel.step_size).astype(np.int64), axis=0))
    where = "one point" if distinct == 1 else f"{distinct} distinct points"
    return (f"The {len(panel.samples)} samples sit on {where} of a grid: each Langevin step moves "
            f"each coordinate by exactly ± the step η = {panel.step_size:g} (a signed step, as PGD's; the noise only "
            "changes which sign), so every chain from x lands on points η apart, and many chains share one.")


def langevin_figure(panel: LangevinPanel, class_name: str, height: int = 520) -> go.Figure:
    """The loss inside the ε-ball around one point, DALE's Langevin samples at T, PGD's point and the boundary."""
    # The loss spans orders of magnitude inside one ball (1e-6 deep in a class, > 1 across the boundary): a log
    # colour scale shows its slope everywhere; the hover gives the value itself.
    log_loss = np.log10(np.maximum(panel.loss, 1e-12))
    low, high = np.floor(np.nanmin(log_loss)), np.ceil(np.nanmax(log_loss))
    high = max(high, low + 1)
    low = max(low, high - 6)  # six decades: float32 underflow far inside a class says nothing about the attack
    ticks = np.arange(low, high + 1, max(1.0, np.ceil((high - low) / 6)))
    data: list[dict[str, Any]] = [
        dict(type="heatmap", x=panel.axis_x, y=panel.axis_y, z=log_loss, customdata=panel.loss, colorscale="Viridis",
             zmin=low, zmax=high, hoverongaps=False, name="loss",
             colorbar=dict(title=dict(text="loss (CE, log scale)", side="right"), thickness=12, len=0.75,
                           tickvals=ticks, ticktext=[f"1e{int(t)}" if t else "1" for t in ticks]),
             hovertemplate="x₁ %{x:.3f}, x₂ %{y:.3f}: loss %{customdata:.3g}<extra></extra>")]
    if np.nanmin(panel.margin) < 0 < np.nanmax(panel.margin):
        line = level_segments(panel.axis_x, panel.axis_y, panel.margin, 0.0)
        data.append(dict(type="scatter", x=line[:, 0], y=line[:, 1], mode="lines", hoverinfo="skip",
                         line=dict(color="#22d3ee", width=2.5), name="decision boundary"))
    bx, by = ball_outlines(panel.x[None], panel.eps, panel.norm)
    data.append(dict(type="scatter", x=bx, y=by, mode="lines", line=dict(color="#475569", width=1.5),
                     name=f"ε-ball (ε = {panel.eps:g})", hoverinfo="skip"))
    fooled = panel.sample_fooled
    for mask, name, colour in ((~fooled, "Langevin samples (still correct)", "#f8fafc"),
                               (fooled, "Langevin samples (fool the model)", "#f472b6")):
        data.append(dict(type="scatter", x=panel.samples[mask, 0], y=panel.samples[mask, 1], mode="markers",
                         name=f"{name}: {int(mask.sum())}", customdata=panel.sample_loss[mask],
                         marker=dict(size=6, color=colour, opacity=0.75, line=dict(width=0.5, color="#0f172a")),
                         hovertemplate="sample (%{x:.3f}, %{y:.3f}): loss %{customdata:.3g}<extra></extra>"))
    data.append(dict(type="scatter", x=[panel.x[0]], y=[panel.x[1]], mode="markers",
                     name=f"the point x (class {class_name})", hoverinfo="skip",
                     marker=dict(symbol="circle", size=12, color="#0ea5e9", line=dict(width=2, color="white"))))
    if float(np.abs(panel.fixed_step_point - panel.pgd_point).max()) > panel.step_size / 2:
        # Where PGD's fixed steps stopped, zigzagging across a kink, short of the star (the climb's end): at T = 0
        # every chain sits here, so the cloud "jumped away from PGD" on the slider's last notch without it.
        data.append(dict(type="scatter", x=[panel.fixed_step_point[0]], y=[panel.fixed_step_point[1]],
                         mode="markers", hoverinfo="skip",
                         name=f"PGD's fixed steps stopped here (loss {loss_text(panel.fixed_step_loss)}; every "
                              "sample at T = 0)",
                         marker=dict(symbol="star-open", size=18, color="#ef4444", line=dict(width=2.5))))
    data.append(dict(type="scatter", x=[panel.pgd_point[0]], y=[panel.pgd_point[1]], mode="markers",
                     name=f"PGD's point (loss {loss_text(panel.pgd_loss)})", hoverinfo="skip",
                     marker=dict(symbol="star", size=20, color="#ef4444", line=dict(width=1.5, color="white"))))
    pad = panel.eps * 1.08
    axis = dict(GRID, showgrid=False, zeroline=False, constrain="domain")
    layout = dict(BASE, title=dict(text=f"Inside the ε-ball: loss, DALE's samples at T = {panel.temperature:g}, "
                                        "PGD's point"), height=height, margin=dict(l=60, r=10, t=45, b=10),
                  xaxis=dict(axis, title=dict(text="x₁ (input units)"), range=[panel.x[0] - pad, panel.x[0] + pad]),
                  yaxis=dict(axis, title=dict(text="x₂ (input units)"), range=[panel.x[1] - pad, panel.x[1] + pad],
                             scaleanchor="x", scaleratio=1),
                  legend=dict(orientation="h", yanchor="top", y=-0.16, xanchor="left", x=0, font=dict(size=11)),
                  plot_bgcolor="#f1f5f9")
    return go.Figure(data=data, layout=layout)
