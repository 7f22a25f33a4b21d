"""Entrypoint: ``streamlit run dashboard/app.py``. Page config, global sidebar, navigation."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import cache, state  # noqa: E402

st.set_page_config(page_title="Robustness Atlas", page_icon="🛡️", layout="wide")
state.init_state()

with st.sidebar:
    st.markdown("### Robustness Atlas")
    names = cache.dataset_names()
    st.selectbox("Dataset", names, key="_sidebar_dataset", index=names.index(st.session_state[state.DATASET]),
                 on_change=lambda: st.session_state.update({state.DATASET: st.session_state["_sidebar_dataset"]}))

page = st.navigation([st.Page(str(ROOT / "pages" / "hub.py"), title="Model hub", icon="🗂️", default=True)])
page.run()
