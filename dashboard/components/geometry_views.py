"""Figures of the Geometry page: cross-sections, margin profiles, loss surfaces, statistics over a sample (the heavy
analyses' charts are in geometry_analysis_views)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from core.geometry.curvature import RANDOM_REACH, censored_ratios
from dashboard.components.charts import LAYOUT

# Light class colours for regions (strong overlays stay readable on them), one per class: the light twins (tab20)
# of the class colours of the other pages (robustness_charts.CLASS_COLOURS), in their order. Classes 7–9 were
# olive, cyan and grey here but grey, olive and cyan there. Classes 0 and 9 are turned apart within their hues
# (periwinkle, teal): tab20's light blue and light cyan read as one colour on a projector.
REGION_COLOURS = ("#a8c1f0", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
                  "#dbdb8d", "#88ddd1", "#fdd0a2", "#c7e9c0")
MODEL_COLOURS = ("#c2410c", "#2563eb")


def model_colours(results: Mapping[str, Any], colours: Mapping[str, str] | None) -> list[str]:
    """The colour of each model (``results``' keys, in order): its method's from ``colours`` (charts.run_colours,
    as every other page draws it), else primary orange and comparison blue. Geometry drew the primary orange
    whatever it was, so a TRADES model was orange here and green on the Robustness page."""
    return [(colours or {}).get(name, MODEL_COLOURS[i % len(MODEL_COLOURS)]) for i, name in enumerate(results)]
ATTACK_NAMES = {"pgd": "PGD", "deepfool": "DeepFool"}
NORM_NAMES = {"linf": "ℓ∞", "l2": "ℓ2"}
# The plane selector's options by their direction û (v̂ is a random partner): short enough for a quarter column.
PLANE_LABELS = {"deepfool": "DeepFool normal", "gradient": "Loss gradient", "random": "Two random",
                "image": "Toward an image"}
PLAIN = {k: v for k, v in LAYOUT.items() if k != "legend"}
# Plotly's default SI labels write 1e-4 as "100μ"; exponents read plainly on log axes.
LOG_AXIS = dict(type="log", dtick=1, exponentformat="power", minor=dict(ticks="inside", showgrid=False))


def eps_message(eps: float, norm: str, suggested: float, largest: float, scale: str = "image scale 0–1") -> str:
    """Why the cross-sections wait for ε, and what to pick: the ε-ball and the attack path need a budget above 0."""
    name = NORM_NAMES[norm]
    return (f"**Set ε above 0 to draw the cross-sections** (now {eps:g}). Here ε is the attack budget in {name}: "
            f"the radius of the dashed ε-ball drawn on each slice and the budget of the attack path. Any value in "
            f"(0, {largest:g}] works, in {scale}; the model's own budget, "
            f"{suggested:.3g}, is a good start, and a few times smaller or larger shows where the boundary sits "
            "relative to it. The curvature statistics over a sample and the margin, frequency and universal-"
            "perturbation analyses do not use ε: they work as usual below.")


def crossing_along_u(section: Any) -> float:
    """Where the drawn boundary of x's class meets the û axis (b = 0) nearest to x, on either side: a signed a
    (negative = on the −û side), linearly interpolated between grid points; nan when it does not within the view."""
    row = np.asarray(section.margin[len(section.b) // 2], dtype=float)
    a = np.asarray(section.a, dtype=float)
    centre = len(a) // 2
    found = []
    for step in (1, -1):
        i = centre
        while 0 <= i + step < len(a):
            m0, m1 = row[i], row[i + step]
            if m0 > 0 >= m1:
                found.append(a[i] + (a[i + step] - a[i]) * m0 / (m0 - m1))
                break
            i += step
    return float(min(found, key=abs)) if found else float("nan")


def shared_margin_limit(results: dict[str, Any]) -> float:
    """One symmetric colour range for the margin panels drawn side by side: the largest of their 98th
    percentiles of |margin|, so the same colour means the same margin in every panel."""
    limits = [float(np.nanpercentile(np.abs(local.section.margin), 98)) for local in results.values()]
    return max([v for v in limits if np.isfinite(v)], default=0.0) or 1.0


def short_name(label: str) -> str:
    """"Primary" or "Comparison" of a "Primary: run name" label."""
    return label.split(":")[0]


def section_caption(local: Any, classes: Sequence[str], y: int, extent: float) -> str:
    """What one model's cross-section shows, in words: prediction, where the drawn boundary crosses the û axis,
    the DeepFool distance and what the attack path does — truthful when x is misclassified to begin with."""
    pred = classes[local.prediction]
    crossing = crossing_along_u(local.section)
    where = (f"the boundary of class {pred} crosses the û axis nearest to x at a = {crossing:+.3f} (on the "
             f"{'+û' if crossing > 0 else '−û'} side)" if np.isfinite(crossing) else
             f"the boundary of class {pred} does not cross the û axis within ±{extent:.3f}")
    deepfool = (f"this model's own DeepFool distance (along its own, bending path) is {local.deepfool_distance:.3f}."
                if np.isfinite(local.deepfool_distance) else "DeepFool does not change this model's prediction.")
    text = f"Prediction at x: **{pred}** (true {classes[y]}). On this plane {where}; {deepfool}"
    if local.path is None:
        return text
    name, end = ATTACK_NAMES[local.path.attack], classes[local.path.preds[-1]]
    moved = local.path.preds[-1] != local.prediction
    if local.prediction == y:
        does = f"flips it to **{end}**" if moved else "does not flip it"
    else:
        does = (f"moves the prediction on to **{end}**" if moved else f"leaves the prediction at {pred}") + (
            " (x is misclassified already, so there is nothing to flip)")
    return f"{text} The {name} path {does} and ends {local.path.off_plane[-1]:.3f} off the plane."


def _class_scale(num_classes: int) -> list[list[Any]]:
    scale: list[list[Any]] = []
    for k in range(num_classes):
        colour = REGION_COLOURS[k % len(REGION_COLOURS)]
        scale += [[k / num_classes, colour], [(k + 1) / num_classes, colour]]
    return scale


def u_text(plane: Any, owner: str | None = None) -> str:
    """What û is, with whose it is when two models share a plane made from one of them ("DeepFool normal of the
    primary"): the comparison's panel said "DeepFool normal" alone, which read as its own."""
    # A plane that fell back to random directions (no gradient, no boundary) is nobody's.
    mine = owner is not None and plane.kind in ("deepfool", "gradient")
    return f"{plane.u_label} of the {owner}" if mine else plane.u_label


def section_figure(local: Any, view: Any, classes: Sequence[str], title: str, *, colour_by: str = "class",
                   eps_label: str = "", margin_limit: float | None = None, height: int = 470,
                   owner: str | None = None) -> go.Figure:
    """Predicted class (or logit margin) over the plane, the boundary, the ε-ball's section, the attack path.
    ``margin_limit`` fixes the margin colour range (±limit); pass ``shared_margin_limit`` for panels compared side by
    side. ``owner``: whose direction û is, when two models are drawn (``u_text``)."""
    section, plane = local.section, view.plane
    k = len(classes)
    fig = go.Figure()
    names = np.asarray([str(c) for c in classes], dtype=object)[section.pred]
    if colour_by == "margin":
        limit = margin_limit or shared_margin_limit({"": local})
        fig.add_trace(go.Heatmap(x=section.a, y=section.b, z=section.margin, zmin=-limit, zmax=limit, zmid=0,
                                 colorscale="RdBu", colorbar=dict(title="margin", len=0.8), customdata=names,
                                 hovertemplate="a=%{x:.3f}, b=%{y:.3f}<br>class %{customdata}, margin "
                                               "%{z:.3f}<extra></extra>", name="margin"))
    else:
        fig.add_trace(go.Heatmap(x=section.a, y=section.b, z=section.pred, zmin=-0.5, zmax=k - 0.5,
                                 colorscale=_class_scale(k), showscale=False,
                                 customdata=np.stack([names, np.round(section.margin, 4)], axis=-1),
                                 hovertemplate="a=%{x:.3f}, b=%{y:.3f}<br>class %{customdata[0]}, margin "
                                               "%{customdata[1]}<extra></extra>", name="regions"))
        for c in np.unique(section.pred):
            fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"class {classes[c]}",
                                     marker=dict(symbol="square", size=12,
                                                 color=REGION_COLOURS[c % len(REGION_COLOURS)])))
    fig.add_trace(go.Contour(x=section.a, y=section.b, z=section.margin, showscale=False, hoverinfo="skip",
                             contours=dict(start=0, end=0, size=1, coloring="lines"), ncontours=1,
                             colorscale=[[0, "#111"], [1, "#111"]],
                             line=dict(color="#111", width=2.5), name="boundary of x's class", showlegend=True))
    ball = view.ball
    fig.add_trace(go.Scatter(x=ball[:, 0], y=ball[:, 1], mode="lines", name=f"ε-ball section{eps_label}",
                             line=dict(color="#7c3aed", width=2, dash="dash"), hoverinfo="skip"))
    if local.path is not None and len(local.path.ab) > 1:
        ab = local.path.ab
        fig.add_trace(go.Scatter(x=ab[:, 0], y=ab[:, 1], mode="lines+markers",
                                 name=f"{ATTACK_NAMES[local.path.attack]} path",
                                 line=dict(color="#dc2626", width=2), marker=dict(size=6, color="#dc2626"),
                                 customdata=np.stack([np.arange(len(ab)), local.path.off_plane,
                                                      np.asarray(local.path.preds[:len(ab)])], axis=1),
                                 hovertemplate="step %{customdata[0]}: prediction %{customdata[2]}<br>"
                                               "off the plane by %{customdata[1]:.3f}<extra></extra>"))
        fig.add_annotation(x=ab[-1, 0], y=ab[-1, 1], ax=ab[-2, 0], ay=ab[-2, 1], xref="x", yref="y", axref="x",
                           ayref="y", showarrow=True, arrowhead=3, arrowsize=1.3, arrowcolor="#dc2626", text="")
    if view.other_at is not None:
        fig.add_trace(go.Scatter(x=[view.other_at[0]], y=[view.other_at[1]], mode="markers", name="the other image",
                                 marker=dict(symbol="square", size=13, color="#111", line=dict(color="white",
                                                                                               width=1)),
                                 hoverinfo="name"))
    fig.add_trace(go.Scatter(x=[0], y=[0], mode="markers", name="x", marker=dict(symbol="star", size=16,
                             color="#111", line=dict(color="white", width=1)), hoverinfo="name"))
    # The y title on two lines: the square aspect makes a plane wider than tall a short plot, and "b along v̂
    # (random, orthogonal)" on one line was cut at its ends.
    fig.update_layout(title=title, height=height, xaxis_title=f"a along û ({u_text(plane, owner)})",
                      yaxis_title=f"b along v̂<br>({plane.v_label})", **LAYOUT)
    fig.update_xaxes(range=[section.a[0], section.a[-1]], constrain="domain")
    fig.update_yaxes(range=[section.b[0], section.b[-1]], scaleanchor="x", scaleratio=1, constrain="domain",
                     automargin=True)
    return fig


def profile_figure(results: dict[str, Any], plane: Any, colours: Mapping[str, str] | None = None,
                   owner: str | None = None) -> go.Figure:
    """Logit margin of x's class along the normal (solid) and along the random direction (dotted), one panel per
    model with its own y axis: a robust model's margins (±0.3) vanished on an axis sized for a standard one's (±15).
    ``owner``: whose direction û is (``u_text``)."""
    names = list(results)
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=[f"{name} (its own y scale)" for name in names])
    for row, ((name, local), colour) in enumerate(zip(results.items(), model_colours(results, colours)), start=1):
        p = local.profile
        fig.add_trace(go.Scatter(x=p.t, y=p.margin_normal, name=f"{short_name(name)}: along û ({u_text(plane, owner)})",
                                 line=dict(color=colour, width=2.5)), row=row, col=1)
        fig.add_trace(go.Scatter(x=p.t, y=p.margin_random, name=f"{short_name(name)}: along v̂ (random)",
                                 line=dict(color=colour, width=2, dash="dot")), row=row, col=1)
        fig.add_hline(y=0, line=dict(color="#111", width=1), annotation_text="decision boundary",
                      annotation_position="bottom right", row=row, col=1)
        fig.update_yaxes(title=dict(text="logit margin", font=dict(size=12)), zeroline=False, row=row, col=1)
    for annotation in fig.layout.annotations[:len(names)]:
        annotation.update(font=dict(size=13), x=0, xanchor="left")
    fig.update_xaxes(title="distance from x along the direction (ℓ2, input units)", row=len(names), col=1)
    fig.update_layout(title="Margin profile through x: logit of x's class − the largest other logit",
                      height=260 + 220 * len(names),
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=60, b=110), "legend": {**LAYOUT["legend"],
                                                                                       "yref": "container",
                                                                                       "yanchor": "bottom",
                                                                                       "y": 0}})
    return fig


def shared_loss_range(results: dict[str, Any]) -> tuple[float, float]:
    """One loss range for the surfaces drawn side by side (height and colour), so their steepness compares."""
    losses = [np.asarray(local.surface.loss, dtype=float) for local in results.values()]
    finite = [v[np.isfinite(v)] for v in losses]
    low = min([float(v.min()) for v in finite if v.size], default=0.0)
    high = max([float(v.max()) for v in finite if v.size], default=1.0)
    return low, high if high > low else low + 1.0


def loss_text(value: float) -> str:
    """A loss bound for a caption: 3 significant digits, and 0 rather than "-0" for a bound a hair below zero
    (cross-entropy is ≥ 0; the range read "(-0–20.2)")."""
    return f"{0.0 if abs(value) < 5e-4 else value:.3g}"


# A loss that moves less than this inside the ε-ball counts as flat there (cross-entropy, nats).
FLAT_RISE = 0.05


def ball_loss_text(results: dict[str, Any], dim: int) -> str:
    """What the loss does inside the plane's section of the ε-ball, per model (``results`` in drawing order),
    measured, not assumed: on many planes neither model's loss moves there, since the section holds 2 of the
    input's ``dim`` directions."""
    rises = {short_name(label): r.ball_loss.rise for label, r in results.items()}
    parts = [f"{short_name(label)}'s loss stays at {loss_text(r.ball_loss.at_x)}" if r.ball_loss.rise < FLAT_RISE
             and loss_text(r.ball_loss.at_x) == loss_text(r.ball_loss.highest) else
             f"{short_name(label)}'s loss goes from {loss_text(r.ball_loss.at_x)} to "
             f"{loss_text(r.ball_loss.highest)}" for label, r in results.items()]
    text = "Inside the ε-ball's section (the dashed outline around x, the orange diamond): " + "; ".join(parts) + ". "
    rising = {name: rise for name, rise in rises.items() if rise >= FLAT_RISE}
    if not rising:
        return text + (f"Neither rises inside it on this plane: the section holds 2 of the input's {dim:,} "
                       "directions, and an attack searches all of them (the Attack Lab; *Direction û of* the "
                       "other model, or *Gradient*, may find a rise here).")
    if len(rises) < 2:
        return text
    steep = max(rises, key=rises.get)
    flat = min(rises, key=rises.get)
    if flat not in rising:
        return text + f"{flat}'s stays flat there; {steep}'s rises by {rises[steep]:.3g}."
    return text + (f"{steep}'s rises {rises[steep] / rises[flat]:.1f}× as much as {flat}'s: {flat} is the "
                   "flatter around x on this plane.")


def _on_grid(surface: Any, points: np.ndarray) -> np.ndarray:
    """The surface's loss at plane points (a, b), bilinear between its grid points (loss[i, j] at b[i], a[j])."""
    a, b = np.asarray(surface.a), np.asarray(surface.b)
    loss = np.asarray(surface.loss, dtype=float)
    j = np.clip(np.searchsorted(a, points[:, 0]) - 1, 0, len(a) - 2)
    i = np.clip(np.searchsorted(b, points[:, 1]) - 1, 0, len(b) - 2)
    ta = np.clip((points[:, 0] - a[j]) / (a[j + 1] - a[j]), 0.0, 1.0)
    tb = np.clip((points[:, 1] - b[i]) / (b[i + 1] - b[i]), 0.0, 1.0)
    return ((1 - tb) * ((1 - ta) * loss[i, j] + ta * loss[i, j + 1])
            + tb * ((1 - ta) * loss[i + 1, j] + ta * loss[i + 1, j + 1]))


# x on the loss surface: readable on the surface's dark low-loss floor and on the white scene behind it.
X_COLOUR = "#ea580c"


def surface_figure(local: Any, title: str, loss_range: tuple[float, float] | None = None,
                   ball: np.ndarray | None = None) -> go.Figure:
    """Loss over the plane as a 3-D surface; ``loss_range`` fixes the height and colour range (shared panels);
    ``ball``, the ε-ball's section, is drawn dashed on it."""
    s = local.surface
    low, high = loss_range or shared_loss_range({"": local})
    fig = go.Figure(go.Surface(x=s.a, y=s.b, z=s.loss, colorscale="Viridis", cmin=low, cmax=high,
                               colorbar=dict(title="loss", len=0.7),
                               hovertemplate="a=%{x:.3f}, b=%{y:.3f}: loss %{z:.3f}<extra></extra>"))
    if ball is not None:
        # On the surface (a hair above it): drawn on the floor, it hid under a surface that rises there.
        lift = 0.01 * (high - low)
        fig.add_trace(go.Scatter3d(x=ball[:, 0], y=ball[:, 1], z=_on_grid(s, ball) + lift, mode="lines",
                                   line=dict(color="white", width=5, dash="dash"), name="ε-ball section",
                                   showlegend=False, hoverinfo="skip"))
    # x itself, named: at the default zoom the ε-ball's section is a few pixels across, and alone it read as a
    # stray dot on the surface.
    origin = np.zeros((1, 2))
    fig.add_trace(go.Scatter3d(x=[0.0], y=[0.0], z=_on_grid(s, origin) + 0.02 * (high - low), mode="markers+text",
                               marker=dict(size=6, color=X_COLOUR, symbol="diamond", line=dict(color="white", width=1)),
                               text=["<b>x</b>"], textposition="top center", textfont=dict(size=16, color=X_COLOUR),
                               name="x", showlegend=False,
                               hovertemplate="x, the test point: loss %{z:.3f}<extra></extra>"))
    # Short axis titles: the scene's corners clip long ones ("…ss-entropy") in a half-width column. The height's is
    # the colour bar's ("loss"): the scene's left edge cut its own to "ss".
    fig.update_layout(title=title, height=540, scene=dict(xaxis_title="a (û)", yaxis_title="b (v̂)",
                                                          zaxis=dict(title=dict(text=""), range=[low, high]),
                                                          aspectmode="cube",
                                                          camera=dict(eye=dict(x=-1.5, y=-1.5, z=0.95))),
                      **{**PLAIN, "margin": dict(l=0, r=0, t=70, b=10)})
    return fig


def _g(value: float) -> str:
    return f"{value:.4g}"


def local_table(results: dict[str, Any], classes: Sequence[str]) -> pd.DataFrame:
    """One column per model, one row per quantity: it fits beside any number of quantities, at any width."""
    rows: dict[str, list[str]] = {"prediction at x": [], "DeepFool distance ‖r‖₂": [],
                                  "û-axis crossing a (− = on the −û side)": [], "Hessian λmax": [],
                                  "CURE ‖Δ∇ℓ‖/h": [], "boundary curvature κ": []}
    for local in results.values():
        crossing = crossing_along_u(local.section)
        values = [str(classes[local.prediction]),
                  _g(local.deepfool_distance) if np.isfinite(local.deepfool_distance) else "no flip",
                  f"{crossing:+.4g}" if np.isfinite(crossing) else "none in view",
                  _g(local.hessian), _g(local.cure), _g(local.boundary.kappa)]
        for row, value in zip(rows.values(), values):
            row.append(value)
    return pd.DataFrame({"quantity": list(rows), **{name: [r[i] for r in rows.values()]
                                                   for i, name in enumerate(results)}})


def _ratio_label(name: str, ratio: np.ndarray) -> str:
    """"Primary<br>run name<br>13 of 30 at ∞": two short lines instead of one long label plotly would tilt."""
    infinite = int(np.isinf(ratio).sum())
    flipped = int((~np.isnan(ratio)).sum())
    return name.replace(": ", "<br>", 1) + f"<br>{infinite} of {flipped} at ∞"


def sample_figure(stats: dict[str, dict[str, np.ndarray]], key: str, title: str, axis: str,
                  log: bool = False, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Box plots of one per-input statistic for each model. For ``key="ratio"`` the infinite ratios (no random
    crossing within RANDOM_REACH × the DeepFool distance) are drawn on a dotted line at RANDOM_REACH, so the box's
    median is the table's (``censored_ratios``); other statistics drop non-finite values."""
    fig = go.Figure()
    for (name, values), colour in zip(stats.items(), model_colours(stats, colours)):
        v = np.asarray(values[key], dtype=float)
        ratio = key == "ratio"
        v = censored_ratios(v) if ratio else v[np.isfinite(v)]
        # No mean marker for the ratio: the ∞ drawn at the line would pull a mean to a number it is not.
        fig.add_trace(go.Box(y=v, name=_ratio_label(name, values[key]) if ratio else name.replace(": ", "<br>", 1),
                             marker_color=colour, boxmean=not ratio, boxpoints="all", jitter=0.4, pointpos=0,
                             marker=dict(size=4, opacity=0.5)))
    fig.update_layout(title=title, height=400 if key == "ratio" else 380, yaxis_title=axis, showlegend=False,
                      **PLAIN)
    if key == "ratio":
        fig.add_hline(y=RANDOM_REACH, line=dict(color="#64748b", dash="dot", width=1),
                      annotation_text=f"∞: no random crossing within {RANDOM_REACH:g}×", annotation_font_size=11,
                      annotation_position="top left")
        fig.update_yaxes(range=[0, RANDOM_REACH * 1.12])
    if log and all((np.asarray(v[key], dtype=float)[np.isfinite(v[key])] > 0).all() for v in stats.values()):
        fig.update_yaxes(**LOG_AXIS)
    return fig


RATIO_ROW = f"median random ÷ DeepFool (∞ taken as {RANDOM_REACH:g})"
INFINITE_ROW = f"inputs with ratio ∞ (no random crossing within {RANDOM_REACH:g}×)"
SAMPLE_ROWS = ("median Hessian top eigenvalue", "median CURE", "median DeepFool distance",
               "median random distance", RATIO_ROW, "inputs DeepFool cannot flip (no ratio)", INFINITE_ROW)


def sample_table(stats: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """One column per model, one row per statistic (``SAMPLE_ROWS``): it fits at any width. The ratio's median is
    the box plot's: over the inputs DeepFool flipped, ∞ taken as RANDOM_REACH (``censored_ratios``)."""
    columns = {}
    for name, s in stats.items():
        ratios = censored_ratios(s["ratio"])
        columns[name] = [float(np.median(s["hessian"])), float(np.median(s["cure"])),
                         float(np.median(s["adversarial"])), float(np.median(s["random"])),
                         float(np.median(ratios)) if len(ratios) else float("nan"),
                         int((~np.isfinite(s["adversarial"])).sum()), int(np.isinf(s["ratio"]).sum())]
    return pd.DataFrame({"statistic": list(SAMPLE_ROWS), **columns})
