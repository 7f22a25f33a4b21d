"""Figures and panels of the Latent page: the clean/adversarial scatter with its ε animation, the measures, the
drift matrix and the gallery of selected points."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.latent.maps import PAGE_POINTS
from core.latent.projection import LABELS, tsne_max_clean_points
from dashboard.components.lab_views import BASE, GRID

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")
WEBGL_ABOVE = 1000
# The Points choices, below the split's size; the whole split is the last where it holds no more than the largest.
POINT_SIZES = (100, 200, PAGE_POINTS, 1000, 2000)


def point_choices(split_size: int) -> tuple[int, ...]:
    """The sample sizes the page offers for a split of ``split_size`` points: only those below it (digits' test
    split has 450 points; 1000 and 2000 were offered there), then the whole split where it is not too many."""
    sizes = tuple(p for p in POINT_SIZES if p < split_size)
    return (*sizes, split_size) if split_size <= POINT_SIZES[-1] else sizes


def default_point_choice(choices: Sequence[int]) -> int:
    """Index of the page's default: 450 points, or the whole split where it is smaller."""
    return choices.index(PAGE_POINTS) if PAGE_POINTS in choices else len(choices) - 1


def point_label(split_size: int) -> Callable[[int], str]:
    """Labels of the Points choices: the whole split reads "all 450"."""
    return lambda n: f"all {n}" if n == split_size else str(n)


def tsne_points(n: int, eps_count: int) -> tuple[int, str]:
    """(points a t-SNE map of ``n`` chosen points at ``eps_count`` ε draws, a note saying why if fewer). t-SNE
    embeds each point with all its adversarial twins in one fit; the cap is stated before any attack runs instead
    of the page attacking everything and then drawing PCA."""
    most = tsne_max_clean_points(eps_count)
    if n <= most:
        return n, ""
    return most, (f"t-SNE embeds each clean point together with its {eps_count} adversarial twins in one fit, so it "
                  f"maps at most {most} points at {eps_count} ε: these maps use the first {most} of the {n} "
                  f"points chosen. UMAP and PCA map all {n}.")


@dataclass(frozen=True)
class Layers:
    """Which layers of the picture to draw."""

    clean: bool = True
    adversarial: bool = True
    lines: bool = True  # the page starts with lines off: hundreds of SVG segments double a slider redraw


def _colour(c: int) -> str:
    return PALETTE[c % len(PALETTE)]


def _traces(latent: Any, index: int, classes: Sequence[str], layers: Layers, kind: str) -> tuple[list[dict], list]:
    """The traces for ε index ``index`` (0 = clean only) and, per trace, the sample rows its points are."""
    y, clean_xy = latent.y, latent.clean_xy
    # Smaller marks for dense maps, and see-through crosses: an adversarial twin usually lands on its clean point,
    # and at 1,000 points opaque crosses hid every clean dot.
    dot = 6.0 if len(y) <= 600 else 4.5
    data: list[dict] = []
    rows: list[np.ndarray] = []
    # Every ε index (the clean one too) gets the same trace slots, empty where there is nothing to draw: plotly's
    # animation updates traces by position, so a frame with fewer traces would leave stale points behind.
    if layers.lines:
        seg = np.full((len(y) * 3 if index > 0 else 0, 2), np.nan, dtype=np.float32)
        if index > 0:
            seg[0::3], seg[1::3] = clean_xy, latent.positions(index)
        data.append(dict(type=kind, x=seg[:, 0], y=seg[:, 1], mode="lines", name="clean → adversarial",
                         line=dict(color="rgba(100,116,139,0.22)", width=1), hoverinfo="skip",
                         legendgroup="lines", showlegend=True))
        rows.append(np.empty(0, dtype=np.int64))
    if layers.clean:
        for c in range(len(classes)):
            members = np.nonzero(y == c)[0]
            data.append(dict(
                type=kind, x=clean_xy[members, 0], y=clean_xy[members, 1], mode="markers",
                name=f"class {classes[c]}", legendgroup=f"class{c}",
                marker=dict(color=_colour(c), size=dot, opacity=0.8, line=dict(width=0)),
                customdata=members, hovertemplate=f"#%{{customdata}} · true {classes[c]} (clean)<extra></extra>"))
            rows.append(members)
    if layers.adversarial:
        adv_xy, pred = latent.positions(index), latent.predictions(index)
        for c in range(len(classes)):
            members = np.nonzero(pred == c)[0] if index > 0 else np.empty(0, dtype=np.int64)
            data.append(dict(
                type=kind, x=adv_xy[members, 0], y=adv_xy[members, 1], mode="markers",
                name=f"adversarial → {classes[c]}", legendgroup=f"class{c}", showlegend=not layers.clean,
                marker=dict(color=_colour(c), size=dot + 2, symbol="x-thin-open" if kind == "scatter" else "x",
                            opacity=0.65, line=dict(width=1.6, color=_colour(c))),
                customdata=members, text=np.array([str(classes[t]) for t in y[members]], dtype=object),
                hovertemplate=(f"#%{{customdata}} · true %{{text}} → predicted {classes[c]} "
                               "(adversarial)<extra></extra>")))
            rows.append(members)
    return data, rows


def latent_figure(latent: Any, index: int, classes: Sequence[str], layers: Layers, title: str,
                  eps_label: str, animate: bool = False) -> tuple[go.Figure, list[np.ndarray]]:
    """The scatter at ε index ``index``; with ``animate``, plotly frames for every ε and a ▶ button that plays
    them in the browser (9× the data, so only on request). Returns the figure and the sample rows of each trace
    (to resolve a box/lasso selection)."""
    n_points = len(latent.y) * (1 + (index > 0))
    kind = "scattergl" if n_points > WEBGL_ABOVE else "scatter"
    data, rows = _traces(latent, index, classes, layers, kind)
    all_xy = np.concatenate([latent.clean_xy, latent.adv_xy.reshape(-1, 2)])
    pad = 0.05 * (all_xy.max(0) - all_xy.min(0) + 1e-9)
    lo, hi = all_xy.min(0) - pad, all_xy.max(0) + pad
    labels = ["clean", *(f"{e:g}" for e in latent.eps_grid)]
    frames = ([dict(name=label, data=_traces(latent, i, classes, layers, kind)[0]) for i, label in enumerate(labels)]
              if animate else [])
    axis = dict(GRID, showticklabels=False, title=None)
    layout = dict(
        BASE, title=dict(text=title), height=560, margin=dict(l=10, r=10, t=50, b=10), dragmode="select",
        xaxis=dict(axis, range=[float(lo[0]), float(hi[0])]),
        yaxis=dict(axis, range=[float(lo[1]), float(hi[1])]),
        legend=dict(orientation="v", font=dict(size=11), itemsizing="constant"),
        updatemenus=[] if not animate else [dict(
                          type="buttons", direction="left", x=0.0, y=-0.02, xanchor="left", yanchor="top",
                          showactive=False, buttons=[
                              dict(label="▶ animate ε", method="animate",
                                   args=[None, dict(frame=dict(duration=700, redraw=True), fromcurrent=False,
                                                    transition=dict(duration=0))]),
                              dict(label="❚❚", method="animate",
                                   args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])])],
        annotations=[dict(text=f"ε = {eps_label}", x=1.0, y=1.0, xref="paper", yref="paper", xanchor="right",
                          yanchor="bottom", showarrow=False, font=dict(size=13))])
    return go.Figure(data=data, layout=layout, frames=frames), rows


def map_title(role_title: str, latent: Any) -> str:
    """The chart's title names the projection it shows, so a screenshot says whether it is UMAP, PCA or t-SNE."""
    return f"{role_title} · {latent.info['method_label']}"


def map_caption(latent: Any, asked: str) -> str:
    """How to read one map, and where it came from. A projection other than the one chosen (UMAP needs more than
    16 points and draws PCA below that) is said here, beside the chart, not only in a banner above."""
    info, secs = latent.info, latent.info["seconds"]
    instead = ""
    if info["method"] != asked:
        instead = f"**{info['method_label']} instead of {LABELS[asked]}**" + (f": {info['note']} " if info["note"]
                                                                             else ". ")
    source = ("Computed earlier and stored: shown without recomputing." if info.get("cached") else
              f"Computed in {sum(secs.values()):.1f} s (attack {secs['attack']:.1f} s, fit {secs['fit']:.1f} s).")
    return (f"{instead}{info['method_label']} of {info['layer_label']} ({info['feature_dim']} features), "
            f"{len(latent.y)} points. Dots: clean, by true class; ×: adversarial, by predicted class. {source}")


def selected_rows(event: Any, rows: Sequence[np.ndarray]) -> np.ndarray:
    """Sample rows of the points a box/lasso selection caught (each row once, in order of first appearance)."""
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", []) or []
    picked: list[int] = []
    for point in points:
        curve, index = point.get("curve_number"), point.get("point_index", point.get("point_number"))
        if curve is None or index is None or curve >= len(rows) or index >= len(rows[curve]):
            continue
        picked.append(int(rows[curve][index]))
    return np.array(list(dict.fromkeys(picked)), dtype=np.int64)


def measures_table(maps: dict[str, Any], index: int) -> pd.DataFrame:
    """One row per model: the measures of core.latent.metrics at ε index ``index`` beside the clean ones."""
    out = []
    for name, latent in maps.items():
        s = latent.scores
        row = {"model": name.split(":")[0], "k-NN acc (clean)": float(s["knn_clean"]),
               "silhouette (clean)": float(s["silhouette_clean"])}
        if index > 0:
            i = index - 1
            row.update({"robust acc": float((latent.pred_adv[i] == latent.y).mean()),
                        "k-NN acc (adv.)": float(s["knn_adv"][i]), "silhouette (adv.)": float(s["silhouette_adv"][i]),
                        "still nearest own centroid": float(s["nearest_true"][i]),
                        "dist. to own centroid ÷ clean": float(s["true_ratio"][i])})
        out.append(row)
    return pd.DataFrame(out).set_index("model").T


def measures_over_eps(maps: dict[str, Any], eps_label: str) -> go.Figure:
    """Robust accuracy (dashed) and k-NN accuracy of the adversarial features (solid) over the ε grid, per model."""
    data = []
    for i, (name, latent) in enumerate(maps.items()):
        eps = np.concatenate([[0.0], latent.eps_grid])
        robust = np.concatenate([[(latent.pred_clean == latent.y).mean()], (latent.pred_adv == latent.y).mean(1)])
        knn = np.concatenate([[latent.scores["knn_clean"]], latent.scores["knn_adv"]])
        colour = ("#c2410c", "#64748b")[i % 2]
        role = name.split(":")[0]
        data += [dict(type="scatter", x=eps, y=knn, mode="lines+markers", name=f"k-NN acc · {role}",
                      line=dict(color=colour), hovertemplate="ε %{x:g}: %{y:.1%}<extra>k-NN · " + name + "</extra>"),
                 dict(type="scatter", x=eps, y=robust, mode="lines", name=f"robust acc · {role}",
                      line=dict(color=colour, dash="dash"),
                      hovertemplate="ε %{x:g}: %{y:.1%}<extra>robust · " + name + "</extra>")]
    layout = dict(BASE, title=dict(text="Does the layer still sort the classes?"), height=360,
                  margin=dict(l=60, r=10, t=50, b=50), legend=dict(orientation="h", y=-0.25, font=dict(size=11)),
                  xaxis=dict(GRID, title=dict(text=f"ε ({eps_label})")),
                  yaxis=dict(GRID, title=dict(text="accuracy"), tickformat=".0%", range=[0, 1.02]))
    return go.Figure(data=data, layout=layout)


def drift_figure(latent: Any, index: int, classes: Sequence[str], title: str) -> go.Figure:
    """True class → class of the nearest clean centroid of the adversarial point, as row shares."""
    counts = latent.scores["drift"][index - 1].astype(float)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    names = [str(c) for c in classes]
    data = [dict(type="heatmap", z=shares, x=names, y=names, colorscale="Blues", zmin=0, zmax=1,
                 text=counts.astype(int), texttemplate="%{text}", customdata=counts,
                 hovertemplate=("true %{y} → nearest centroid %{x}: %{z:.0%} (%{customdata:.0f} points)"
                                "<extra></extra>"),
                 colorbar=dict(title=dict(text="share"), tickformat=".0%"))]
    layout = dict(BASE, title=dict(text=title), height=380, margin=dict(l=60, r=10, t=50, b=50),
                  xaxis=dict(title=dict(text="nearest clean class centroid (adversarial point)"), type="category"),
                  yaxis=dict(title=dict(text="true class"), autorange="reversed", type="category"))
    return go.Figure(data=data, layout=layout)


def gallery(images: np.ndarray, rows: np.ndarray, latent: Any, index: int, classes: Sequence[str],
            limit: int = 24) -> None:
    """The selected sample images, large and crisp, with their true and adversarial labels."""
    shown = rows[:limit]
    pictures, captions = [], []
    for r in shown:
        img = images[r]
        img = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
        scale = max(1, 96 // img.shape[0])
        pictures.append(np.kron(img, np.ones((scale, scale) + (1,) * (img.ndim - 2))).clip(0, 1))
        after = classes[int(latent.predictions(index)[r])]
        captions.append(f"#{int(latent.indices[r])} · {classes[int(latent.y[r])]} → {after}")
    st.image(pictures, caption=captions, width=96)
    if len(rows) > limit:
        st.caption(f"Showing {limit} of {len(rows)} selected points.")
