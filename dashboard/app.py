"""Entrypoint: ``streamlit run dashboard/app.py``. Page config, global sidebar, navigation."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from streamlit.runtime.scriptrunner import StopException  # noqa: E402

from core.runtime import tune_allocator  # noqa: E402
from dashboard import cache, code_version, state  # noqa: E402
from dashboard.components import plugins  # noqa: E402
from dashboard.components.labels import md  # noqa: E402

tune_allocator()  # once per process: freed tensor memory is reused, not page-faulted back in (core/runtime.py)

st.set_page_config(page_title="Robustness Atlas", page_icon=str(ROOT / "assets" / "favicon.png"), layout="wide")
state.init_state()
st.html(ROOT / "assets" / "style.css")
# With file watching on (a developer's --server.fileWatcherType auto) Streamlit reloads changed modules itself.
if st.get_option("server.fileWatcherType") == "none" and code_version.changed_since_start():
    st.warning("The Atlas's code on disk changed after this dashboard started (a `git pull`?). **Restart the "
               "dashboard** (`bash scripts/dashboard.sh`): until then a page may call code that is not loaded yet "
               "and fail. Training jobs already running carry on.", icon=":material/restart_alt:")

# The name sits in the sidebar's header (empty otherwise), so that the model pickers below the page links fit a
# 1280 × 720 projector; with the sidebar closed, the shield alone.
st.logo(ROOT / "assets" / "logo.svg", size="large", icon_image=ROOT / "assets" / "favicon.png")
with st.sidebar:
    specs = cache.dataset_specs()
    names = sorted(specs, key=lambda n: (specs[n]["needs_files"], n))
    state.read_url(names, lambda: {r["id"]: r["dataset"] for r in cache.runs() if r["checkpoint_path"]})
    st.selectbox("Dataset", names, index=names.index(st.session_state[state.DATASET]), key="_sb_dataset",
                 on_change=state.set_from_widget, args=(state.DATASET, "_sb_dataset"),
                 format_func=lambda n: n + (" (files needed)" if specs[n]["needs_files"] else ""))
    # Only runs with a final checkpoint are models to analyse: a running, failed or cancelled training run stays in
    # the hub's table (with its status) but is not offered here.
    runs = [r for r in cache.runs(st.session_state[state.DATASET]) if r["checkpoint_path"]]
    # Nor a model whose architecture's plugin is not loaded: no page can load it (the hub lists it and says why).
    unloaded = plugins.unloaded_runs(runs)
    runs = [r for r in runs if r["id"] not in unloaded]
    state.ensure_models(runs)
    shown_dataset = st.session_state[state.DATASET]
    elsewhere = st.session_state.pop("_url_elsewhere", {})
    for missing in st.session_state.pop("_url_missing", []):
        if missing in unloaded:
            st.toast(f"The link names the model {md(missing)}. {unloaded[missing]} The default model is shown "
                     "instead.", icon=":material/extension_off:")
        elif missing in elsewhere:
            st.toast(f"The link names the model {md(missing)}, which is a model of {md(elsewhere[missing])}, not of "
                     f"{shown_dataset}: the default {shown_dataset} model is shown instead. To see it, pick "
                     f"{md(elsewhere[missing])} under Dataset in the sidebar, then the model.",
                     icon=":material/link_off:")
        else:
            st.toast(f"The link names the model {md(missing)}, which is not in this Atlas for {shown_dataset} "
                     "(deleted, or trained elsewhere): the default model is shown instead.", icon=":material/link_off:")
    if (moved := st.session_state.pop("_url_moved_dataset", None)) is not None:
        st.toast(f"The link names the dataset {moved[0]}, but its models are models of {moved[1]}: {moved[1]} is "
                 "shown, with them.", icon=":material/swap_horiz:")
    if (unknown := st.session_state.pop("_url_unknown_dataset", None)) is not None:
        # Escaped: text from a link must not put its own markdown (a link, say) into the Atlas's message.
        st.toast(f"The link names the dataset “{md(unknown)}”, which this Atlas does not have (it has "
                 f"{', '.join(names)}): {st.session_state[state.DATASET]} is shown instead.",
                 icon=":material/link_off:")
    if (twice := st.session_state.pop("_url_twice", None)) is not None:
        names_of = {r["id"]: r["name"] for r in runs}
        comparison = st.session_state[state.COMPARISON_RUN]
        st.toast(f"The link names {md(names_of[twice])} as both the primary and the comparison model: the "
                 f"comparison is {md(names_of[comparison]) if comparison else 'none'} instead.",
                 icon=":material/link_off:")
    if (teaching := st.session_state.pop("_url_bad_teaching", None)) is not None:
        st.toast(f"The link sets Teaching mode ({state.TEACHING_PARAM}) to “{md(teaching)}”, which it does not "
                 f"offer (a link says “{state.TEACHING_PARAM}=off”, or nothing for on): teaching mode is "
                 f"{'on' if st.session_state[state.TEACHING] else 'off'}.", icon=":material/link_off:")
    state.write_url(len(runs))
    labels = cache.run_labels(runs)
    ids = list(labels)
    if ids:
        # The shared state is the truth (pages change it too): copy it into the widgets before drawing them, only
        # where it differs (a value pushed into a widget on every run is sent to the browser again each time).
        # A renamed model's label changed: the browser is sent the pickers' values again, or it keeps showing (and
        # sending) the old label.
        relabelled = st.session_state.get("_sb_labels") != labels
        st.session_state["_sb_labels"] = labels
        state.sync_widget("_sb_primary", st.session_state[state.PRIMARY_RUN], force=relabelled)
        # index=None: a value the browser clears reaches the callback as None, which it refuses, instead of as the
        # first option (Streamlit's deserializer maps "no value" to the default index). assets/style.css hides the
        # clear button that index=None brings.
        st.selectbox("Primary model", ids, index=None, key="_sb_primary", format_func=labels.__getitem__,
                     on_change=state.set_model_from_widget, args=(state.PRIMARY_RUN, "_sb_primary", ids))
        # "" is "none": a selectbox whose value is None shows its placeholder ("Choose an option") instead.
        options = ["", *(i for i in ids if i != st.session_state[state.PRIMARY_RUN])]
        state.sync_widget("_sb_comparison", st.session_state[state.COMPARISON_RUN] or "", force=relabelled)
        st.selectbox("Comparison model", options, index=None, key="_sb_comparison",
                     format_func=lambda i: labels.get(i, i) if i else "— none —",
                     on_change=state.set_model_from_widget, args=(state.COMPARISON_RUN, "_sb_comparison", ids))
    else:
        st.caption("No models for this dataset yet.")
    devices = cache.devices()
    st.selectbox("Device", devices, index=devices.index(st.session_state[state.DEVICE])
                 if st.session_state[state.DEVICE] in devices else 0, key="_sb_device",
                 on_change=state.set_from_widget, args=(state.DEVICE, "_sb_device"),
                 help="Where training jobs and attacks run. CUDA appears when a GPU is present.")
    st.toggle("Teaching mode", value=st.session_state[state.TEACHING], key="_sb_teaching",
              on_change=state.set_from_widget, args=(state.TEACHING, "_sb_teaching"),
              help="Show a short 'What am I looking at?' explanation with its paper on every page")

PAGES = ROOT / "pages"
page = st.navigation({
    "Models": [st.Page(PAGES / "hub.py", title="Model hub", icon=":material/dashboard:", default=True),
               st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:", url_path="train")],
    "Attacks": [st.Page(PAGES / "attack_lab.py", title="Attack Lab", icon=":material/bolt:", url_path="attack-lab"),
                st.Page(PAGES / "robustness.py", title="Robustness", icon=":material/monitoring:",
                        url_path="robustness")],
    "Defences": [st.Page(PAGES / "tradeoffs.py", title="Trade-off Explorer", icon=":material/balance:",
                         url_path="tradeoffs")],
    "Inside the model": [st.Page(PAGES / "geometry.py", title="Geometry", icon=":material/architecture:",
                                 url_path="geometry"),
                         st.Page(PAGES / "latent.py", title="Latent space", icon=":material/bubble_chart:",
                                 url_path="latent"),
                         st.Page(PAGES / "features.py", title="Features", icon=":material/filter_center_focus:",
                                 url_path="features"),
                         st.Page(PAGES / "theory.py", title="Theory Lab", icon=":material/functions:",
                                 url_path="theory")],
    "Help": [st.Page(PAGES / "playground.py", title="Playground", icon=":material/toys:", url_path="playground"),
             st.Page(PAGES / "learn.py", title="Learn", icon=":material/school:", url_path="learn")],
})
# A link's value for one of the page's own controls that Streamlit refuses (out of range, not an option) is dropped
# from the URL without a word: the page is checked once on arrival, after it drew its widgets (st.stop included).
asked = {key: st.query_params.get_all(key) for key in st.query_params}
arrived = st.session_state.get("_url_page") != page.url_path
st.session_state["_url_page"] = page.url_path
st.session_state[state.LINK] = asked if arrived else {}
stopped = None
try:
    page.run()
except StopException as stop:  # raised again below, after the toasts it would have swallowed (state.take_back_stop)
    state.take_back_stop()
    stopped = stop
finally:
    for key, values, shown in state.refused_url_values(asked) if arrived else ():
        label = state.url_label(key)
        control = f"{md(label)} ({md(key)})" if label else md(key)
        shown = ", ".join(shown) if isinstance(shown, list) else shown
        st.toast(f"The link sets {control} to “{md(', '.join(values))}”, which this page does not offer: it shows "
                 f"“{md(shown or 'nothing')}” instead.", icon=":material/link_off:")
    # A parameter no page has (?th_runs=abc) was kept in the URL and ignored without a word.
    state.refuse_link_params({key: "which this page does not take from a link"
                              for key in (state.unknown_url_params(asked) if arrived else ())})
if stopped is not None:
    raise stopped
cache.warm_engine()
