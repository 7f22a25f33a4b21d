"""Model hub: every registered run (shipped, trained, imported) for the selected dataset."""

import streamlit as st

from dashboard import cache, state

dataset = st.session_state[state.DATASET]
st.title("Model hub")
st.caption("Every model the Atlas knows: shipped defaults, your trained runs and imports. "
           "Robust accuracy is PGD-20 at the model's own ε.")
table = cache.runs_table(dataset)
if table.empty:
    st.info(f"No models for **{dataset}** yet. Train one with `python -m core train --dataset {dataset}`.")
else:
    st.dataframe(table, hide_index=True, width="stretch",
                 column_order=["name", "arch", "method", "ε", "clean acc", "robust acc", "status", "created"],
                 column_config={"clean acc": st.column_config.ProgressColumn(min_value=0, max_value=1, format="%.3f"),
                                "robust acc": st.column_config.ProgressColumn(min_value=0, max_value=1,
                                                                              format="%.3f")})
