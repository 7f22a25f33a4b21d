"""Features: attributions (captum) clean vs adversarial, robust vs non-robust units, and their ablation."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.errors import AtlasError
from core.features import LABELS, METHODS
from dashboard import cache, state
from dashboard.components import feature_views as views, lab_controls
from dashboard.components.cards import no_model_yet
from dashboard.components.charts import run_colours
from dashboard.components.labels import md
from dashboard.components.layout import panels
from dashboard.components.teaching import explain
from dashboard.components.train_form import checked_number

st.title("Features")
explain(
    "**Attributions** say which pixels a prediction leans on. On large natural images, adversarially trained "
    "models are reported to have smoother maps that follow the object and survive attacks, with more energy in "
    "**low spatial frequencies**; the measures below test that claim on your models rather than assume it (on the "
    "8×8 digits the shipped PGD-AT model's saliency sits a little more on the strokes than ERM's, but has *less* "
    "low-frequency energy: at 8×8 a stroke is itself a high-frequency pattern). Each unit of a layer is then scored "
    "for **usefulness** (does it separate the classes?) and **robustness** (does it stay put under attack?): the "
    "useful but non-robust units are what attacks exploit, and switching them off shows how much the model relies "
    "on them.", "lili", "geometry")

dataset = st.session_state[state.DATASET]
device = st.session_state[state.DEVICE]
primary, comparison = st.session_state.get(state.PRIMARY_RUN), st.session_state.get(state.COMPARISON_RUN)
spec = cache.dataset_specs()[dataset]
if len(spec["input_shape"]) != 3:
    st.info(f"The Features page works on image models, and {dataset} is not an image dataset: pick digits (the "
            "default) or another image dataset that has a model.")
    st.stop()
if not primary:
    no_model_yet(dataset, cache.files_missing(dataset))
    st.stop()
runs = [r for r in (primary, comparison) if r]
registry = cache.registry()
info = {r: registry.get_run(r) for r in runs}
names = {r: f"{'Primary' if r == primary else 'Comparison'}: {info[r]['name']}" for r in runs}
own = info[primary]
norm = own["norm"] if own["norm"] in ("linf", "l2") else "linf"
eps = float(own["eps"] or 0.1)

c1, c2, c3, c4 = st.columns([2, 1, 1, 2])
method = c1.selectbox("Attribution", METHODS, format_func=LABELS.__getitem__, index=1, key="feat_method",
                     bind=state.IN_URL)


def _keep_in_sample() -> None:
    """A smaller sample: its last point, not a refusal, for an example past its end."""
    if st.session_state.get("feat_example", 0) >= st.session_state["feat_n"]:
        st.session_state["feat_example"] = st.session_state["feat_n"] - 1


n = c2.selectbox("Sample", (20, 50, 100, 200), index=1, key="feat_n", bind=state.IN_URL,
                 help="The first N test points.", on_change=_keep_in_sample)
# The Attack Lab's or Geometry's last test point where the sample holds it (a teacher's digit stays on screen), unless
# a link or an earlier choice here says otherwise.
picked = lab_controls.picked_test_index(dataset)
adopted = picked is not None and picked < n and not any("feat_example" in s for s in (st.session_state,
                                                                                     st.query_params))
if adopted:
    st.session_state["feat_example"] = picked
# No help icon: its "Help for Example" button would make the field's label ambiguous (as in train_form).
example, problem = checked_number(c3, "Example", 0, int(n) - 1, value=0, step=1, key="feat_example",
                                  bind=state.IN_URL)
if adopted:  # shown at once, but in the URL only at the next rerun: a reload would lose it (state.write_carried_to_url)
    state.write_carried_to_url(("feat_example",))
layer_names = cache.layers(primary, device)
layer = c4.selectbox("Layer for units", list(layer_names), format_func=layer_names.__getitem__, key="feat_layer",
                     bind=state.IN_URL)
if problem:
    st.error(f"Not drawn: {problem}", icon=":material/error:")
    st.stop()
norm_label = "ℓ∞" if norm == "linf" else "ℓ2"
data = cache.run_dataset(primary, dataset)
classes = [str(c) for c in data.classes]
i = int(example)
if picked == i:
    where = " (the Attack Lab's and Geometry's example too)"
elif picked is not None and picked >= n:
    where = (f". The Attack Lab's and Geometry's example, test #{picked}, is not among the first {n}"
             + (": a larger sample holds it" if picked < 200 else ""))
else:
    where = ""
st.caption(f"Example {i} is test #{i} (class {classes[int(data.y[i])]}){where}. Adversarial inputs: PGD-10 at "
           f"ε = {eps:g} ({norm_label}), the primary model's own budget, for both models. Attributions are toward "
           "the true class.")

reports = {}
with st.spinner(f"Attacking {n} points and computing {LABELS[method]} maps…"):
    for run_id in runs:
        try:
            reports[run_id] = cache.attributions(run_id, dataset, int(n), eps, norm, method, device)
        except AtlasError as exc:
            st.error(f"{md(names[run_id])}: {exc}")
for run_id, rep in reports.items():
    sample = cache.feature_sample(run_id, dataset, int(n), eps, norm, device)
    pred = classes[int(sample["pred_adv"][i])]
    # The method on a line of its own: in a quarter of a 560 px page (1024 px, sidebar open) "Integrated Gradients ·
    # adversarial" ran into its neighbour's title.
    labels = [f"clean ({classes[int(data.y[i])]})", f"{LABELS[method]}<br>clean", f"adversarial → {pred}",
              f"{LABELS[method]}<br>adversarial"]
    figure = views.attribution_figure(data.x[i].numpy(), rep["clean"][i], sample["x_adv"][i].numpy(), rep["adv"][i],
                                      names[run_id], labels)
    st.plotly_chart(figure, key=f"feat_maps_{run_id}")
st.caption("Red: pixels that raise the true class's score; blue: pixels that lower it. The two maps of a model "
           "share one colour scale.")

if reports:
    short = {r: "Primary" if r == primary else "Comparison" for r in reports}  # full names in the boxes' legend
    table, config = views.measures_table({short[r]: rep["summary"] for r, rep in reports.items()})
    c1, c2 = panels(2, "feat-measures")
    c1.dataframe(table, column_config=config, key="feat_measures")
    c2.plotly_chart(views.measures_figure({names[r]: rep["per_sample"] for r, rep in reports.items()},
                                          f"{LABELS[method]} over {n} points",
                                          run_colours({names[r]: info[r]["method"] for r in reports})), key="feat_box")
    st.caption(f"Means (table) and spread (boxes) over the {n} sample points. Rank correlation and top-10% overlap "
               "of |attribution|, clean vs adversarial: how much of the explanation survives the attack. Low freq.: "
               "share of the map's DCT energy at frequencies u + v below a quarter of the image size. On strokes: "
               "share of |attribution| on pixels brighter than 0.5 (the digit), each map on its own image.")

st.subheader("Robust and non-robust units")
k = st.slider("Switch off the k most attack-sensitive useful units", 1, 32, 5, key="feat_k", bind=state.IN_URL)
columns = panels(len(runs), "feat-units")
for column, run_id in zip(columns, runs):
    with column:
        run_layer = layer if layer in cache.layers(run_id, device) else "penultimate"
        if run_layer != layer:  # another architecture: said, not swapped silently
            st.info(f"{md(names[run_id])} has no layer {md(layer_names[layer])}; its units are its penultimate "
                    "layer's.", icon=":material/info:")
        try:
            rep = cache.units(run_id, dataset, int(n), eps, norm, run_layer, int(k), device)
        except AtlasError as exc:
            st.error(f"{md(names[run_id])}: {exc}")
            continue
        st.plotly_chart(views.quadrant_figure(rep, names[run_id]), key=f"feat_quad_{run_id}")
        st.plotly_chart(views.activation_figure(rep, i, f"Example {i}: the units the attack moves most on it"),
                        key=f"feat_act_{run_id}")
        if rep["clean_maps"] is not None:
            title = f"Example {i}: activation maps of the sample's 4 most-moved channels"
            st.plotly_chart(views.activation_maps_figure(rep, i, title), key=f"feat_maps_act_{run_id}")
        ab = rep["ablation"]
        st.dataframe(pd.DataFrame({"all units": [ab["clean_acc"], ab["robust_acc"]],
                                   f"{ab['units']} switched off": [ab["clean_acc_ablated"],
                                                                   ab["robust_acc_ablated"]]},
                                  index=["clean accuracy", f"robust accuracy (PGD-10, {n} points)"]),
                     column_config={c: st.column_config.NumberColumn(format="percent")
                                    for c in ("all units", f"{ab['units']} switched off")}, key=f"feat_ab_{run_id}")
st.caption("Usefulness η²: share of a unit's clean-activation variance explained by the class. Robustness: "
           "1/(1 + mean activation change under attack ÷ its clean standard deviation); × marks a unit constant on "
           "the clean sample (a dead unit: 1 if the attack leaves it so, 0 if it wakes it). Dotted lines: medians. "
           "Ringed: the useful units the attack moves most, switched off in the table (the attack is re-run "
           "against the ablated model).")
