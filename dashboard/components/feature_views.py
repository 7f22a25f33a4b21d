"""Figures of the Features page: attribution maps clean vs adversarial, the unit quadrant, unit activations."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import plotly.graph_objects as go

from dashboard.components.lab_views import BASE, GRID

QUADRANT_COLOURS = {"useful & robust": "#16a34a", "useful & non-robust": "#c2410c",
                    "not useful & robust": "#94a3b8", "not useful & non-robust": "#f59e0b"}
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
    data, layout = [], dict(BASE, title=dict(text=title), height=260, margin=dict(l=5, r=5, t=60, b=5))
    for i, ((z, colours, lo, hi), domain, label) in enumerate(zip(panels, DOMAINS, labels)):
        suffix = "" if i == 0 else str(i + 1)
        data.append(dict(type="heatmap", z=z, colorscale=colours, zmin=lo, zmax=hi, showscale=False,
                         xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                         hovertemplate="row %{y}, col %{x}: %{z:.3f}<extra>" + label + "</extra>"))
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
        data.append(dict(type="scatter", x=use[idx], y=rob[idx], mode="markers", name=name, customdata=idx,
                         marker=dict(color=colour, size=8, line=dict(width=0.5, color="white")),
                         hovertemplate="unit %{customdata}: usefulness %{x:.2f}, robustness %{y:.2f}<extra></extra>"))
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


def activation_figure(report: dict[str, Any], title: str) -> go.Figure:
    """The first example's activations of the 10 units the attack moves most, clean vs adversarial."""
    units = report["most_moved"]
    names = np.array([f"unit {u}" for u in units])
    data = [dict(type="bar", x=names, y=report[key][units], name=name, marker=dict(color=colour))
            for key, name, colour in (("clean_act", "clean", "#2563eb"), ("adv_act", "adversarial", "#c2410c"))]
    layout = dict(BASE, title=dict(text=title), height=340, barmode="group", margin=dict(l=60, r=10, t=50, b=60),
                  xaxis=dict(title=dict(text="units that move most under attack (over the sample)")),
                  yaxis=dict(GRID, title=dict(text="activation (channel mean for convolutions)")),
                  legend=dict(orientation="h", y=-0.3))
    return go.Figure(data=data, layout=layout)
