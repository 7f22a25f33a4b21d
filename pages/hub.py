"""Model hub: every run (shipped, trained, imported) of the selected dataset; pick, compare, import, manage."""

from pathlib import Path

import streamlit as st

from core.errors import AtlasError
from core.evaluation.protocol import HEADLINE_N, HEADLINE_STEPS
from core.store.imports import (PICKLE_SUFFIXES, delete_run_files, import_checkpoint, same_weights,
                                weights_file_problem)
from core.store.registry import MAX_NAME
from core.utils import config_hash
from dashboard import cache, state
from dashboard.components import imports
from dashboard.components.cards import masked_note, model_card, status_text, threat_text
from dashboard.components.charts import pareto_figure, robust_measure
from dashboard.components.labels import md, slug
from dashboard.components.layout import panels
from dashboard.components.plugins import plugin_notices, unloaded_runs
from dashboard.components.teaching import explain

dataset = st.session_state[state.DATASET]
st.title("Model hub")
if "hub_flash" in st.session_state:
    # A toast too: the message sits at the page's top, out of view of a user who imported or renamed further down.
    flash = st.session_state.pop("hub_flash")
    st.success(flash)
    st.toast(flash, icon=":material/check_circle:")
plugin_notices()
table = cache.runs_table(dataset)
measure = robust_measure(table["attack"])
explain("Every model the Atlas knows for this dataset, each measured the same way: **clean accuracy** on the test "
        f"split and **robust accuracy** under {measure[1]} of radius ε (the model's own training ε), on the first "
        f"{HEADLINE_N} test points at most (the whole split for the built-in datasets). Adversarial training "
        "raises robust accuracy a lot; on hard datasets (CIFAR-10) it usually costs clean accuracy, while on the "
        "small digits set the cost is negligible. Ringed models are *Pareto-optimal*: no other model beats them on "
        "both axes (the dotted staircase joins them when there are several).", "madry", "dale")

runs = {r["id"]: r for r in cache.runs(dataset)}
# Models whose architecture's plugin is not loaded: listed with the accuracy measured when they were added, but no page
# can load them (they looked like any other until a page failed on them).
needs_plugin = unloaded_runs(runs.values())

if table.empty:
    files = (f" Its standard files are not on this machine: run `python -m core data download {dataset}` (with a "
             "network) or place them in the data folder before training." if cache.files_missing(dataset) else "")
    st.info(f"No models for **{dataset}** yet: train one on the Training page or import a checkpoint below.{files}")
else:
    chart_col, card_col = panels(2, "hub-overview")
    with chart_col:
        primary, comparison = st.session_state[state.PRIMARY_RUN], st.session_state[state.COMPARISON_RUN]
        st.plotly_chart(pareto_figure(table, highlight={primary: "primary", comparison: "comparison"}),
                        key="hub_pareto")
        st.caption("Each dot is a model (circles shipped, diamonds trained or imported here); up and right is better. "
                   f"Robust accuracy is {measure[1]} at each model's own ε (its training ε; "
                   "a standard model's is the dataset's usual one). "
                   "The labelled dots are the primary and comparison models, rings the Pareto-optimal ones; an "
                   "inset zooms in where dots overlap. Hover for names.")
        masked_note(runs.values())
    with card_col:
        for run_id, role in ((primary, "primary"), (comparison, "comparison")):
            if run_id in runs:
                model_card(runs[run_id], role)

    st.subheader("All models")
    # Keyed by the ids it shows: when runs appear or go (a job finishes, a delete), the row selection resets
    # instead of silently pointing at another model.
    table_key = config_hash(list(table["id"]), length=8)
    # Every row is on this dataset: its name's leading "digits " only pushed the telling part out of the cut-off
    # column (two "digits SmallCNN · DALE ε=0.1 · 1 ep…" rows looked the same).
    shown = table.assign(threat=[threat_text(n, e) for n, e in zip(table["norm"], table["ε"])],
                         name=[n.removeprefix(f"{dataset} ") for n in table["name"]],
                         status=[status_text(runs.get(run_id, {"status": status}), run_id in needs_plugin)
                                 for run_id, status in zip(table["id"], table["status"])])
    event = st.dataframe(
        shown, hide_index=True, key=f"hub_table_{table_key}",
        on_select="rerun", selection_mode="single-row",
        # Widths that fit every column in the ~800 px a 1280 px screen leaves beside the sidebar, the most for the
        # name: a run trained here ends in what tells it apart ("· 1 ep · seed 1 · 4256"). A longer name is cut (the
        # full name shows when its row is selected).
        column_order=["name", "method", "threat", "clean acc", "robust acc", "status", "created"],
        column_config={"name": st.column_config.TextColumn(width=256),
                       "method": st.column_config.TextColumn(width=66),
                       "threat": st.column_config.TextColumn(
                           "norm · ε", width=78, help="The norm and ε of the robust accuracy: an adversarially trained "
                           "model's training ε; for a standard model, the dataset's usual ε (it was not trained with "
                           "one)."),
                       "status": st.column_config.TextColumn(width=80),
                       "clean acc": st.column_config.ProgressColumn(min_value=0, max_value=1, format="percent",
                                                                    width=98),
                       "robust acc": st.column_config.ProgressColumn(min_value=0, max_value=1, format="percent",
                                                                     width=98),
                       "created": st.column_config.DatetimeColumn(format="YYYY-MM-DD", width=86)})
    st.caption("Click a column header to sort; select a row to act on that model.")
    rows = event.selection.rows
    # The table's key follows its ids, so a model deleted elsewhere (another tab, the CLI) clears the selection:
    # a Rename pressed in a stale tab then did nothing, without a word.
    gone = st.session_state.pop("hub_selected", None)
    if not rows and gone and cache.registry().find_run(gone[0]) is None:  # not merely of another dataset
        st.warning(f"The model you had selected, **{md(gone[1])}**, is no longer in the Atlas (deleted in another "
                   "tab or from the command line): nothing was done to it.", icon=":material/delete:")
    if rows:
        run = runs.get(table["id"].iloc[rows[0]]) if rows[0] < len(table) else None
        if run is not None:
            st.session_state["hub_selected"] = (run["id"], run["name"])
            st.markdown(f"**Selected:** {md(run['name'])}")
            usable = bool(run["checkpoint_path"]) and run["id"] not in needs_plugin
            why = (needs_plugin.get(run["id"]) if run["checkpoint_path"] else
                   f"This run has no final model to analyse (status: {run['status']}).")
            if run["id"] in needs_plugin:
                st.warning(needs_plugin[run["id"]], icon=":material/extension_off:")
            cols = st.columns(5)
            if cols[0].button("Make primary", key="hub_make_primary", disabled=not usable, help=why):
                state.assign_role(state.PRIMARY_RUN, run["id"])
                st.rerun()
            if cols[1].button("Make comparison", key="hub_make_comparison", disabled=not usable, help=why):
                state.assign_role(state.COMPARISON_RUN, run["id"])
                st.rerun()
            if run["checkpoint_path"]:
                path = Path(run["checkpoint_path"])
                # Named after the model (names are unique; a pair with one stem, as the import wants), not its id.
                stem = slug(run["name"]) or run["id"]
                if path.exists():
                    cols[2].download_button("Download weights", cache.file_bytes(str(path), path.stat().st_mtime),
                                            file_name=f"{stem}.safetensors", key="hub_dl_weights")
                    meta = path.with_suffix(".json")
                    cols[3].download_button("Download JSON", cache.file_bytes(str(meta), meta.stat().st_mtime),
                                            file_name=f"{stem}.json", key="hub_dl_json")
            if not run["readonly"]:
                with cols[4].popover("Rename / delete"):
                    # No max_chars: the browser dropped a longer pasted name without a word and the old name went
                    # back as the new one ("Renamed to lr10."); the registry's refusal names the length instead.
                    new_name = st.text_input("New name", value=run["name"], key="hub_rename_text",
                                             help=f"At most {MAX_NAME} characters, unique among this dataset's models.")
                    if st.button("Rename", key="hub_rename"):
                        try:
                            if new_name.strip() == run["name"]:
                                st.info("That is its name already: nothing to rename.", icon=":material/info:")
                            else:
                                cache.registry().rename_run(run["id"], new_name)
                                state.after_table_change(f"Renamed to **{md(new_name.strip())}**.")
                                cache.runs.clear()
                                st.rerun()
                        except AtlasError as exc:
                            st.error(str(exc))
                    sure = st.checkbox(f"Yes, delete “{md(run['name'])}” and its files",
                                       key=f"hub_delete_sure_{table_key}")
                    if st.button("Delete this model", type="primary", key="hub_delete", disabled=not sure):
                        try:
                            delete_run_files(cache.registry(), run["id"])
                            st.session_state.pop("hub_selected", None)
                            state.after_table_change(f"Deleted **{md(run['name'])}**.")
                            cache.runs.clear()
                            st.rerun()
                        except AtlasError as exc:
                            st.error(str(exc))
            else:
                cols[4].caption("Shipped models are read-only.")


with st.expander("Import a checkpoint", icon=":material/upload_file:"):
    limit_mb, bigger = imports.upload_limits()
    st.markdown("Upload a checkpoint as two files: `NAME.safetensors` (weights) and `NAME.json` (metadata: "
                "`arch`, `arch_kwargs`, `dataset`, …), as written by `python -m core train` or downloaded here. "
                f"**Limit {limit_mb} MB per file**: the uploader refuses a bigger file (a red “!” on it). {bigger} "
                "Files are validated before anything is stored; pickles are never opened. The model must fit its "
                "dataset (input shape, number of classes); its accuracy is then measured here as for a trained "
                f"model (clean, and PGD-{HEADLINE_STEPS} at its ε, on the test split's first {HEADLINE_N} points "
                "at most), not taken from the .json file.")
    # No type filter: the uploader's own refusal is a bare red "!" on the file; ours below says what is wrong.
    # A file over the size limit cannot be explained that way (it never reaches the script): the label says it.
    uploads = st.file_uploader(f"Checkpoint files: NAME.safetensors and NAME.json (≤ {limit_mb} MB each)",
                               accept_multiple_files=True, key="hub_upload", max_upload_size=limit_mb,
                               help=f"A file over {limit_mb} MB is refused in the browser (a red “!” on it) and "
                                    f"never reaches the Atlas. {bigger}")
    import_name = st.text_input("Display name (optional)", key="hub_import_name")
    if st.button("Import", key="hub_import", disabled=not uploads,
                 help=None if uploads else f"Upload both files first (each ≤ {limit_mb} MB)."):
        weights = [f for f in uploads if f.name.endswith(".safetensors")]
        metas = [f for f in uploads if f.name.endswith(".json")]
        others = [f.name for f in uploads if not f.name.endswith((".safetensors", ".json"))]
        pickles = [problem for name in others if Path(name).suffix.lower() in PICKLE_SUFFIXES
                   and (problem := weights_file_problem(name))]
        if pickles:  # the words `runs import` and `eval` use, with how to convert it
            st.error(f"Refused: {pickles[0]}. Remove it from the list above (its ×).")
        elif others:
            st.error(f"Refused: {', '.join(others)} {'is' if len(others) == 1 else 'are'} neither a .safetensors "
                     "weights file nor a .json metadata file; remove it from the list above (its ×).")
        elif missing := imports.missing_file_message(weights, metas, limit_mb, bigger):
            st.error(missing)
        else:
            try:
                with st.spinner("Checking the files, then measuring the model on the test split…"):
                    run = import_checkpoint(cache.registry(), weights[0].getvalue(), metas[0].getvalue(),
                                            name=import_name or None)
                cache.runs.clear()
                twins = "".join(f" Its weights are those of **{md(t['name'])}** ({t['source']}), byte for byte: the "
                                "two rows are one model." for t in same_weights(cache.registry(), run))
                st.session_state["hub_flash"] = (f"Imported **{md(run['name'])}** for dataset {run['dataset']} as run "
                                                 f"`{run['id']}`.{twins}")
                st.rerun()
            except AtlasError as exc:
                st.error(f"Refused: {exc}")
