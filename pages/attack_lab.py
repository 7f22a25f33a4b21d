"""Attack Lab: one example, one attack, a live ε slider, the primary and comparison models side by side."""

from __future__ import annotations

import numpy as np
import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.errors import AtlasError
from dashboard import cache, state
from dashboard.components import lab_controls
from dashboard.components.cards import no_model_yet
from dashboard.components.lab_views import decimals, flip_sentence, model_panel
from dashboard.components.layout import panels
from dashboard.components.teaching import explain

st.title("Attack Lab")
explain(
    "Pick one test image and an attack. The attack is run **once** for a whole grid of budgets ε (in one batched "
    "call), so the slider below only looks results up: move it and watch the prediction hold, then break. "
    "The middle image is the perturbation δ = adversarial − clean, shown with a diverging colour map and its "
    "own scale, because it is usually far too faint to see at image scale. *Smallest flipping ε* is the smallest "
    "budget found to flip it, by a minimal-norm search (FMN) or by the chosen attack on the grid: an upper bound on "
    "the true minimum. An adversarially trained model needs a much "
    "larger ε to be fooled, and its perturbations start to look like the other class.", "geometry", "madry")

dataset = st.session_state[state.DATASET]
primary, comparison = st.session_state.get(state.PRIMARY_RUN), st.session_state.get(state.COMPARISON_RUN)
device = st.session_state[state.DEVICE]
spec = cache.dataset_specs()[dataset]
# Before "no model yet": a circles model, once trained, would not show here either.
if len(spec["input_shape"]) != 3:
    st.info(f"The Attack Lab shows images; **{dataset}** has {spec['input_shape'][0]}-dimensional points. "
            "Pick an image dataset (digits is the default) in the sidebar.")
    st.stop()
if not primary:
    no_model_yet(dataset, cache.files_missing(dataset))
    st.stop()
role = {primary: "Primary", comparison: "Comparison"}
titles = {r: f"{role[r]}: {cache.registry().get_run(r)['name']}" for r in (primary, comparison) if r}
# A model that cannot be loaded (its plugin unset, its files gone) is named, and the other one is still shown.
runs, data = [], None
for run_id in titles:
    try:
        loaded = cache.run_dataset(run_id, dataset)
    except AtlasError as exc:
        st.error(f"{titles[run_id]}: {exc}")
        continue
    data = loaded if data is None else data
    runs.append(run_id)
if not runs:
    st.stop()
lead = runs[0]  # the primary when it loads: the examples that flip and the attack's defaults are its

example = lab_controls.pick_example(data, lead, device, "attack_lab")
# Without an example (a choice out of range, an upload waiting for its class) the attack's controls are still drawn,
# the message at the example's field: hidden, they lost their values (the attack came back as PGD) and left the URL.
# The ε slider and the projector toggle wait for an example (the live panel keeps their values meanwhile).
attack = lab_controls.pick_attack(data, lead, example)
if attack is None or example is None:
    st.stop()

if not lab_controls.within_budget(attack, runs):
    st.stop()
sweeps, flips = {}, {}
with st.spinner(f"Attacking the example at every ε of the grid: about {attack.cost:,.0f} gradient steps per model"
                f"{f' × {len(runs)} models' if len(runs) > 1 else ''}…"):
    for run_id in runs:
        try:
            sweeps[run_id] = cache.sweep(run_id, device, example.key, example.x, example.y, attack.name,
                                         attack.items, attack.grid, 0)
            flips[run_id] = cache.minimal_flip(run_id, device, example.key, example.x, example.y, attack.norm)
        except AtlasError as exc:
            # The other model is still shown: a comparison is worth seeing without the primary.
            st.error(f"{titles[run_id]}: {exc}")
runs = [r for r in runs if r in sweeps]
if not runs:
    st.stop()


# The ε the user last chose, per dataset and norm: kept across examples, attacks and pages (a non-widget key
# survives them); another dataset starts at its model's own ε.
KEPT_EPS = "_lab_eps_kept"


def _keep_eps(where: str) -> None:
    st.session_state.setdefault(KEPT_EPS, {})[where] = st.session_state["lab_eps"]


@st.fragment
def live_panel() -> None:
    """Only this fragment reruns when the slider moves; it indexes into the cached sweeps, computing nothing."""
    grid = np.asarray(attack.grid)
    where = f"{dataset}:{attack.norm}"
    kept = st.session_state.get(KEPT_EPS, {}).get(where)
    default = float(grid[min(attack.start_index, len(grid) - 1)])
    start = default if kept is None else grid[np.abs(grid - kept).argmin()]
    # Written on every full run, not only when it differs: after a run that drew no slider (an upload waiting for
    # its class) the browser drew a new one at its default while the session still held 0.25, and the panels showed
    # ε = 0.25 under a slider at 0.1. Not on this fragment's own reruns (the slider moved): the browser shows the
    # value already, and writing it back could undo a key press still on its way. (A flag set by the slider's
    # callback for that once stayed set when the callback ran in a full run that stopped before this panel, and the
    # slider came back at 0.)
    ctx = get_script_run_ctx()
    if ctx is None or not ctx.fragment_ids_this_run:
        st.session_state["lab_eps"] = float(start)
        state.snap_url_number("lab_eps", [float(g) for g in grid])
    # The slider and the projector toggle share a row, so the images start higher (at 1366 × 768 they began at
    # the window's bottom edge).
    row = st.container(horizontal=True, vertical_alignment="bottom", gap="medium", key="lab_eps_row")
    # value: the attack's own start is the slider's default, left out of the URL (with none, the default was 0 and
    # the start written above put ?lab_eps=0.1 in the URL at the next click anywhere on the page).
    eps = row.slider(f"ε ({'ℓ∞' if attack.norm == 'linf' else 'ℓ2'} budget, image scale 0–1)", min_value=0.0,
                     max_value=float(grid[-1]), value=default, step=float(grid[1] - grid[0]),
                     format=f"%.{decimals(float(grid[1] - grid[0]))}f", key="lab_eps", on_change=_keep_eps,
                     args=(where,), bind=state.IN_URL, persist_state="page",
                     help="Moving the slider only looks up the precomputed grid.")
    if eps != st.session_state.get(KEPT_EPS, {}).get(where, start):
        # The ε came from the page's URL (a reload or a shared link: the URL wins over the value written above on a
        # first load): kept like a slider move, or the next full run would put the slider back at the default.
        _keep_eps(where)
    index = int(np.abs(grid - eps).argmin())
    # For a lecture hall: side by side, a digit is ~110 px wide at 1280 px and ~50 px at 1024; one model per row
    # gives the images the page's width.
    # persist_state: kept, and put back in the URL, across runs without an example (a choice out of range).
    large = row.toggle("Large images", key="lab_large", bind=state.IN_URL, persist_state="page",
                       help="One model per row, for a projector.")
    columns = [st.container() for _ in runs] if large else panels(len(runs), "lab-models", "large", kind="models")
    for column, run_id in zip(columns, runs):
        with column:
            sweep = sweeps[run_id]
            model_panel(sweep, index, flips[run_id], data.classes, label=titles[run_id],
                        key=f"lab_{'primary' if run_id == primary else 'comparison'}", trace_label=attack.trace_label,
                        attack=attack.summary, norm=attack.norm, image_height=330 if large else 200,
                        target=dict(attack.items).get("target"))
            st.caption(f"{flip_sentence(sweep, data.classes)} Grid of {len(grid)} budgets computed in "
                       f"{sweep.seconds * 1000:.0f} ms.")


live_panel()
st.caption(f"Example: {example.label}. Attack: {attack.summary}. "
           + ("Each model is attacked with its own gradients (white-box)." if attack.name != "square"
              else "Square uses only the model's output scores (black-box)."))
