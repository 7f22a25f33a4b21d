"""The one place that defines session keys and their defaults (page-specific keys carry a page prefix)."""

from __future__ import annotations

from typing import Any

import streamlit as st

DATASET = "dataset"
PRIMARY_RUN = "primary_run"
COMPARISON_RUN = "comparison_run"
DEFAULTS: dict[str, Any] = {DATASET: "digits", PRIMARY_RUN: None, COMPARISON_RUN: None}


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
