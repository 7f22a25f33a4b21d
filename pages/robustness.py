"""Robustness: curves over ε for several models, per-class analysis, trust checks, export, background evaluations."""

from __future__ import annotations

import streamlit as st

from core.errors import AtlasError
from core.evaluation import views
from core.evaluation.bundle import PAGE_POINTS, combine, export_table, page_view, standard_bundle
from dashboard import cache, state
from dashboard.components import evaluations as ev
from dashboard.components import robustness_charts as charts
from dashboard.components.charts import run_colours
from dashboard.components.jobs import jobs_panel
from dashboard.components.labels import drop_shared_prefix, input_scale, md
from dashboard.components.layout import panels
from dashboard.components.teaching import explain
from dashboard.components.trust import trust_panel

st.title("Robustness")
explain(
    "How much of the test set survives an attacker with budget ε. One **minimal-norm** attack (FMN or DeepFool) "
    "finds, for every test point, the smallest perturbation that flips it, so one run draws the whole curve; PGD-10 "
    "checks a few of its points (open circles). At the chosen ε every model also meets PGD-100, Temperature-PGD "
    "and the quick AutoAttack-style ensemble, and a point counts as robust only if it survives **all** of them "
    "(the star). The per-class views show that robustness is very unequal between classes, and where the errors "
    "go.", "classwise", "madry")

dataset = st.session_state[state.DATASET]
device = st.session_state[state.DEVICE]
runs = [r for r in cache.runs(dataset) if r["checkpoint_path"]]
if not runs:
    st.info("There is no finished model for this dataset yet: pick another dataset or train one.")
    st.stop()
names = cache.run_labels(runs)
default = [r for r in (st.session_state.get(state.PRIMARY_RUN), st.session_state.get(state.COMPARISON_RUN))
           if r in names]
spec = cache.dataset_specs()[dataset]
primary = cache.registry().get_run(default[0] if default else runs[0]["id"])
if primary["norm"] == "l2patch":
    # Before any control: the models, ε (0.25 to 16) and test points were drawn live above this dead end.
    st.info("The patch models' per-patch ℓ2 threat model has no minimal-norm attack; the **Theory Lab** shows their "
            "robustness over training. Pick digits or a toy dataset in the sidebar for this page.",
            icon=":material/info:")
    st.stop()
norms = ("linf", "l2")

# The sidebar's primary and comparison are what the list starts from, and a change there replaces it: the list kept
# the models it was first drawn with (a keyed widget ignores a new default), so the page went on with the old pair
# under a URL that named the new one. A list chosen by hand stays while the sidebar does not change.
pair = (st.session_state.get(state.PRIMARY_RUN), st.session_state.get(state.COMPARISON_RUN))
if st.session_state.get("_rob_pair", pair) != pair:
    st.session_state["rob_models"] = default
st.session_state["_rob_pair"] = pair
# A model renamed meanwhile kept its old name on its chip (the browser holds the labels it was sent): after a change
# of names the list is sent again.
if st.session_state.get("_rob_names", names) != names and "rob_models" in st.session_state:
    st.session_state["rob_models"] = [r for r in st.session_state["rob_models"] if r in names]
st.session_state["_rob_names"] = names
# The models on a row of their own, so four long names show whole; the ε slider gets the width of the row below.
chosen = st.multiselect("Models", list(names), default=default, format_func=names.__getitem__, key="rob_models",
                        max_selections=4, bind=state.IN_URL)
cols = st.columns([1, 3, 1])
own_norm = primary["norm"] if primary["norm"] in norms else norms[0]
norm = cols[0].selectbox("Norm", norms, key="rob_norm", format_func=charts.NORM_LABEL.__getitem__,
                         index=norms.index(own_norm), bind=state.IN_URL)
top, grid, own = page_view(primary["norm"], primary["eps"], norm, spec["input_shape"])
# It sets the ε of everything below the curve, not only the per-class charts.
eps = cols[1].select_slider("ε (the table, the stars, the per-class views, the checks)", options=sorted({*grid, own}),
                            value=own,
                            key=f"rob_eps_{norm}", format_func=lambda v: f"{v:g}", bind=state.IN_URL)
# A link's ε of the other norm (?rob_eps_l2=… while the page shows ℓ∞) stayed in the URL, ignored without a word.
other_eps = {key: key.removeprefix("rob_eps_") for key in state.link_params()
             if key.startswith("rob_eps_") and key != f"rob_eps_{norm}"}
state.refuse_link_params({key: f"which is the ε of {charts.NORM_LABEL[other]}, while the page shows "
                               f"{charts.NORM_LABEL[norm]} (Norm)" if other in norms else
                               "which is the ε of no norm this page has" for key, other in other_eps.items()})
# Only sizes below the test split's own ("all" is the whole split): 1000 was offered on digits' 450 points.
try:
    test_size = len(cache.run_dataset(primary["id"], dataset))
except AtlasError as exc:  # the dataset's files are missing, or the checkpoint does not load
    st.error(f"{md(names.get(primary['id'], primary['name']))}: {exc}")
    st.stop()
points = (*(p for p in (100, 200, PAGE_POINTS, 1000) if p < test_size), "all")
n_choice = cols[2].selectbox("Test points", points, index=points.index(PAGE_POINTS) if PAGE_POINTS in points else
                             len(points) - 1, key="rob_n", bind=state.IN_URL,
                             format_func=lambda p: f"all {test_size}" if p == "all" else str(p),
                             help="The first N points of the test split; larger is slower but tighter.")
if not chosen:
    st.info("Choose at least one model.")
    st.stop()

# In the default view (the primary model's own norm and ε) every attack runs, or comes from the store (shipped with
# the default models); at another ε or norm the page answers at once from the minimal-norm run and computes the
# attacks at ε only when asked.
view_key = (eps, n_choice, norm, tuple(chosen))
compute_now = st.session_state.pop("rob_compute_for", None) == view_key
at_eps = (eps == own and norm == own_norm) or compute_now
n = None if n_choice == "all" else int(n_choice)
results = []
for run_id in chosen:
    bundle = standard_bundle(run_id, dataset, eps=eps, norm=norm, top=top, n=n)
    try:
        results.append(ev.run_bundle(run_id, names[run_id], bundle, device, at_eps=at_eps))
    except AtlasError as exc:
        st.error(f"{md(names[run_id])}: {exc}")
if not results:
    st.stop()
pending = [r for r in results if not r.complete]
if pending:
    ev.at_eps_notice(pending, {r.run_id: standard_bundle(r.run_id, dataset, eps=own, norm=norm, top=top, n=n)
                               for r in pending}, dataset=dataset, norm=norm, device=device,
                     on_compute=lambda: st.session_state.update(rob_compute_for=view_key))
data = cache.run_dataset(results[0].run_id, dataset)
classes = [str(c) for c in data.classes]

# The models' own colours (their method's, as on the hub) and names without the part they all share.
methods = {r["id"]: r["method"] for r in runs}  # the cached run list: no registry query on each ε move
colours = run_colours({r.run_id: methods[r.run_id] for r in results})
shared, short = drop_shared_prefix([r.name for r in results])
entries = [{**ev.curve_entry(r), "name": name} for r, name in zip(results, short)]
scale = input_scale(spec["input_shape"])
st.plotly_chart(charts.curve_figure(entries, eps, norm, [colours[r.run_id] for r in results], scale),
                key="rob_curve")
gaps = ", ".join(f"{r.name}: {ev.check_gap(r):.1f}" for r in results)
st.caption(f"Lines: one {results[0].bundle.curve.attack.upper()} run per model (robust at ε ⇔ its minimal "
           f"perturbation exceeds ε). Circles: PGD-10 at four ε; largest gap to the line in points — {gaps}. "
           "Stars: worst case per point over every attack at the chosen ε"
           + (" (none yet where the attacks at ε have not run)." if pending else "."))
ev.summary_table(results, short, shared, eps)

st.subheader("Per class")
focus = results[0]
if len(results) > 1:
    pick = st.segmented_control("Model", [r.name for r in results], default=results[0].name, key="rob_focus",
                                bind=state.IN_URL)
    focus = next((r for r in results if r.name == pick), results[0])
per_class = ev.worst_per_class(focus, classes)
ev.class_metrics(views.disparity(per_class))
left, right = panels(2, "rob-classes")
left.plotly_chart(charts.class_bars(per_class, eps, "worst case" if focus.complete else "minimal-norm attack only"),
                  key="rob_bars")
left.caption("Blue: clean accuracy; rust red: robust accuracy, worst case over all attacks at ε."
             if focus.complete else "Blue: clean accuracy; rust red: robust accuracy against the minimal-norm "
             "attack alone (the other attacks at this ε have not run).")
right.plotly_chart(charts.class_eps_heatmap(ev.class_eps(focus, classes)), key="rob_heat")
right.caption("Rows are classes, columns ε (from the minimal-norm run): where each class gives way "
              "(dark purple = easily attacked, yellow = robust).")
combined = combine(focus.tables, eps)
left, right = panels(2, "rob-flips")
flips, clean_errors = views.flip_matrix(combined, eps, len(classes)), views.clean_errors(combined)
left.plotly_chart(charts.flip_heatmap(flips, classes, eps), key="rob_flip")
left.caption(f"Row: true class; column: the class the strongest successful attack sent the point to. Counted: the "
             f"{flips.sum()} points classified correctly on the clean input and wrongly after the attack. Left out: "
             "points that stay correct" + (f", and the {clean_errors} of {len(combined)} already misclassified on the "
                                           "clean input (no attack's doing)." if clean_errors else "."))
no_norms = views.classes_without_min_norms(focus.curve, classes)
right.plotly_chart(charts.norm_violin(views.min_norms_by_class(focus.curve, classes), eps, norm,
                                      focus.bundle.curve.attack.upper(), classes, no_norms), key="rob_violin")
right.caption("Distribution of the smallest flipping perturbation per class, over its correctly classified points; "
              "below the dotted line = broken at ε."
              + "".join(f" Class {c}: none ({why})." for c, why in no_norms.items()))
left, right = panels(2, "rob-gains")
gains, sweep = ev.gains(focus, classes), ev.temperature_sweep(focus, classes)
if gains is None or sweep is None:
    left.info(f"What the stronger attacks gain per class, and the Temperature-PGD sweep, appear once the attacks at "
              f"ε = {eps:g} have run for {focus.name}.", icon=":material/hourglass_empty:")
if gains is not None:
    left.plotly_chart(charts.gain_bars(gains), key="rob_gain")
    flat = charts.attacks_without_gain(gains)
    left.caption("Points of each class's robust accuracy a stronger attack takes beyond PGD-10: the points PGD-10 "
                 "leaves robust and it breaks (worst case per point of both, so never below 0). T-PGD (worst T): how "
                 "far the lowest point of the class's line in the Temperature sweep lies below T = 1 (PGD-10). Tian "
                 "et al.: stronger attacks gain mostly on the weak classes."
                 + (f" Not drawn, as it leaves every class exactly as robust as PGD-10 does: {', '.join(flat)}."
                    if flat else ""))
if sweep is not None:
    right.plotly_chart(charts.temperature_figure(sweep), key="rob_temp")
    right.caption("Robust accuracy per class under Temperature-PGD as T varies (T = 1 is PGD-10).")
try:
    model, _ = cache.model(focus.run_id, device)
    w = views.class_weight_norms(model, len(classes))
    corr = ev.weight_correlation(w, per_class)
    left, right = panels(2, "rob-weights")
    left.plotly_chart(charts.weight_norm_scatter(per_class, w), key="rob_wnorm")
    left.caption(f"One dot per class: the norm of its classifier row against its robustness (Pearson r = {corr:.2f}).")
except ValueError as exc:
    st.info(f"No class-weight view: {exc}.")
    right = st.container()

with right:
    trust_panel(focus.run_id, dataset, eps, norm, device, compute=focus.complete, page_points=len(focus.curve))

st.subheader("Export and background evaluations")
where = " (the model chosen under *Per class*: pick another there to export its table)" if len(results) > 1 else ""
st.caption(f"The per-sample tables are those of **{md(focus.name)}**{where}: one row per test point at ε = {eps:g}, "
           "robust or not against each attack, the worst case and where the point was sent.")
c1, c2, c3 = st.columns(3)
# The files are written when a button is pressed, not on every slider move.
stem = f"{focus.run_id}_eps{eps:g}"
export_help = f"{focus.name} only, at ε = {eps:g}, on the first {len(combined)} test points."
c1.download_button("Per-sample table (CSV)", lambda: export_table(combined, "csv"), f"{stem}.csv", "text/csv",
                   key="rob_csv", icon=":material/download:", help=export_help)
c2.download_button("Per-sample table (parquet)", lambda: export_table(combined, "parquet"), f"{stem}.parquet",
                   "application/octet-stream", key="rob_parquet", icon=":material/download:", help=export_help)
if focus.bundle.full.attack == "full" and not focus.has_full:
    if focus.bundle.full.eval_id in ev.queued_eval_ids():
        # Queued from this or another tab or session: a second press queued the same evaluation again.
        c3.info("The full ensemble is being computed in the background (progress below); the page picks it up "
                "when it is done.", icon=":material/hourglass_top:")
    # A short label: the whole of "(background job)" did not fit a third of the page at 1280 px.
    elif c3.button("Run the full ensemble", key="rob_full", icon=":material/rocket_launch:",
                 help=f"For {focus.name}: APGD-CE, APGD-T against 9 classes, FMN and Square on the points still "
                      "robust, as a background job (a separate process); the page picks the result up when it is "
                      "done."):
        from core.jobs import submit_job

        submit_job(cache.registry(), "eval", {"spec": focus.bundle.full.to_dict(), "device": device},
                   device=device)
        st.toast("Full evaluation queued.")
elif focus.has_full:
    c3.success("The full ensemble is included in the worst case.")
jobs_panel(kind="eval")
