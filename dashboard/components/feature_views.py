"""Figures of the Features page: attribution maps clean vs adversarial, the measures' table and boxes, the unit
quadrant, unit activations."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from core.features.units import CONSTANT
from dashboard.components.charts import BASE, GRID

QUADRANT_COLOURS = {"useful & robust": "#16a34a", "useful & non-robust": "#c2410c",
                    "not useful & robust": "#94a3b8", "not useful & non-robust": "#f59e0b",
                    CONSTANT: "#52525b"}
DOMAINS = ([0.0, 0.22], [0.26, 0.48], [0.52, 0.74], [0.78, 1.0])


def _image(x: np.ndarray) -> np.ndarray:
    return x[0] if x.shape[0] == 1 else x.mean(axis=0)


def attribution_figure(x: np.ndarray, attr: np.ndarray, x_adv: np.ndarray, attr_adv: np.ndarray, title: str,
                       labels: Sequence[str]) -> go.Figure:
    """image | attribution | adversarial image | attribution, the two maps on one symmetric colour scale."""
    a, b = _image(attr), _image(attr_adv)
    scale = float(max(np.abs(a).max(), np.abs(b).max())) or 1e-6
    panels = [(_image(x), "gray", 0, 1), (a, "RdBu_r", -scale, scale), (_image(x_adv), "gray", 0, 1),
              (b, "RdBu_r", -scale, scale)]
    data, layout = [], dict(BASE, title=dict(text=title), height=275, margin=dict(l=5, r=5, t=75, b=5))
    for i, ((z, colours, lo, hi), domain, label) in enumerate(zip(panels, DOMAINS, labels)):
        suffix = "" if i == 0 else str(i + 1)
        data.append(dict(type="heatmap", z=z, colorscale=colours, zmin=lo, zmax=hi, showscale=False,
                         xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                         hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra>" + label.replace("<br>", " · ")
                                       + "</extra>"))
        layout[f"xaxis{suffix}"] = dict(domain=domain, visible=False, constrain="domain", anchor=f"y{suffix}")
        layout[f"yaxis{suffix}"] = dict(visible=False, autorange="reversed", scaleanchor=f"x{suffix}",
                                        constrain="domain", anchor=f"x{suffix}")
    layout["annotations"] = [dict(text=label, x=(d[0] + d[1]) / 2, y=1.0, xref="paper", yref="paper",
                                  yanchor="bottom", showarrow=False, font=dict(size=12))
                             for label, d in zip(labels, DOMAINS)]
    return go.Figure(data=data, layout=layout)


def quadrant_figure(report: dict[str, Any], title: str) -> go.Figure:
    use, rob, quad = report["usefulness"], report["robustness"], report["quadrant"]
    data = []
    for name, colour in QUADRANT_COLOURS.items():
        idx = np.nonzero(quad == name)[0]
        if name == CONSTANT and not len(idx):
            continue  # a legend entry only where there are such units
        data.append(dict(type="scatter", x=use[idx], y=rob[idx], mode="markers", name=name, customdata=idx,
                         marker=dict(color=colour, size=8, line=dict(width=0.5, color="white"),
                                     symbol="x" if name == CONSTANT else "circle"),
                         hovertemplate="unit %{customdata}: usefulness %{x:.2f}, robustness %{y:.2f}"
                                       + (" (constant on the clean sample)" if name == CONSTANT else "")
                                       + "<extra></extra>"))
    off = report["ablated_units"]
    data.append(dict(type="scatter", x=use[off], y=rob[off], mode="markers", name="switched off below",
                     marker=dict(size=15, symbol="circle-open", color="#111", line=dict(width=2)), hoverinfo="skip"))
    layout = dict(BASE, title=dict(text=title), height=400, margin=dict(l=60, r=10, t=50, b=50),
                  xaxis=dict(GRID, title=dict(text="usefulness η² (class separation, clean)"), range=[-0.02, 1.02]),
                  yaxis=dict(GRID, title=dict(text="robustness 1/(1 + movement under attack)"), range=[-0.02, 1.02]),
                  legend=dict(orientation="h", y=-0.2, font=dict(size=11)),
                  shapes=[dict(type="line", x0=float(np.median(use)), x1=float(np.median(use)), y0=0, y1=1,
                               line=dict(dash="dot", color="#94a3b8")),
                          dict(type="line", y0=float(np.median(rob)), y1=float(np.median(rob)), x0=0, x1=1,
                               line=dict(dash="dot", color="#94a3b8"))])
    return go.Figure(data=data, layout=layout)


def example_units(report: dict[str, Any], example: int, k: int = 10) -> np.ndarray:
    """The ``k`` units whose activation the attack moves most on this example (the sample's most-moved units were
    often silent on a given example: bars of height 0 on both sides)."""
    moved = np.abs(np.asarray(report["adv_act"][example]) - np.asarray(report["clean_act"][example]))
    return np.argsort(-moved, kind="stable")[:k]


def activation_figure(report: dict[str, Any], example: int, title: str) -> go.Figure:
    """One example's activations of the 10 units the attack moves most on it, clean vs adversarial."""
    units = example_units(report, example)
    # Unit numbers alone, on a category axis: "unit 15 unit 16 …" ran together on one chart and was tilted on the
    # one beside it (plotly rotates only when labels overlap).
    names = np.array([str(u) for u in units])
    data = [dict(type="bar", x=names, y=report[key][example][units], name=name, marker=dict(color=colour),
                 hovertemplate="unit %{x}: %{y:.3g}<extra>" + name + "</extra>")
            for key, name, colour in (("clean_act", "clean", "#2563eb"), ("adv_act", "adversarial", "#c2410c"))]
    # Legend at the top right, clear of the unit labels and the axis title under them.
    layout = dict(BASE, title=dict(text=title), height=360, barmode="group", margin=dict(l=60, r=10, t=70, b=60),
                  xaxis=dict(type="category", tickangle=0,
                             title=dict(text="unit: the ones the attack moves most on this example")),
                  # A convolutional layer's unit is a channel, drawn as its mean over the map; a dense layer's is one.
                  yaxis=dict(GRID, title=dict(text="activation" + (" (channel mean)" if report.get("clean_maps")
                                                                   is not None else ""))),
                  legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1))
    return go.Figure(data=data, layout=layout)


def activation_maps_figure(report: dict[str, Any], example: int, title: str) -> go.Figure:
    """Spatial activation maps of the 4 most-moved channels for one example: clean (top row) vs adversarial
    (bottom row), each channel's pair on one colour scale."""
    clean, adv, units = report["clean_maps"][example], report["adv_maps"][example], report["most_moved"][:4]
    cols = len(clean)
    gap = 0.04
    width = (1 - gap * (cols - 1)) / cols
    data, layout = [], dict(BASE, title=dict(text=title), height=360, margin=dict(l=70, r=10, t=70, b=10))
    annotations = []
    for row, (maps, label) in enumerate(((clean, "clean"), (adv, "adversarial"))):
        for col in range(cols):
            i = row * cols + col
            suffix = "" if i == 0 else str(i + 1)
            top = max(float(np.abs(clean[col]).max()), float(np.abs(adv[col]).max())) or 1e-6
            domain_x = [col * (width + gap), col * (width + gap) + width]
            domain_y = [0.52, 1.0] if row == 0 else [0.0, 0.46]
            data.append(dict(type="heatmap", z=maps[col], colorscale="Viridis", zmin=0 if maps.min() >= 0 else -top,
                             zmax=top, showscale=False, xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                             hovertemplate=f"unit {units[col]} ({label})<br>row %{{y}}, col %{{x}}: %{{z:.3f}}"
                                           "<extra></extra>"))
            layout[f"xaxis{suffix}"] = dict(domain=domain_x, visible=False, constrain="domain", anchor=f"y{suffix}")
            layout[f"yaxis{suffix}"] = dict(domain=domain_y, visible=False, autorange="reversed",
                                            scaleanchor=f"x{suffix}", constrain="domain", anchor=f"x{suffix}")
            if row == 0:
                annotations.append(dict(text=f"unit {units[col]}", x=(domain_x[0] + domain_x[1]) / 2, y=1.0,
                                        xref="paper", yref="paper", yanchor="bottom", showarrow=False))
        annotations.append(dict(text=label, x=-0.01, y=0.76 if row == 0 else 0.23, xref="paper", yref="paper",
                                xanchor="right", showarrow=False, textangle=-90))
    layout["annotations"] = annotations
    return go.Figure(data=data, layout=layout)


# Row labels of the means table, short enough that it fits its column whole on a 1280 px screen (the caption under
# it says what each measure is), with its column widths in pixels.
MEASURE_ROWS = {"rank_correlation": "rank correlation", "topk_overlap": "top-10% overlap",
                "low_freq_clean": "low freq. (clean)", "low_freq_adv": "low freq. (adv.)",
                "strokes_clean": "on strokes (clean)", "strokes_adv": "on strokes (adv.)"}
MEASURE_WIDTHS = {"_index": 130, "Primary": 72, "Comparison": 96}


def measures_table(summaries: dict[str, dict[str, float]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The means of the attribution measures, one column per model (``summaries``: column name → measures), and the
    column configuration that keeps the table whole in a narrow column: fixed widths, three decimals."""
    table = pd.DataFrame(summaries).rename(index=MEASURE_ROWS)
    config: dict[str, Any] = {"_index": st.column_config.TextColumn(width=MEASURE_WIDTHS["_index"])}
    for column in table.columns:
        config[column] = st.column_config.NumberColumn(format="%.3f", width=MEASURE_WIDTHS.get(column, 96))
    return table, config


# Short two-line labels that fit six groups in half a page without rotating at 1280 px and up (the table beside it
# has the full names); narrower, plotly turns them (they overlapped at 1024 px when held level).
MEASURES = {"rank_correlation": "rank<br>corr.", "topk_overlap": "top-10%<br>overlap",
            "low_freq_clean": "low freq.<br>clean", "low_freq_adv": "low freq.<br>adv.",
            "strokes_clean": "strokes<br>clean", "strokes_adv": "strokes<br>adv."}
# Primary, comparison when no colours are given: the same order as Geometry's (MODEL_COLOURS there).
RUN_COLOURS = ("#c2410c", "#2563eb")


def measures_figure(per_sample: dict[str, dict[str, np.ndarray]], title: str,
                    colours: Mapping[str, str] | None = None) -> go.Figure:
    """Box plots of each per-sample attribution measure, one colour per model (``per_sample``: name → measures):
    its method's from ``colours`` (charts.run_colours, as on the other pages), else primary orange, comparison
    blue."""
    data, low = [], 0.0
    for i, (name, measures) in enumerate(per_sample.items()):
        colour = (colours or {}).get(name, RUN_COLOURS[i % len(RUN_COLOURS)])
        xs, ys = [], []
        for key, label in MEASURES.items():
            if key in measures:
                values = np.asarray(measures[key], dtype=float)
                values = values[np.isfinite(values)]
                xs += [label] * len(values)
                ys += values.tolist()
                low = min(low, float(values.min(initial=0.0)))
        data.append(dict(type="box", x=xs, y=ys, name=name, marker=dict(color=colour), boxpoints="outliers",
                         hovertemplate="%{y:.3f}<extra>" + name + "</extra>"))
    layout = dict(BASE, title=dict(text=title), height=380, boxmode="group", margin=dict(l=60, r=10, t=50, b=90),
                  xaxis=dict(tickfont=dict(size=11)),  # no tickangle: plotly turns them when they would collide
                  yaxis=dict(GRID, title=dict(text="per sample point"), range=[low - 0.05, 1.05]),
                  legend=dict(orientation="h", y=-0.3))
    return go.Figure(data=data, layout=layout)
