"""Charts of the Trade-off Explorer: worst-class vs mean robustness, training curves with ρ, ν, per-class bars."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.components.charts import (LAYOUT, OWN_SYMBOL, SHIPPED_SYMBOL, add_legend_keys, method_colour,
                                         pareto_figure, percent_axis, robust_measure)
from dashboard.components.labels import SHORT_METHOD_LABELS

STEP_TITLES = {"epoch": "epoch", "t": "iteration t (gradient steps on the whole training set)"}
# Per kind of history: (metric, line style, what it is). The patch simulation records the worst case over its
# attacks as robust_acc and PGD started at x (the paper's measure) as robust_acc_pgd.
ACCURACY_SERIES = {
    "epoch": (("clean_acc", "solid", "clean"), ("robust_acc", "dash", "PGD"), ("fgsm_acc", "dot", "FGSM")),
    "t": (("clean_acc", "solid", "clean"), ("robust_acc", "dash", "worst case"),
          ("robust_acc_pgd", "dot", "PGD from x")),
}
LOSS_SERIES = {"epoch": (("loss_nom", "solid", "ℓ_nom (clean)"), ("loss_ro", "dash", "ℓ_ro (robust)")),
               "t": (("loss", "solid", "training loss"),)}
# The loss each method trains on, for histories that keep only the total ("loss"): the shipped ERM and PGD-AT models
# were trained before ℓ_nom and ℓ_ro were recorded apart, so the loss chart showed the DALE run alone. ERM trains on
# the clean loss; the adversarial-example methods on the robust one (as core.training.methods records them now).
LOSS_OF_METHOD = {"erm": "loss_nom", "pgd-at": "loss_ro", "fgsm-rs": "loss_ro", "n-fgsm": "loss_ro"}
LEGEND_ROW_PX = 21
# The worst-class scatter's legend: entries of a fixed width (as the clean vs robust scatter beside it), two to a row
# in the half-page column of a 1280 px screen (more on a wider one), each row this tall, its top this far under the
# plot area (clear of the tick labels and the axis title).
SCATTER_ENTRY_PX, SCATTER_ENTRIES_PER_ROW, SCATTER_ROW_PX, UNDER_AXIS_TITLE_PX = 96, 2, 22, 62
SCATTER_PLOT_PX, SCATTER_TOP_PX = 290, 50
PALETTE = ("#c2410c", "#2563eb", "#16a34a", "#7c3aed", "#64748b", "#db2777")
KEY_COLOUR = "#334155"
LINE_WORDS = {"solid": "solid", "dash": "dashed", "dot": "dotted"}


def class_table(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per run with per-class robust accuracy: mean over classes and the worst class."""
    rows = []
    for run in runs:
        per_class = (run.get("final_metrics") or {}).get("per_class_robust_acc") or {}
        if not per_class:
            continue
        worst = min(per_class, key=per_class.get)
        rows.append({"id": run["id"], "name": run["name"], "method": run["method"], "source": run["source"],
                     "mean": float(np.mean(list(per_class.values()))), "worst": float(per_class[worst]),
                     "worst class": worst, "attack": run["final_metrics"].get("attack")})
    return pd.DataFrame(rows, columns=["id", "name", "method", "source", "mean", "worst", "worst class", "attack"])


def pareto(table: pd.DataFrame, highlight: Mapping[str, str] | Sequence[str] = ()) -> go.Figure:
    """The shared clean vs robust scatter (the hub's), with room around 0 % and 100 % for the points and rings;
    ``highlight`` maps run ids to the label written next to them ("primary")."""
    return pareto_figure(table, highlight)


def worst_vs_mean(table: pd.DataFrame) -> go.Figure:
    """One point per run, coloured by method and shaped like the clean vs robust scatter beside it (shipped
    circles, trained or imported diamonds)."""
    fig = go.Figure()
    for method, group in table.groupby("method"):
        fig.add_trace(go.Scatter(
            x=group["mean"].to_numpy(float), y=group["worst"].to_numpy(float), mode="markers",
            name=SHORT_METHOD_LABELS.get(str(method), str(method)), legendgroup=str(method), showlegend=False,
            marker=dict(size=13, color=method_colour(str(method)), opacity=1.0, line=dict(width=1, color="white"),
                        symbol=np.where(group["source"] == "shipped", SHIPPED_SYMBOL, OWN_SYMBOL)),
            text=group["name"].to_numpy(str), customdata=group["worst class"].to_numpy(str),
            hovertemplate="%{text}<br>mean %{x:.1%} · worst class %{customdata}: %{y:.1%}<extra></extra>"))
    add_legend_keys(fig, table)
    fig.add_trace(go.Scatter(x=np.array([0.0, 1.0]), y=np.array([0.0, 1.0]), mode="lines", name="worst = mean",
                             line=dict(dash="dot", color="#94a3b8"), hoverinfo="skip"))
    # The measure in the title, as the clean vs robust chart beside it says it on its axis ("PGD-20, own ε").
    measure = robust_measure(table["attack"])[0]
    fig.update_layout(title=f"Worst class vs mean robust accuracy ({measure}, own ε)",
                      xaxis_title="mean per-class robust accuracy", yaxis_title="robust accuracy of the worst class",
                      **LAYOUT)
    _legend_under_axis_title(fig)
    both = table[["worst", "mean"]].to_numpy(float).ravel()
    fig.update_xaxes(**percent_axis(both))
    fig.update_yaxes(**percent_axis(both))
    return fig


def _legend_under_axis_title(fig: go.Figure) -> go.Figure:
    """Fixed-width legend entries in rows whose top sits a fixed number of pixels under the plot area, with the
    bottom margin sized for the rows they need on the narrowest page. The shared layout's legend hangs at a fraction
    of the plot height, so its first row met the x-axis title; measured from the figure's bottom edge (container
    coordinates, exact in pixels at a fixed height) the legend stays below the title at any width, and a wider page
    that fits more entries to a row only leaves blank space under the last one."""
    entries = sum(t.showlegend is not False for t in fig.data)
    rows = -(-entries // SCATTER_ENTRIES_PER_ROW)
    bottom = UNDER_AXIS_TITLE_PX + rows * SCATTER_ROW_PX + 8
    height = SCATTER_TOP_PX + SCATTER_PLOT_PX + bottom
    fig.update_layout(height=height, margin=dict(LAYOUT["margin"], t=SCATTER_TOP_PX, b=bottom),
                      legend=dict(orientation="h", yref="container", y=(bottom - UNDER_AXIS_TITLE_PX) / height,
                                  yanchor="top", x=0, xanchor="left", entrywidth=SCATTER_ENTRY_PX,
                                  entrywidthmode="pixels", font=dict(size=12), tracegroupgap=0))
    return fig


def step_key(history: list[dict[str, Any]]) -> str | None:
    """What a history is recorded over: 'epoch' (the trainer), 't' (the patch simulation's iterations) or None."""
    return next((key for key in STEP_TITLES if history and all(key in h for h in history)), None)


def by_step(histories: dict[str, list[dict[str, Any]]]) -> dict[str | None, dict[str, list[dict[str, Any]]]]:
    """The histories grouped by :func:`step_key`, so a chart never puts epochs and iterations on one axis."""
    groups: dict[str | None, dict[str, list[dict[str, Any]]]] = {}
    for name, history in histories.items():
        groups.setdefault(step_key(history), {})[name] = history
    return groups


def _colour(colours: Mapping[str, str] | None, name: str, i: int) -> str:
    return colours[name] if colours and name in colours else PALETTE[i % len(PALETTE)]


def _curves(histories: dict[str, list[dict[str, Any]]], step: str,
            series: Sequence[tuple[str, str, str]], value_format: str,
            colours: Mapping[str, str] | None = None) -> go.Figure:
    """One colour per run (``colours`` by name, else the palette's), one line style per series. The legend says
    which is which in two parts: a solid line in each run's colour (its traces share its legend group) and, under
    "line style", one neutral line per series."""
    fig = go.Figure()
    nowhere = np.array([np.nan])
    drawn: set[str] = set()
    for i, (name, history) in enumerate(histories.items()):
        x = np.array([h[step] for h in history], dtype=float)
        colour = _colour(colours, name, i)
        traces = []
        for key, dash, label in series:
            values = np.array([h.get(key) for h in history], dtype=float)
            if np.isnan(values).all():
                continue
            drawn.add(key)
            traces.append(go.Scatter(
                # A run of one epoch has no line to draw: a marker shows its one value.
                x=x, y=values, mode="lines" if len(x) > 1 else "markers", name=f"{name} · {label}", legendgroup=name,
                showlegend=False, line=dict(color=colour, dash=dash), marker=dict(color=colour, size=8),
                hovertemplate=f"{label} · {name}<br>{step} %{{x}}: %{{y:{value_format}}}<extra></extra>"))
        if traces:
            fig.add_trace(go.Scatter(x=nowhere, y=nowhere, mode="lines", name=name, legendgroup=name,
                                     line=dict(color=colour, width=3)))
            fig.add_traces(traces)
    keys = [(dash, label) for key, dash, label in series if key in drawn]
    for j, (dash, label) in enumerate(keys if len(keys) > 1 else []):
        fig.add_trace(go.Scatter(x=nowhere, y=nowhere, mode="lines", name=f"{label}: {LINE_WORDS[dash]}",
                                 legendgroup="line style", line=dict(color=KEY_COLOUR, dash=dash),
                                 legendgrouptitle=dict(text="line style (every run)") if j == 0 else None))
    return fig


def legend_rows(fig: go.Figure) -> int:
    """Rows of a one-entry-per-row legend: its entries and its group titles."""
    return sum(t.showlegend is not False for t in fig.data) + sum(bool(t.legendgrouptitle.text) for t in fig.data)


def _legend_below(fig: go.Figure, entries: int, height: int) -> go.Figure:
    """One legend entry per row at the bottom of the figure, with the bottom margin grown to hold them under the
    axis title (the shared layout's legend sits at a fixed fraction of the plot height and covers the title)."""
    rows = LEGEND_ROW_PX * max(entries, 1)
    fig.update_layout(height=height + rows, margin=dict(b=80 + rows), showlegend=entries > 0,
                      legend=dict(orientation="h", yref="container", y=0, yanchor="bottom", x=0, xanchor="left",
                                  entrywidth=1, entrywidthmode="fraction", tracegroupgap=0))
    return fig


def accuracy_curves(histories: dict[str, list[dict[str, Any]]], step: str = "epoch",
                    colours: Mapping[str, str] | None = None) -> go.Figure:
    """Test accuracy over training per run: clean (solid), robust (dashed) and, where recorded, FGSM or PGD from x
    (dotted); over epochs, or over the patch simulation's iterations t."""
    fig = _curves(histories, step, ACCURACY_SERIES[step], ".1%", colours)
    fig.update_layout(title="Test accuracy over training", xaxis_title=STEP_TITLES[step], yaxis_title="accuracy",
                      **LAYOUT)
    fig.update_yaxes(tickformat=".0%")
    return _legend_below(fig, legend_rows(fig), 400)


def with_split_losses(history: list[dict[str, Any]], method: str) -> list[dict[str, Any]]:
    """``history`` with its total loss also under the name of the loss the method trains on (LOSS_OF_METHOD),
    where the epoch records neither ℓ_nom nor ℓ_ro."""
    key = LOSS_OF_METHOD.get(method)
    if key is None:
        return history
    return [{**h, key: h["loss"]} if "loss" in h and "loss_nom" not in h and "loss_ro" not in h else h
            for h in history]


def without_losses(histories: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The runs whose epochs record neither ℓ_nom nor ℓ_ro (TRADES and MART before they were split)."""
    return [name for name, history in histories.items()
            if not any("loss_nom" in h or "loss_ro" in h for h in history)]


def loss_curves(histories: dict[str, list[dict[str, Any]]], rho: dict[str, float], step: str = "epoch",
                colours: Mapping[str, str] | None = None) -> go.Figure:
    """ℓ_nom (solid) and ℓ_ro (dashed) per epoch with a dotted line at each DALE run's ρ; the patch simulation's
    training loss per iteration t."""
    fig = _curves(histories, step, LOSS_SERIES[step], ".3f", colours)
    # Each ρ labelled once, in its line's colour, the labels of successive ρ on alternate sides: two DALE runs at
    # ρ = 0.1 and 0.2 printed "ρ = 0.1" in grey under "ρ = 0.2", struck through by the 0.2 line.
    labelled: set[float] = set()
    for i, name in enumerate(histories):
        if name in rho:
            colour = _colour(colours, name, i)
            label = {} if rho[name] in labelled else dict(
                annotation_text=f"ρ = {rho[name]:g}", annotation_font_color=colour,
                annotation_position="top left" if len(labelled) % 2 == 0 else "top right")
            fig.add_hline(y=rho[name], line=dict(color=colour, dash="dot", width=1.5), **label)
            labelled.add(rho[name])
    per = "mean per epoch" if step == "epoch" else "on the whole training set"
    fig.update_layout(title="Clean and robust training loss" if step == "epoch" else "Training loss",
                      xaxis_title=STEP_TITLES[step], yaxis_title=f"training loss ({per})", **LAYOUT)
    return _legend_below(fig, legend_rows(fig), 400)


def nu_curves(histories: dict[str, list[dict[str, Any]]], colours: Mapping[str, str] | None = None) -> go.Figure:
    fig = go.Figure()
    for i, (name, history) in enumerate(histories.items()):
        values = np.array([h.get("nu") for h in history], dtype=float)
        if not np.isnan(values).all():
            fig.add_trace(go.Scatter(x=np.array([h["epoch"] for h in history]), y=values, mode="lines+markers",
                                     name=name, line=dict(color=_colour(colours, name, i))))
    fig.update_layout(title="Dual variable ν (weight of the clean loss)", xaxis_title="epoch",
                      yaxis_title="ν at the end of the epoch", **LAYOUT)
    return _legend_below(fig, len(fig.data), 400)


def per_class_bars(runs: dict[str, dict[str, float]], eps_label: str,
                   colours: Mapping[str, str] | None = None) -> go.Figure:
    fig = go.Figure()
    for i, (name, per_class) in enumerate(runs.items()):
        classes = np.array(list(per_class), dtype=str)
        fig.add_trace(go.Bar(x=classes, y=np.array([per_class[c] for c in classes], dtype=float), name=name,
                             marker_color=_colour(colours, name, i),
                             hovertemplate="class %{x}: %{y:.1%}<extra>" + name + "</extra>"))
    fig.update_layout(title="Per-class robust accuracy", xaxis_title="class",
                      yaxis_title=f"robust accuracy ({eps_label})", barmode="group", **LAYOUT)
    fig.update_xaxes(type="category")
    fig.update_yaxes(tickformat=".0%", range=[0, 1.02])
    return _legend_below(fig, len(runs), 400)


def nu_caption(histories: dict[str, list[dict[str, Any]]], configs: dict[str, dict[str, Any]]) -> str:
    """How to read the ν chart: ν moves by η_d·(ℓ_nom − ρ) after every SGD step, so with a small η_d it falls very
    slowly once ℓ_nom is below ρ; with each DALE run's own η_d and ρ and what its ν did."""
    runs = [_nu_story(name, history, configs.get(name, {})) for name, history in histories.items()]
    return ("ν rises while the clean loss exceeds ρ and falls once it is below, but slowly: it is a dual-ascent "
            "variable, ν ← max(0, ν + η_d·(ℓ_nom − ρ)) after every SGD step, with a small dual step η_d. "
            + " ".join(text for text in runs if text))


def _nu_story(name: str, history: list[dict[str, Any]], config: dict[str, Any]) -> str:
    points = [(h["epoch"], h["nu"], h.get("loss_nom")) for h in history if h.get("nu") is not None]
    if not points or "dale_dual_lr" not in config:
        return ""
    dual, rho = float(config["dale_dual_lr"]), float(config.get("dale_rho", 0.1))
    (last_epoch, last_nu, _), peak = points[-1], max(points, key=lambda p: p[1])
    if dual == 0:
        return f"{name}: η_d = 0, so ν stays at {last_nu:.3g}."
    text = f"{name} (η_d = {dual:g}, ρ = {rho:g}): "
    last_loss = points[-1][2]
    if last_loss is not None and last_loss >= rho:
        return text + (f"ν is {last_nu:.3g} after epoch {last_epoch} and still rising: the clean loss ℓ_nom "
                       f"({last_loss:.2g} in the last epoch) is above ρ, so each step adds about η_d·(ℓ_nom − ρ) = "
                       f"{dual * (last_loss - rho):.2g} to ν.")
    below = next((epoch for epoch, _, loss in points if loss is not None and loss < rho), None)
    if below is not None:
        text += f"ℓ_nom is under ρ from epoch {below}, " + ("yet " if peak[0] < last_epoch else "")
    if peak[0] < last_epoch:
        text += f"ν went from {peak[1]:.3g} (peak, epoch {peak[0]}) to {last_nu:.3g} (epoch {last_epoch})"
    else:
        text += f"ν is {last_nu:.3g} after epoch {last_epoch}"
    text += f": below ρ it falls by at most η_d·ρ = {dual * rho:.2g} per step"
    change = last_nu - points[-2][1] if len(points) > 1 else 0.0
    if change < 0:
        text += f"; at the last epoch's pace ({change:.2g}) it would reach 0 in ≈ {last_nu / -change:.0f} epochs"
    return text + "."
