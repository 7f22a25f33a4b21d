"""The one place that defines session keys and their defaults. Page-specific keys carry a page prefix.

Selections shared across pages (dataset, primary and comparison model, device, teaching mode) live in these
non-widget keys; the sidebar widgets write them through callbacks.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import streamlit as st

DATASET = "dataset"
PRIMARY_RUN = "primary_run"
COMPARISON_RUN = "comparison_run"
DEVICE = "device"
TEACHING = "teaching_mode"
AUTO = "auto"
DEFAULTS: dict[str, Any] = {DATASET: "digits", PRIMARY_RUN: AUTO, COMPARISON_RUN: AUTO, DEVICE: "cpu",
                            TEACHING: True}
# The method shown first as primary / comparison: an adversarially trained model next to a standard one.
PREFERRED_PRIMARY = ("pgd-at", "trades", "fgsm-rs")
PREFERRED_COMPARISON = ("erm",)


# The shared selections also live in the page's URL (?dataset=…&primary=…&comparison=…): a reload, or a link sent
# to a colleague, opens the same models instead of the defaults.
URL_KEYS = {DATASET: "dataset", PRIMARY_RUN: "primary", COMPARISON_RUN: "comparison"}
NO_COMPARISON = "none"
# Teaching mode is on by default; a URL says only that it is off (?teaching=off).
TEACHING_PARAM = "teaching"
# A page's own view settings (the Attack Lab's example, attack and ε; a chart's norm, ε, sample size…) go in the URL
# by Streamlit's widget binding: ``bind=IN_URL`` with the widget's key as the parameter's name. A parameter is left
# out while its widget is at its default, is dropped on leaving the page, and an invalid value is ignored (the
# widget keeps its default; the app names it in a toast, see refused_url_values); the pages' own range checks still
# refuse what the widget lets through.
IN_URL = "query-params"


def write_carried_to_url(keys: tuple[str, ...]) -> None:
    """Write the URL parameter of each bound widget in ``keys`` that shows a value other than its default but is not
    in the URL. Call it after the widgets are drawn, on the first run after a page switch.

    A value that came from a link and was carried to another page by a Session State assignment is shown there, but
    Streamlit 1.67 writes the parameter only at the next rerun (its sync waits for the widget to have run on the page
    before): a reload right after arriving lost it. No public API writes a bound parameter (``st.query_params``
    refuses), so this uses the widget's own serializer and the query-params store Streamlit's binding writes with;
    tests/e2e/test_lab_and_robustness_browser.py checks it, so a Streamlit upgrade that moves them fails there.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    session = ctx.session_state._state
    for key in keys:
        widget_id = session._key_id_mapper.get_id_from_key(key)
        # Only widgets drawn in this run (the picker shows the inputs of one way to pick the example).
        if key in st.query_params or widget_id not in ctx.shared.widget_ids_this_run:
            continue
        meta = session._new_widget_state.widget_metadata[widget_id]
        if meta.bind != IN_URL:
            continue
        value = st.session_state[key]
        if value != meta.deserializer(None):
            session.query_params.set_corrected_value(key, meta.serializer(value), meta.value_type)


# What each page's own URL parameter is called on screen, for the message about a link value the page refused (a
# key ending in "_" stands for every key it begins, e.g. rob_eps_linf). tests/app/test_url_labels.py checks each
# label against its widget's, so a renamed control fails there.
URL_LABELS = {
    "lab_mode": "Example", "lab_class": "Class", "lab_which": "Which one", "lab_index": "Test index",
    "lab_flip": "PGD-10 flips", "lab_attack": "Attack", "lab_norm_": "Norm", "lab_steps_": "Steps",
    "lab_restarts": "Restarts", "lab_temperature": "Temperature T", "lab_queries": "Queries",
    "lab_target_": "Target class", "lab_eps": "ε", "lab_large": "Large images",
    "rob_models": "Models", "rob_norm": "Norm", "rob_eps_": "ε", "rob_n": "Test points", "rob_focus": "Model",
    "geo_index": "Test point", "geo_plane": "Plane", "geo_plane_from": "Direction û of",
    "geo_other": "Other test input", "geo_norm": "Norm", "geo_eps_": "ε", "geo_path": "Attack path",
    "geo_colour": "Colour by", "geo_res": "Finest grid points per side", "geo_zoom": "Zoom out",
    "geo_steps": "Path steps", "geo_sample_n": "Test inputs",
    "lat_layer": "Layer", "lat_projection": "Projection", "lat_n": "Points", "lat_split": "Split",
    "lat_attack": "Attack", "lat_norm": "Norm", "lat_eps": "ε",
    "feat_method": "Attribution", "feat_n": "Sample", "feat_example": "Example", "feat_layer": "Layer for units",
    "feat_k": "Switch off the k most attack-sensitive useful units",
}


def url_label(key: str) -> str | None:
    """The on-screen label of the control behind URL parameter ``key`` (None for a key not in URL_LABELS)."""
    if key in URL_LABELS:
        return URL_LABELS[key]
    return next((label for prefix, label in URL_LABELS.items() if prefix.endswith("_") and key.startswith(prefix)),
                None)


def refused_url_values(asked: dict[str, list[str]]) -> list[tuple[str, list[str], str | list[str]]]:
    """The parameters of ``asked`` (the URL before the page ran) bound to a widget drawn in this run that are no
    longer in the URL as asked: Streamlit drops a value its widget refuses and the widget keeps its default. Each
    comes with the value the widget shows instead, written as in a URL. Uses the same internals as
    :func:`write_carried_to_url`."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from streamlit.runtime.state.query_params import _coerce_value_for_query_url

    ctx = get_script_run_ctx()
    if ctx is None:
        return []
    session = ctx.session_state._state
    refused = []
    for key, values in asked.items():
        if key in URL_KEYS.values():
            continue  # the dataset and models: ensure_models says what it could not take
        widget_id = session._key_id_mapper.get_id_from_key(key, None)
        meta = session._new_widget_state.widget_metadata.get(widget_id)
        if widget_id not in ctx.shared.widget_ids_this_run or meta is None or meta.bind != IN_URL:
            continue
        if st.query_params.get_all(key) != values:
            shown = _coerce_value_for_query_url(meta.serializer(st.session_state[key]), meta.value_type)
            refused.append((key, values, shown))
    return refused


def take_back_stop() -> None:
    """After a page's ``st.stop()``: Streamlit keeps the stop request, and every later ``st.*`` call raises its
    StopException again, so the toasts app.py gives after the page about the link (:func:`refused_url_values`) were
    lost on a page that stopped (the Theory Lab before its first run, the Attack Lab without an example yet). The
    request is taken back; app.py raises the stop again after its toasts, so the run still ends as stopped.
    Internals (the run's ScriptRequests); tests/app/test_url_links_refusals.py fails if they change."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx
    from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequestType

    ctx = get_script_run_ctx()
    requests = getattr(ctx, "script_requests", None)
    if requests is None:
        return
    with requests._lock:
        if requests._state == ScriptRequestType.STOP:
            requests._state = ScriptRequestType.CONTINUE


def snap_url_number(key: str, grid: Sequence[float]) -> None:
    """A link's number for the slider ``key`` that lies between the slider's steps (ε = 0.123 on the Attack Lab's
    0.01 grid) was drawn as given while the results shown were the nearest step's, without a word. Before the slider
    is drawn, on the run a link arrives with, the URL's value moves to the nearest step; the page's link check
    (:func:`refused_url_values`) then names both. Other values (not a number, out of range) the slider refuses
    itself. Once the slider is drawn its value comes from the session, and Streamlit refuses to have a bound
    parameter set (after a norm switch the URL still held 0.13 of the ℓ∞ grid): nothing to do then.
    Internals, as in :func:`refused_url_values` (tests/app/test_url_labels.py fails if they change)."""
    if len(grid):
        _move_url_number(key, lambda v: min(grid, key=lambda g: abs(g - v)) if grid[0] <= v <= grid[-1] else v)


def clamp_url_number(key: str, low: float, high: float) -> None:
    """As :func:`snap_url_number`, for a number field without browser bounds (``checked_number``): a link's value
    outside [low, high] (``?feat_example=99999`` for a sample of 50) moves to the nearer end, and the page's link
    check names both, where the field would otherwise stop the page with a red error a link's reader cannot fix
    from the link alone."""
    _move_url_number(key, lambda v: min(max(v, low), high))


def _move_url_number(key: str, move: Callable[[float], float]) -> None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    raw = st.query_params.get(key)
    if ctx is None or raw is None:
        return
    store = ctx.session_state._state.query_params
    if store.is_bound(key):
        return
    try:
        value = float(raw)
    except ValueError:
        return
    if math.isnan(value):
        return
    moved = move(value)
    # ±inf is moved too (to an end of the range): Streamlit's int fields raise OverflowError on it, not a refusal.
    if math.isfinite(value) and abs(moved - value) <= 1e-9 * max(1.0, abs(value)):
        return
    if not math.isfinite(moved):
        return
    written = str(round(float(moved), 10))
    if written.endswith(".0"):
        written = written[:-2]  # an integer field reads "49", not "49.0"
    st.query_params[key] = written
    _set_initial(store, key, written)


def _set_initial(store: Any, key: str, value: str | None) -> None:
    """A widget takes its first value from the URL as the page arrived (Streamlit's snapshot), not from
    st.query_params: the snapshot gets the moved value too, or loses a parameter taken out of the URL (without it,
    the link's toast still says it all)."""
    initial = getattr(store, "_initial_query_params", None)
    if isinstance(initial, dict) and key in initial:
        if value is None:
            del initial[key]
        else:
            initial[key] = [value]


# The URL's parameters as the page arrived with them (app.py sets it before the page runs; {} on the page's later
# runs): a page checks a link's values against its own state only once, not after every click.
LINK = "_url_link"
# Streamlit's own parameters (?embed=true), and the ones other sites add to a shared link (?utm_source=…,
# ?fbclid=…): never a page's, and no reason for a toast.
STREAMLIT_PARAMS = ("embed", "embed_options")
FOREIGN_PARAMS = ("fbclid", "gclid", "msclkid")


def link_params() -> dict[str, list[str]]:
    """The parameters of the link the page arrived with in this run; {} on its later runs."""
    return st.session_state.get(LINK, {})


def refuse_link_params(refusals: dict[str, str]) -> None:
    """For each parameter ``key → why`` of the link the page arrived with that the page cannot use in its present
    state (``why``, as "which is for …"), a toast naming the control, the value and why; the parameter leaves the
    URL, so the address does not claim a setting the page does not show and a later widget does not take it up.
    A parameter bound to a widget drawn meanwhile is the widget's (refused_url_values speaks for it)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from dashboard.components.labels import md

    ctx = get_script_run_ctx()
    link = link_params()
    for key, why in refusals.items():
        if key not in link or key not in st.query_params or ctx is None:
            continue
        store = ctx.session_state._state.query_params
        if store.is_bound(key):
            continue
        label = url_label(key)
        control = f"{md(label)} ({md(key)})" if label else f"“{md(key)}”"
        st.toast(f"The link sets {control} to “{md(', '.join(link[key]))}”, {why}: it is left out.",
                 icon=":material/link_off:")
        del st.query_params[key]
        _set_initial(store, key, None)


def unknown_url_params(asked: dict[str, list[str]]) -> list[str]:
    """The parameters of ``asked`` that are no setting of any page (``?th_runs=abc``, ``?pg_point=9``): not the
    shared selections, not in URL_LABELS and not bound to a widget drawn in this run."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None:
        return []
    session = ctx.session_state._state
    shared = {*URL_KEYS.values(), TEACHING_PARAM, *STREAMLIT_PARAMS}
    unknown = []
    for key in asked:
        if key in shared or url_label(key) is not None or key in FOREIGN_PARAMS or key.startswith("utm_"):
            continue
        widget_id = session._key_id_mapper.get_id_from_key(key, None)
        meta = session._new_widget_state.widget_metadata.get(widget_id)
        if widget_id in ctx.shared.widget_ids_this_run and meta is not None and meta.bind == IN_URL:
            continue
        unknown.append(key)
    return unknown


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def read_url(datasets: list[str], run_datasets: Callable[[], dict[str, str]]) -> None:
    """Once per session, before the sidebar is drawn: take the dataset and models from the URL. A dataset the Atlas
    does not know is ignored; run ids are checked by :func:`ensure_models` (an unknown one gets the default).
    ``run_datasets()`` gives each model's dataset: a link whose models all belong to another dataset than its own
    (or that names none) opens theirs, and a model of another dataset is said to be one, not to be missing."""
    if st.session_state.get("_url_read"):
        return
    st.session_state["_url_read"] = True
    params = st.query_params
    if params.get("dataset") in datasets:
        st.session_state[DATASET] = params["dataset"]
    elif params.get("dataset"):
        st.session_state["_url_unknown_dataset"] = params["dataset"]
    named = [params[name] for name in URL_KEYS.values() if name != "dataset" and params.get(name)
             and params[name] != NO_COMPARISON]
    _follow_models(named, datasets, run_datasets() if named else {}, params.get("dataset") in datasets)
    if params.get("primary") or params.get("comparison"):
        # The models named belong to this dataset: ensure_models must check them, not reset them as after a switch.
        st.session_state["_models_for_dataset"] = st.session_state[DATASET]
    if params.get("primary"):
        st.session_state[PRIMARY_RUN] = params["primary"]
    if params.get("comparison"):
        st.session_state[COMPARISON_RUN] = None if params["comparison"] == NO_COMPARISON else params["comparison"]
    teaching = params.get(TEACHING_PARAM)
    if teaching == "off":  # a reload kept the models but brought the explanations back
        st.session_state[TEACHING] = False
    elif teaching is not None and teaching != "on":
        st.session_state["_url_bad_teaching"] = teaching  # said by the sidebar; write_url takes it out
    # What the link asked for, so ensure_models can say which of it is not here rather than swap it silently.
    st.session_state["_url_asked"] = {key: st.session_state[key] for key in (PRIMARY_RUN, COMPARISON_RUN)
                                      if params.get(URL_KEYS[key]) and st.session_state[key]}


def _follow_models(named: list[str], datasets: list[str], homes: dict[str, str], dataset_given: bool) -> None:
    """A link named a moons model under digits (or under no dataset): it was called "not in this Atlas". When none
    of the models named belongs to the link's dataset, the first one's dataset is shown (said by the sidebar when
    the link named a dataset); a model left in another dataset is named with it (``_url_elsewhere``)."""
    current = st.session_state[DATASET]
    found = [homes[run_id] for run_id in named if run_id in homes]
    if found and current not in found and found[0] in datasets:
        st.session_state[DATASET] = found[0]
        if dataset_given:
            st.session_state["_url_moved_dataset"] = (current, found[0])
    st.session_state["_url_elsewhere"] = {run_id: homes[run_id] for run_id in named
                                          if homes.get(run_id, st.session_state[DATASET]) != st.session_state[DATASET]}


def write_url(models: int) -> None:
    """Put the current dataset, models and teaching mode in the URL (only the parts that changed: each write is a
    browser history update). A model that is not there leaves the URL; "none" is written only when the user could
    have picked a comparison (``models`` ≥ 2), so a dataset with one model does not pin "no comparison" for later;
    teaching mode appears only when it is off."""
    comparison = st.session_state[COMPARISON_RUN] or (NO_COMPARISON if models >= 2 else None)
    values = {DATASET: st.session_state[DATASET], PRIMARY_RUN: st.session_state[PRIMARY_RUN],
              COMPARISON_RUN: comparison}
    values[TEACHING] = None if st.session_state[TEACHING] else "off"
    for key, name in {**URL_KEYS, TEACHING: TEACHING_PARAM}.items():
        if not values[key]:
            if name in st.query_params:
                del st.query_params[name]
        elif st.query_params.get(name) != values[key]:
            st.query_params[name] = values[key]


def pick(runs: list[dict[str, Any]], methods: tuple[str, ...], exclude: str | None = None) -> str | None:
    """The first shipped run with a preferred method, else the newest other run."""
    candidates = [r for r in runs if r["id"] != exclude]
    for method in methods:
        for run in candidates:
            if run["method"] == method and run["source"] == "shipped":
                return run["id"]
    return candidates[0]["id"] if candidates else None


def ensure_models(runs: list[dict[str, Any]]) -> None:
    """Keep primary/comparison valid for the current dataset's runs (after a dataset switch or a deletion)."""
    ids = {r["id"] for r in runs}
    asked = st.session_state.pop("_url_asked", {})
    st.session_state["_url_missing"] = [run_id for run_id in asked.values() if run_id not in ids]
    twice = len(asked) == 2 and asked[PRIMARY_RUN] == asked[COMPARISON_RUN] and asked[PRIMARY_RUN] in ids
    if st.session_state[DATASET] != st.session_state.get("_models_for_dataset"):
        # Each dataset keeps the models last chosen for it: switching digits → moons → digits in a lecture brought
        # back the defaults, not the pair just shown. A remembered model deleted since gets the default below.
        st.session_state["_models_for_dataset"] = st.session_state[DATASET]
        st.session_state[PRIMARY_RUN], st.session_state[COMPARISON_RUN] = st.session_state.get(
            "_models_by_dataset", {}).get(st.session_state[DATASET], (AUTO, AUTO))
    if st.session_state[PRIMARY_RUN] not in ids:
        st.session_state[PRIMARY_RUN] = pick(runs, PREFERRED_PRIMARY)
    comparison = st.session_state[COMPARISON_RUN]
    # None is the user's explicit "no comparison"; AUTO or a run of another dataset gets the default.
    if comparison is not None and (comparison not in ids or comparison == st.session_state[PRIMARY_RUN]):
        st.session_state[COMPARISON_RUN] = pick(runs, PREFERRED_COMPARISON, exclude=st.session_state[PRIMARY_RUN])
    if twice:  # said by the sidebar, like a missing model: the link asked for something else than what is shown
        st.session_state["_url_twice"] = asked[PRIMARY_RUN]
    # No comparison with fewer than two models is no choice of the user's: remembered as "the default", so the
    # dataset gets one once it has a second model.
    comparison = st.session_state[COMPARISON_RUN]
    st.session_state.setdefault("_models_by_dataset", {})[st.session_state[DATASET]] = (
        st.session_state[PRIMARY_RUN] or AUTO, comparison if comparison is not None or len(runs) >= 2 else AUTO)


def set_from_widget(state_key: str, widget_key: str) -> None:
    st.session_state[state_key] = st.session_state[widget_key]


def sync_widget(widget_key: str, value: Any, force: bool = False) -> None:
    """Set a widget's session value to ``value`` before it is drawn, only when it differs (or ``force``: the
    browser must be sent it again, as after its option's label changed)."""
    if force or st.session_state.get(widget_key) != value:
        st.session_state[widget_key] = value


def set_model_from_widget(state_key: str, widget_key: str, ids: list[str]) -> None:
    """A sidebar model picker changed: its run id becomes the primary or comparison ("" in the comparison picker
    is "none"). The browser keeps a picker's value as the option's label, so after a model was renamed it sent
    the old label, which is no run id: that switched the primary to the default model without a word. Such a
    value (or None) is ignored and the picker is set back to the model it shows."""
    value = st.session_state[widget_key]
    # None is no choice either: after a rename the browser may clear a picker whose label vanished (seen on the
    # Robustness page; it switched the sidebar to the first model and no comparison).
    if value is None or (value and value not in ids):
        st.session_state[widget_key] = st.session_state[state_key] or ""
        return
    st.session_state[state_key] = value or None


def assign_role(role: str, run_id: str) -> None:
    """Make ``run_id`` the primary or comparison model; if it holds the other role, the two swap."""
    other = COMPARISON_RUN if role == PRIMARY_RUN else PRIMARY_RUN
    if st.session_state[other] == run_id:
        st.session_state[other] = st.session_state[role]
    st.session_state[role] = run_id


def after_table_change(message: str) -> None:
    """After a rename or delete: a message on the next run (the table's key follows its ids by itself)."""
    st.session_state["hub_flash"] = message
