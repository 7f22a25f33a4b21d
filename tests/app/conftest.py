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
def no_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """No background warm-up thread (for the real server): it would only compete for the CPU here, and it read
    ATLAS_WARM_UMAP seconds after it started, when this fixture had restored it, so it compiled UMAP anyway; still
    compiling when pytest exited, it aborted the process (exit 134) after every test had passed."""
    monkeypatch.setenv("ATLAS_WARM", "0")
