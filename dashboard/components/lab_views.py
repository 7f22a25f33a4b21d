"""Figures and panels of the Attack Lab: clean | perturbation | adversarial, probabilities, loss trace, PNG."""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
import streamlit as st

def _grey(z: np.ndarray, coloraxis: str) -> go.Heatmap:
    return go.Heatmap(z=z, coloraxis=coloraxis, hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra></extra>")


def _rgb(x: np.ndarray) -> go.Image:
    return go.Image(z=(np.clip(x.transpose(1, 2, 0), 0, 1) * 255).astype(np.uint8))


def triptych(x: np.ndarray, x_adv: np.ndarray, titles: Sequence[str]) -> tuple[go.Figure, float]:
    """Clean | perturbation | adversarial in one figure, equal sizes, square pixels.

    Images are C×H×W in [0,1]: greyscale as heatmaps (crisp pixels at any size), colour as RGB images. The
    perturbation (mean over channels) uses a diverging colour map centred on 0; returns its colour-scale limit.
    """
    delta = (x_adv - x).mean(axis=0)
    scale = float(np.abs(delta).max()) or 1e-3
    titles = [titles[0], f"{titles[1]} (±{scale:.3f})", titles[2]]
    fig = make_subplots(rows=1, cols=3, subplot_titles=titles, horizontal_spacing=0.05)
    grey = x.shape[0] == 1
    fig.add_trace(_grey(x[0], "coloraxis") if grey else _rgb(x), row=1, col=1)
    fig.add_trace(go.Heatmap(z=delta, coloraxis="coloraxis2",
                             hovertemplate="row %{y}, col %{x}: δ = %{z:+.3f}<extra></extra>"), row=1, col=2)
    fig.add_trace(_grey(x_adv[0], "coloraxis") if grey else _rgb(x_adv), row=1, col=3)
    fig.update_layout(
        coloraxis=dict(colorscale="gray", cmin=0.0, cmax=1.0, showscale=False),
        coloraxis2=dict(colorscale="RdBu_r", cmid=0.0, cmin=-scale, cmax=scale, showscale=False),
        height=260, margin=dict(l=5, r=5, t=30, b=5), template="plotly_white", font=dict(size=13))
    fig.update_annotations(font_size=14)
    for col in (1, 2, 3):
        fig.update_xaxes(visible=False, constrain="domain", row=1, col=col)
        fig.update_yaxes(visible=False, autorange="reversed", constrain="domain", row=1, col=col,
                         scaleanchor="x" if col == 1 else f"x{col}")
    return fig, scale


def probs_figure(probs_clean: np.ndarray, probs_adv: np.ndarray, classes: Sequence[str], k: int = 5) -> go.Figure:
    """Top-k probabilities before and after the attack (the union of both top-k lists, most likely first)."""
    order = list(dict.fromkeys([*np.argsort(-probs_clean)[:k], *np.argsort(-probs_adv)[:k]]))[: k + 2]
    names = np.array([f"class {classes[i]}" for i in order])
    fig = go.Figure()
    fig.add_trace(go.Bar(y=names, x=probs_clean[order], orientation="h", name="clean", marker_color="#2563eb",
                         hovertemplate="%{y}: %{x:.1%}<extra>clean</extra>"))
    fig.add_trace(go.Bar(y=names, x=probs_adv[order], orientation="h", name="adversarial", marker_color="#c2410c",
                         hovertemplate="%{y}: %{x:.1%}<extra>adversarial</extra>"))
    fig.update_layout(title="Top classes before and after", barmode="group", height=300, template="plotly_white",
                      margin=dict(l=80, r=10, t=46, b=40), xaxis=dict(title="probability", range=[0, 1],
                                                                      tickformat=".0%"),
                      yaxis=dict(autorange="reversed"), legend=dict(orientation="h", y=-0.25, x=0),
                      font=dict(size=13))
    return fig


def loss_figure(trace: np.ndarray, eps: float, label: str) -> go.Figure:
    """The attack's loss at each iteration, at the slider's ε."""
    steps = np.arange(1, len(trace) + 1)
    fig = go.Figure(go.Scatter(x=steps, y=trace, mode="lines+markers", line=dict(color="#c2410c"),
                               hovertemplate="step %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title=f"{label} at ε = {eps:.3g}", xaxis_title="iteration", yaxis_title=label, height=260,
                      yaxis_tickformat=".3~g",
                      template="plotly_white", margin=dict(l=60, r=10, t=46, b=50), font=dict(size=13))
    return fig


def png_bytes(x: np.ndarray) -> bytes:
    """A C×H×W image in [0,1] as an 8-bit PNG at its native size."""
    from PIL import Image

    array = np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)
    image = Image.fromarray(array[0], mode="L") if x.shape[0] == 1 else Image.fromarray(array.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def model_panel(sweep: Any, index: int, flip: dict[str, Any], classes: Sequence[str], *, label: str,
                key: str, trace_label: str | None) -> None:
    """Everything for one model at one ε: verdict, three images, probabilities, loss, download."""
    eps = float(sweep.eps_grid[index])
    x_adv = sweep.x_adv[index]
    pred = int(sweep.pred_adv[index])
    flipped = pred != sweep.y
    verdict = f":red-badge[fooled → {classes[pred]}]" if flipped else f":green-badge[still {classes[pred]}]"
    st.markdown(f"#### {label}  {verdict}")
    fig, scale = triptych(sweep.x, x_adv, (f"clean → {classes[sweep.pred_clean]}", "perturbation δ",
                                           f"adversarial → {classes[pred]}"))
    st.plotly_chart(fig, key=f"{key}_images", config={"displayModeBar": False})
    amplify = 0.5 / scale if scale > 0 else 1.0
    st.caption(f"δ colours span ±{scale:.3f} in image units (red brighter, blue darker), i.e. amplified "
               f"×{amplify:.1f} against the images, whose grey scale spans 0–1.")
    stats = st.columns(3)
    stats[0].metric("prediction", str(classes[pred]), delta="fooled" if flipped else "correct",
                    delta_color="inverse" if flipped else "normal")
    stats[1].metric(f"p(true class {classes[sweep.y]})", f"{sweep.probs_adv[index][sweep.y]:.1%}",
                    delta=f"{sweep.probs_adv[index][sweep.y] - sweep.probs_clean[sweep.y]:+.1%}")
    stats[2].metric("smallest flipping ε", "—" if flip.get("eps") is None else f"{flip['eps']:.3f}",
                    help=f"Minimal perturbation found by {flip.get('method') or 'no attack'} "
                         f"({flip.get('note') or 'unbounded search'}).")
    st.plotly_chart(probs_figure(sweep.probs_clean, sweep.probs_adv[index], classes), key=f"{key}_probs",
                    config={"displayModeBar": False})
    if trace_label and sweep.loss_trace.size and sweep.loss_trace.shape[0] > 1:
        st.plotly_chart(loss_figure(sweep.loss_trace[:, index], eps, trace_label), key=f"{key}_loss",
                        config={"displayModeBar": False})
    st.download_button("Download adversarial image (PNG)", png_bytes(x_adv), file_name=f"adversarial_{key}.png",
                       mime="image/png", key=f"{key}_png", icon=":material/download:",
                       help="Native resolution, 8-bit: rounding to 8 bits can undo a very small perturbation.")
