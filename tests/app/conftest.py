"""AppTest fixtures: caches leak between AppTest instances, so clear them around every test."""

from __future__ import annotations

import pytest
import streamlit as st


@pytest.fixture(autouse=True)
def clear_streamlit_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture(autouse=True)
def no_umap_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """The app's background UMAP compile (for the real server) would only compete for the CPU in these tests."""
    monkeypatch.setenv("ATLAS_WARM_UMAP", "0")
