"""Every cache wrapper of the app. Registry reads are short-lived caches; models are resources."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.store import Registry
from core.store.shipped import register_shipped


@st.cache_resource
def registry() -> Registry:
    reg = Registry()
    register_shipped(reg)
    return reg


@st.cache_data(ttl=2, max_entries=8)
def runs_table(dataset: str | None = None) -> pd.DataFrame:
    rows: list[dict[str, Any]] = []
    for run in registry().list_runs(dataset=dataset):
        metrics = run["final_metrics"]
        rows.append({"id": run["id"], "name": run["name"], "dataset": run["dataset"], "arch": run["arch"],
                     "method": run["method"], "ε": run["eps"], "clean acc": metrics.get("clean_acc"),
                     "robust acc": metrics.get("robust_acc"), "status": run["status"],
                     "created": pd.to_datetime(run["created_at"], unit="s")})
    return pd.DataFrame(rows)


@st.cache_data(max_entries=4)
def dataset_names() -> list[str]:
    from core.data import DATASETS

    return sorted(DATASETS)
