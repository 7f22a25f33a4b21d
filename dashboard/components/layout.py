"""Layout that survives a projector: side-by-side panels that stack when the page is too narrow for them.

A laptop at 1024 px with the sidebar open leaves the page about 560 px. ``st.columns(2)`` always splits that, so two
charts became 270 px each (a legend cut to "PGD-A", an inset over the points, a title cut mid-word), and four
columns of controls cut "DeepFool normal" to "DeepFool nc". ``panels`` puts them in a wrapping row instead: side by
side while each keeps its minimum width, on the next line below that. The minimum widths live in assets/style.css,
chosen by the row's key prefix.
"""

from __future__ import annotations

import streamlit as st
from streamlit.delta_generator import DeltaGenerator

# Minimum width of each panel in px, by the key prefix that assets/style.css gives it: keep the two in step.
# "models": one model's panel beside the other's (Attack Lab, Playground): side by side on a 1280 px projector with
# the sidebar open (820 px for both, "large" gap included), stacked on a 1024 px laptop.
KINDS = {"chart": ("panels-", 400), "models": ("models-", 360), "controls": ("groups-", 190)}


def panels(n: int, key: str, gap: str = "medium", kind: str = "chart") -> list[DeltaGenerator]:
    """``n`` containers side by side where the page is wide enough, else wrapped onto more lines. ``kind`` "chart"
    keeps each at least 400 px wide (two charts stack on a 1024 px laptop with the sidebar open), "models" at least
    360 px, "controls" at least 190 px (four groups of inputs go two by two there). ``key`` names the row; it must
    be unique on the page."""
    prefix, _ = KINDS[kind]
    row = st.container(horizontal=True, gap=gap, key=prefix + key)
    return [row.container() for _ in range(n)]
