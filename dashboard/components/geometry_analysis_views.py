"""Charts of the Geometry page's heavy analyses: DeepFool margins per class, margins along DCT subspaces, and the
universal perturbation (its image, fooling rate, labels and the singular values of the normals)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from dashboard.components.charts import LAYOUT
from dashboard.components.geometry_views import PLAIN, LOG_AXIS, model_colours


def margin_boxes(results: dict[str, Any], classes: Sequence[str], norm: str,
                 colours: Mapping[str, str] | None = None) -> go.Figure:
    """DeepFool margins per true class (correctly classified points), one box per model and class."""
    fig = go.Figure()
    for (name, result), colour in zip(results.items(), model_colours(results, colours)):
        margin = np.asarray(getattr(result, f"margin_{norm}"), dtype=float)
        keep = result.correct & np.isfinite(margin)
        labels = np.asarray([str(classes[int(c)]) for c in result.y[keep]])
        fig.add_trace(go.Box(x=labels, y=margin[keep], name=name, marker_color=colour, boxpoints=False))
    fig.update_layout(title=f"DeepFool {'ℓ2' if norm == 'l2' else 'ℓ∞'} margin per class", boxmode="group",
                      height=420, xaxis_title="true class", yaxis_title=f"‖r‖{'₂' if norm == 'l2' else '∞'}",
                      **LAYOUT)
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[str(c) for c in classes])
    return fig


def dct_figure(results: dict[str, Any], colours: Mapping[str, str] | None = None) -> go.Figure:
    """Median ‖r‖₂ per DCT subspace (low → high frequency) with the inter-quartile band; ∞ drawn at the top."""
    fig = go.Figure()
    finite_top = max([float(np.nanmax(np.where(np.isfinite(r.q75), r.q75, np.nan), initial=0.0))
                      for r in results.values()] + [float(np.nanmax(np.where(np.isfinite(r.medians), r.medians,
                                                                                  np.nan), initial=0.0))
                                                     for r in results.values()])
    ceiling = 1.15 * finite_top if finite_top > 0 else 1.0
    for (name, r), colour in zip(results.items(), model_colours(results, colours)):
        x = np.arange(1, len(r.medians) + 1)
        med = np.where(np.isfinite(r.medians), r.medians, ceiling)
        q25 = np.where(np.isfinite(r.q25), r.q25, ceiling)
        q75 = np.where(np.isfinite(r.q75), r.q75, ceiling)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([q75, q25[::-1]]), fill="toself",
                                 mode="lines", fillcolor=colour, opacity=0.18, line=dict(width=0), hoverinfo="skip",
                                 name=f"{name}: inter-quartile", showlegend=False))
        full = float(r.info.get("full_median", np.nan))
        if np.isfinite(full):
            fig.add_hline(y=min(full, ceiling), line=dict(color=colour, dash="dash", width=1),
                          annotation_text=f"{name.split(':')[0]}: unconstrained DeepFool", annotation_font_size=11)
        inf = ~np.isfinite(r.medians)
        fig.add_trace(go.Scatter(x=x, y=med, mode="lines+markers", name=name, line=dict(color=colour, width=2.5),
                                 marker=dict(size=np.where(inf, 14, 8), symbol=np.where(inf, "triangle-up", "circle")),
                                 customdata=np.stack([r.invariant, r.starts], axis=1),
                                 hovertemplate="subspace %{x} (frequencies from %{customdata[1]}): median "
                                               "%{y:.3f}<br>%{customdata[0]} points invariant<extra></extra>"))
    fig.add_hline(y=ceiling, line=dict(color="#94a3b8", dash="dot"), annotation_text="∞ (invariant: no flip)",
                  annotation_position="top left")
    fig.update_layout(title="Margin along DCT subspaces, low → high frequency", height=420,
                      xaxis_title="subspace (block on the DCT diagonal; 1 = lowest frequencies)",
                      yaxis_title="median ‖r‖₂ (band: 25–75 %)", **LAYOUT)
    fig.update_yaxes(range=[0, ceiling * 1.08])
    fig.update_xaxes(dtick=1)
    return fig


def image_limit(images: Sequence[np.ndarray]) -> float:
    """One symmetric colour range for images shown side by side (channel means, as drawn)."""
    means = [np.asarray(i, dtype=float) for i in images]
    return max([float(np.abs(m.mean(axis=0) if m.ndim == 3 else m).max()) for m in means], default=0.0) or 1.0


def image_figure(image: np.ndarray, title: str, *, diverging: bool = True, limit: float | None = None) -> go.Figure:
    """A single image (C×H×W, channel-mean shown), symmetric colour scale ±``limit`` (its own when None)."""
    z = np.asarray(image, dtype=float)
    z = z.mean(axis=0) if z.ndim == 3 else z
    limit = limit or image_limit([z])
    fig = go.Figure(go.Heatmap(z=z[::-1], colorscale="RdBu" if diverging else "Greys", zmid=0 if diverging else None,
                               zmin=-limit if diverging else None, zmax=limit if diverging else None,
                               colorbar=dict(len=0.8), hovertemplate="%{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, height=340, **{**PLAIN, "margin": dict(l=20, r=20, t=50, b=20)})
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, scaleanchor="x")
    return fig


def fooling_figure(results: dict[str, Any], target: float, colours: Mapping[str, str] | None = None) -> go.Figure:
    fig = go.Figure()
    for (name, r), colour in zip(results.items(), model_colours(results, colours)):
        x = np.arange(1, len(r.fooling_rate) + 1)
        fig.add_trace(go.Scatter(x=x, y=r.fooling_rate, mode="lines+markers", name=name, line=dict(color=colour)))
        best = int(r.info.get("best_pass", len(x)))
        fig.add_trace(go.Scatter(x=[best], y=[r.fooling_rate[best - 1]], mode="markers", showlegend=False,
                                 marker=dict(size=16, symbol="circle-open", color=colour, line=dict(width=2)),
                                 hovertemplate="kept: pass %{x}<extra></extra>"))
    fig.add_hline(y=target, line=dict(color="#111", dash="dot"), annotation_text="target 1 − δ")
    fig.update_layout(title="Fooling rate after each pass", height=380, xaxis_title="pass over the images",
                      yaxis_title="fooling rate", **{**LAYOUT, "margin": dict(l=60, r=20, t=50, b=100),
                                                     "legend": {**LAYOUT["legend"], "yref": "container",
                                                                "yanchor": "bottom", "y": 0}})
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    fig.update_xaxes(dtick=1)
    return fig


def label_figure(result: Any, classes: Sequence[str], title: str) -> go.Figure:
    names = [str(c) for c in classes]
    fig = go.Figure([go.Bar(x=names, y=result.clean_label_counts, name="f(x)", marker_color="#94a3b8"),
                     go.Bar(x=names, y=result.adv_label_counts, name="f(x + v)", marker_color="#c2410c")])
    fig.update_layout(title=title, barmode="group", height=340, xaxis_title="predicted class",
                      yaxis_title="images", **LAYOUT)
    fig.update_xaxes(type="category")
    return fig


def singular_figure(results: dict[str, Any], colours: Mapping[str, str] | None = None) -> go.Figure:
    fig = go.Figure()
    for (name, r), colour in zip(results.items(), model_colours(results, colours)):
        k = np.arange(1, len(r.singular_normals) + 1)
        fig.add_trace(go.Scatter(x=k, y=r.singular_normals, name=f"{name}: DeepFool normals",
                                 line=dict(color=colour, width=2.5)))
        fig.add_trace(go.Scatter(x=k, y=r.singular_random, name=f"{name}: random vectors",
                                 line=dict(color=colour, width=1.5, dash="dot")))
    fig.update_layout(title="Singular values of stacked unit normals vs random", height=420,
                      xaxis_title="index", yaxis_title="singular value (log)",
                      **{**LAYOUT, "margin": dict(l=60, r=20, t=50, b=130), "legend": {**LAYOUT["legend"],
                                                                                       "y": -0.22}})
    # One label per decade: plotly's default log labels (5, 2, 1, 5, 2, 0.1, …) read as a jumble.
    fig.update_yaxes(**{**LOG_AXIS, "minor": dict(ticks="inside", showgrid=True)})
    return fig
