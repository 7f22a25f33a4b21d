"""Figures and panels of the Attack Lab: clean | perturbation | adversarial, probabilities, loss trace, PNG."""

from __future__ import annotations

import io
import math
import re
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from dashboard.components.charts import BASE, GRID

# The slider re-renders these figures on every move: plain dicts (charts.BASE), ~100 ms per model less than
# make_subplots with a template.
DOMAINS = ([0.0, 0.3], [0.35, 0.65], [0.7, 1.0])
PIXEL_HOVER = "row %{y}, col %{x}: %{z:.3f}<extra></extra>"


def _panel(x: np.ndarray, axis: str, coloraxis: str, hover: str = PIXEL_HOVER) -> dict[str, Any]:
    """One image as a trace: greyscale as a heatmap (crisp pixels at any size), colour as an RGB image."""
    refs = dict(xaxis=f"x{axis}", yaxis=f"y{axis}")
    if x.ndim == 2 or x.shape[0] == 1:
        return dict(type="heatmap", z=x if x.ndim == 2 else x[0], coloraxis=coloraxis, hovertemplate=hover, **refs)
    return dict(type="image", z=(np.clip(x.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8), **refs)


def triptych(x: np.ndarray, x_adv: np.ndarray, titles: Sequence[str]) -> tuple[go.Figure, float]:
    """Clean | perturbation | adversarial in one figure, equal sizes, square pixels (C×H×W images in [0,1]).

    The perturbation (mean over channels) uses a diverging colour map centred on 0; returns its colour limit.
    """
    delta = (x_adv - x).mean(axis=0)
    scale = float(np.abs(delta).max()) or 1e-3
    titles = [titles[0], f"{titles[1]} (±{scale:.3f})", titles[2]]
    data = [_panel(x, "", "coloraxis"),
            _panel(delta, "2", "coloraxis2", "row %{y}, col %{x}: δ = %{z:+.3f}<extra></extra>"),
            _panel(x_adv, "3", "coloraxis")]
    layout: dict[str, Any] = dict(
        BASE, height=260, margin=dict(l=5, r=5, t=30, b=5),
        coloraxis=dict(colorscale="gray", cmin=0.0, cmax=1.0, showscale=False),
        coloraxis2=dict(colorscale="RdBu_r", cmid=0.0, cmin=-scale, cmax=scale, showscale=False),
        annotations=[dict(text=t, x=(low + high) / 2, y=1.0, xref="paper", yref="paper", yanchor="bottom",
                          showarrow=False, font=dict(size=13)) for t, (low, high) in zip(titles, DOMAINS)])
    for i, domain in enumerate(DOMAINS):
        suffix = "" if i == 0 else str(i + 1)
        layout[f"xaxis{suffix}"] = dict(domain=domain, visible=False, constrain="domain", anchor=f"y{suffix}")
        layout[f"yaxis{suffix}"] = dict(visible=False, autorange="reversed", constrain="domain",
                                        scaleanchor=f"x{suffix}", anchor=f"x{suffix}")
    return go.Figure(data=data, layout=layout), scale


def probs_figure(probs_clean: np.ndarray, probs_adv: np.ndarray, classes: Sequence[str], k: int = 5) -> go.Figure:
    """Top-k probabilities before and after the attack (the union of both top-k lists, most likely first), padded
    with the next most likely clean classes to k + 2 bars, so the panels of two models line up."""
    order = list(dict.fromkeys([*np.argsort(-probs_clean)[:k], *np.argsort(-probs_adv)[:k],
                                *np.argsort(-probs_clean)]))[: k + 2]
    names = np.array([f"class {classes[i]}" for i in order])
    data = [dict(type="bar", y=names, x=probs[order], orientation="h", name=name, marker=dict(color=colour),
                 hovertemplate="%{y}: %{x:.1%}<extra>" + name + "</extra>")
            for probs, name, colour in ((probs_clean, "clean", "#2563eb"), (probs_adv, "adversarial", "#c2410c"))]
    layout = dict(BASE, title=dict(text="Top classes before and after"), barmode="group", height=300,
                  margin=dict(l=80, r=10, t=46, b=40),
                  xaxis=dict(GRID, title=dict(text="probability"), range=[0, 1], tickformat=".0%"),
                  yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.25, x=0))
    return go.Figure(data=data, layout=layout)


def loss_figure(trace: np.ndarray, eps: float, label: str) -> go.Figure:
    """The attack's loss at each iteration, at the slider's ε."""
    data = [dict(type="scatter", x=np.arange(1, len(trace) + 1), y=trace, mode="lines+markers",
                 line=dict(color="#c2410c"), hovertemplate="step %{x}: %{y:.3f}<extra></extra>")]
    layout = dict(BASE, title=dict(text=f"{label} at ε = {eps:.3g}"), height=260, margin=dict(l=60, r=10, t=46, b=50),
                  xaxis=dict(GRID, title=dict(text="iteration")),
                  yaxis=dict(GRID, title=dict(text=label), tickformat=".3~g"))
    return go.Figure(data=data, layout=layout)


def decimals(step: float) -> int:
    """Digits a slider needs so every grid point shows as itself (0.0975, not 0.098), at least 3."""
    return int(min(max(3, -math.floor(math.log10(step)) + 1), 6)) if step > 0 else 3


def png_bytes(x: np.ndarray) -> bytes:
    """A C×H×W image in [0,1] as an 8-bit PNG at its native size."""
    from PIL import Image

    array = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(array[0], mode="L") if x.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def smallest_flip(sweep: Any, flip: dict[str, Any]) -> tuple[float | None, str]:
    """The smallest ε known to flip the example: the minimal-norm attack's perturbation or the grid's first flip,
    whichever is smaller (neither search is exact), and a sentence saying which."""
    first = sweep.flip_index()
    grid_eps = float(sweep.eps_grid[first]) if first is not None else None
    found = {"grid": grid_eps, "min-norm": flip.get("eps")}
    known = {k: v for k, v in found.items() if v is not None}
    if not known:
        return None, (f"Neither {flip.get('method') or 'a minimal-norm attack'} ({flip.get('note') or 'no flip'}) "
                      "nor the attack on the ε grid flipped it.")
    source = min(known, key=known.__getitem__)
    method = (flip.get("method") or "minimal-norm").upper()
    if source == "grid":
        text = "The attack on the ε grid first flips it at this ε" + (
            f"; {method} found {known['min-norm']:.3f}" if "min-norm" in known else "") + "."
    else:
        text = f"{method}'s minimal perturbation" + (
            f"; the grid's first flip is at {known['grid']:.3f}" if "grid" in known else "") + "."
    return known[source], text


def model_panel(sweep: Any, index: int, flip: dict[str, Any], classes: Sequence[str], *, label: str,
                key: str, trace_label: str | None) -> None:
    """Everything for one model at one ε: verdict, three images, probabilities, loss, download."""
    eps = float(sweep.eps_grid[index])
    x_adv = sweep.x_adv[index]
    pred = int(sweep.pred_adv[index])
    flipped = pred != sweep.y
    # An upload's true class is the user's word: when the clean image is already misclassified, nothing the attack
    # does is a success, and the badge must not credit it.
    wrong_clean = int(sweep.pred_clean) != int(sweep.y)
    verdict = (f":orange-badge[misclassified before any attack → {classes[pred]}]" if wrong_clean
               else f":red-badge[fooled → {classes[pred]}]" if flipped else f":green-badge[still {classes[pred]}]")
    # Title and verdict on their own lines: a badge wrapping under a long name pushed one model's images down.
    st.markdown(f"#### {label}")
    st.container(key=f"{key}_verdict").markdown(verdict)  # keyed: browser tests and benches find it by class
    fig, scale = triptych(sweep.x, x_adv, (f"clean → {classes[sweep.pred_clean]}", "perturbation δ",
                                           f"adversarial → {classes[pred]}"))
    st.plotly_chart(fig, key=f"{key}_images", config={"displayModeBar": False})
    amplify = 0.5 / scale if scale > 0 else 1.0
    st.caption(f"δ colours span ±{scale:.3f} in image units (red brighter, blue darker), i.e. amplified "
               f"×{amplify:.1f} against the images, whose grey scale spans 0–1.")
    stats = st.columns(3)
    stats[0].metric("prediction", str(classes[pred]),
                    delta="already wrong" if wrong_clean else "fooled" if flipped else "correct",
                    delta_color="off" if wrong_clean else "inverse" if flipped else "normal")
    change = sweep.probs_adv[index][sweep.y] - sweep.probs_clean[sweep.y]
    stats[1].metric(f"p(true class {classes[sweep.y]})", f"{sweep.probs_adv[index][sweep.y]:.1%}",
                    delta=f"{change:+.1%}", delta_color="off" if abs(change) < 5e-4 else "normal")
    value, how = smallest_flip(sweep, flip)
    stats[2].metric("smallest flipping ε", "—" if value is None else f"{value:.3f}", help=how)
    st.plotly_chart(probs_figure(sweep.probs_clean, sweep.probs_adv[index], classes), key=f"{key}_probs",
                    config={"displayModeBar": False})
    if trace_label and sweep.loss_trace.size and sweep.loss_trace.shape[0] > 1:
        st.plotly_chart(loss_figure(sweep.loss_trace[:, index], eps, trace_label), key=f"{key}_loss",
                        config={"displayModeBar": False})
    slug = re.sub(r"[^a-z0-9]+", "-", label.split(":", 1)[-1].lower()).strip("-")
    st.download_button("Download adversarial image (PNG)", png_bytes(x_adv),
                       file_name=f"adversarial_{slug}_class-{classes[sweep.y]}_eps-{eps:.4g}.png",
                       mime="image/png", key=f"{key}_png", icon=":material/download:",
                       help="Native resolution, 8-bit: rounding to 8 bits can undo a very small perturbation.")
