"""Geometry: decision-boundary cross-sections through one input, curvature, margins, frequency margins and
universal perturbations, the primary and comparison model side by side on the same plane."""

from __future__ import annotations

import math

import numpy as np
import streamlit as st

from core.errors import AtlasError
from core.geometry.local import PlaneComparison, SectionSpec
from core.geometry.planes import PLANES
from core.geometry.sections import DEFAULT_RESOLUTION, MAX_PATH_STEPS, RESOLUTIONS
from core.training.config import MAX_EPS
from dashboard import cache, state
from dashboard.components import geometry_views as views
from dashboard.components import lab_controls
from dashboard.components.cards import no_model_yet
from dashboard.components.charts import run_colours
from dashboard.components.geometry_jobs import heavy_analyses
from dashboard.components.labels import input_scale
from dashboard.components.layout import panels
from dashboard.components.teaching import explain

st.title("Decision-boundary geometry")
explain(
    "Adversarial examples are a probe of the **shape of the decision boundary** near the data. Each picture is a "
    "2-D slice of input space through one test image x: the plane spanned by û and v̂, coloured by the class the "
    "model predicts at x + a·û + b·v̂. With û = the **DeepFool normal** (the direction to the nearest boundary) the "
    "boundary crosses the horizontal axis close to x; along a **random** direction it is far away — a random "
    "direction in d dimensions has only ~1/√d of its length along the normal. The dashed shape is the ε-ball's "
    "slice (a disc for ℓ2; for ℓ∞ the exact polygon where the plane cuts the cube); the red line is the attack's "
    "path projected on the plane. **What the paper predicts:** the boundary is curved along the normal and flat "
    "along random directions, and **adversarial training flattens it and pushes it out** — compare the primary "
    "and comparison models on the very same plane.", "geometry")

dataset = st.session_state[state.DATASET]
primary, comparison = st.session_state.get(state.PRIMARY_RUN), st.session_state.get(state.COMPARISON_RUN)
device = st.session_state[state.DEVICE]
if not primary:
    no_model_yet(dataset, cache.files_missing(dataset))
    st.stop()
try:
    data = cache.run_dataset(primary, dataset)
except AtlasError as exc:
    st.error(str(exc))
    st.stop()
is_image = len(data.input_shape) == 3
scale = input_scale(data.input_shape)
runs = [r for r in (primary, comparison) if r]
names = {r: cache.registry().get_run(r)["name"] for r in runs}
primary_run = cache.registry().get_run(primary)
run_norm = primary_run["norm"] if primary_run["norm"] in ("linf", "l2") else "linf"
run_eps = float(primary_run["eps"] or 0.1)
sqrt_d = math.sqrt(int(np.prod(data.input_shape)))
# The model's own budget in its own norm; in the other norm, the ℓ2 length of an ℓ∞ corner (×√d) or back.
default_eps = {run_norm: run_eps, "l2" if run_norm == "linf" else "linf":
               run_eps * sqrt_d if run_norm == "linf" else run_eps / sqrt_d}

if is_image:
    example = lab_controls.pick_example(data, primary, device, "geometry")
    # The 2-D data's point field is not drawn for images: its link value was ignored without a word.
    state.refuse_link_params({"geo_index": f"which picks a point of 2-D data; a {dataset} test image is picked "
                                           "with Example (By index: Test index)"})
else:
    example = lab_controls.pick_point(data)

with st.container(border=True):
    # Short option texts: a group is ~190 px at 1280 px, and "DeepFool normal, random" was cut off there.
    c1, c2, c3 = panels(3, "geo-controls", kind="controls")
    plane_kind = c1.selectbox("Plane (û, v̂)", PLANES, key="geo_plane", format_func=views.PLANE_LABELS.__getitem__,
                              bind=state.IN_URL,
                              help="û is the direction named here; v̂ is a random direction orthogonal to it "
                                   "(both are random for *Two random*).")
    plane_from = "primary"
    if comparison and plane_kind in ("deepfool", "gradient"):
        plane_from = c1.radio("Direction û of", ("primary", "comparison"), horizontal=True, key="geo_plane_from",
                              bind=state.IN_URL,
                              help="Whose DeepFool normal or gradient defines the plane; both models are drawn "
                                   "on the same plane.")
    # Whose û it is, said wherever û is named when two models share the plane (views.u_text: planes of a model only).
    owner = plane_from if comparison else None
    other = other_key = None
    if plane_kind == "image":
        state.clamp_url_number("geo_other", 0, len(data) - 1)  # ?geo_other=inf stopped the page with a traceback
        other_index = c1.number_input(f"Other test input (0–{len(data) - 1})", 0, len(data) - 1,
                                      min(1, len(data) - 1), key="geo_other", bind=state.IN_URL)
        other, other_key = data.x[int(other_index)], f"{data.name}:{data.split}:{int(other_index)}"
        c1.caption(f"class {data.classes[int(data.y[int(other_index)])]}")
    norm = c2.segmented_control("Norm", ("linf", "l2"), default=run_norm, key="geo_norm", bind=state.IN_URL,
                                format_func=lambda n: "ℓ∞" if n == "linf" else "ℓ2") or "linf"
    state.clamp_url_number(f"geo_eps_{norm}", 0.0, MAX_EPS[norm])
    eps = c2.number_input("ε", value=round(default_eps[norm], 3), step=0.01,
                          format="%g", key=f"geo_eps_{norm}", bind=state.IN_URL,
                          help=f"The budget whose ball is drawn and the PGD path's budget ({scale}).")
    path = c3.selectbox("Attack path", ("pgd", "deepfool", "none"), key="geo_path", bind=state.IN_URL,
                        format_func={"pgd": "PGD (no random start)", "deepfool": "DeepFool", "none": "none"}.get)
    colour_by = c3.segmented_control("Colour by", ("class", "margin"), default="class", key="geo_colour",
                                     bind=state.IN_URL) or "class"
    # The finer settings folded away: open, the box pushed the planes below a 1366 × 768 window.
    with st.expander("Grid, zoom and path steps"):
        c1, c2, c3 = st.columns(3)
        resolution = c1.select_slider("Finest grid points per side", RESOLUTIONS, value=DEFAULT_RESOLUTION,
                                      key="geo_res", bind=state.IN_URL,
                                      help="The grid is adaptive: a 17 × 17 grid first, then only cells the "
                                           "boundary crosses are refined, level by level.")
        zoom = c2.slider("Zoom out", 0.25, 4.0, 1.0, 0.25, key="geo_zoom", bind=state.IN_URL,
                         help="× the automatic half-width (1.6 × the farthest DeepFool boundary or ε-ball reach)")
        state.clamp_url_number("geo_steps", 1, MAX_PATH_STEPS)
        steps = c3.number_input("Path steps", 1, MAX_PATH_STEPS, 10, key="geo_steps", bind=state.IN_URL)

# With no example (a choice out of range, an upload waiting for its class) the controls above are still drawn, so
# they keep their values and their place in the URL; the message is at the example's field.
if example is None:
    st.stop()
NEEDS_EPS = "Set ε above 0 (the inputs above) to draw this view."
view = spec = None
if not math.isfinite(eps) or eps <= 0:
    st.warning(views.eps_message(eps, norm, default_eps[norm], MAX_EPS[norm], scale), icon=":material/tune:")
else:
    try:
        spec, notes = SectionSpec.checked(plane=plane_kind, resolution=int(resolution), zoom=float(zoom),
                                          eps=float(eps), norm=norm, path=path, path_steps=int(steps))
    except AtlasError as exc:
        st.error(str(exc))
        st.stop()
labels = [(r, ("Primary: " if r == primary else "Comparison: ") + names[r]) for r in runs]
# Each model in its method's colour, as on the other pages.
colours = run_colours({label: cache.registry().get_run(r)["method"] for r, label in labels})
if spec is not None:
    with st.spinner("Slicing both models on the same plane…"):
        try:
            view = cache.plane_comparison(labels[::-1] if plane_from == "comparison" else labels, device,
                                          example.key, example.x, example.y, spec, other_key, other)
        except AtlasError as exc:
            st.error(str(exc))
            st.stop()
    for note in notes + view.notes:
        st.info(note, icon=":material/info:")
    # Primary first in every table and chart, also when the plane is the comparison's (computed in that order).
    results = {label: view.results[label] for _, label in labels}

tab_section, tab_curv, tab_surface, tab_heavy = st.tabs(
    ["Cross-section", "Curvature & distances", "Loss landscape", "Margins, frequencies, universal perturbation"])


def section_tab(view: PlaneComparison, spec: SectionSpec) -> None:
    columns = panels(len(labels), "geo-sections")
    eps_label = f" (ε = {spec.eps:g}, {views.NORM_NAMES[norm]})"
    margin_limit = views.shared_margin_limit(view.results)
    for column, (run_id, label) in zip(columns, labels):
        local = view.results[label]
        with column:
            st.plotly_chart(views.section_figure(local, view, data.classes, label, colour_by=colour_by, owner=owner,
                                                 eps_label=eps_label, margin_limit=margin_limit),
                            key=f"geo_section_{run_id}")
            if local.prediction != example.y:
                st.badge(f"Already misclassified as {data.classes[local.prediction]} (true "
                         f"{data.classes[example.y]}), before any perturbation", icon=":material/error:",
                         color="orange")
            st.caption(views.section_caption(local, data.classes, example.y, view.extent))
    st.dataframe(views.local_table(results, data.classes), hide_index=True)
    st.caption("Hessian λmax: the largest-magnitude eigenvalue of the loss's input-Hessian (power iteration, 20 "
               "Hessian-vector products). CURE: how much the loss gradient turns over a step of 0.1 along its sign. "
               "κ: curvature of the boundary curve on this plane where it crosses the û axis (fitted over ± half "
               "the model's distance to it); κ > 0 bends away from x, κ < 0 wraps around x, 0 is flat. "
               "The boundary drawn and measured is that of the class each model predicts at x.")
    evaluated = ", ".join(f"{views.short_name(label)} {view.results[label].section.evaluated:,}"
                          for _, label in labels)
    st.caption(f"{example.label}. Grid {spec.resolution}×{spec.resolution} over ±{view.extent:.3f} "
               f"(ℓ2 units of input space; the plane is not clipped to the pixel range); grid points evaluated: "
               f"{evaluated}. Whole view computed in {view.seconds:.2f} s. Margin colours share one range, "
               f"±{margin_limit:.3g}. Off the plane: how far the attack's iterate is from the slice — an attack "
               "moves in all d dimensions, the picture shows two.")


def surface_tab(view: PlaneComparison, spec: SectionSpec) -> None:
    columns = panels(len(labels), "geo-surfaces")
    loss_range = views.shared_loss_range(view.results)
    for column, (run_id, label) in zip(columns, labels):
        with column:
            # The model on a line of its own: "Loss on the plane — Primary: digits SmallCNN · PGD-AT ε=0.1" was cut
            # off in a half-width column.
            st.plotly_chart(views.surface_figure(view.results[label], f"Loss on the plane<br><sup>{label}</sup>",
                                                 loss_range, view.ball), key=f"geo_surface_{run_id}")
    st.caption(f"Cross-entropy loss of the true class ({data.classes[example.y]}) over the same plane, "
               f"{spec.surface_resolution}×{spec.surface_resolution} points; both panels share one height and colour "
               f"range ({views.loss_text(loss_range[0])} to {views.loss_text(loss_range[1])}). Drag to rotate. "
               + views.ball_loss_text(results, view.plane.dim) + " Past the decision boundary the loss climbs: "
               "where the climb starts is the boundary's distance; its height is how sure the model is of the "
               "other class there, not how robust it is.")


with tab_section:
    if view is None:
        st.info(NEEDS_EPS, icon=":material/tune:")
    else:
        section_tab(view, spec)

with tab_curv:
    if view is None:
        st.info(NEEDS_EPS + " The statistics over a sample below do not need it.", icon=":material/tune:")
    else:
        st.plotly_chart(views.profile_figure(results, view.plane, colours, owner), key="geo_profile")
        st.caption("Solid: the margin along û falls to the boundary quickly. Dotted: along a random direction it "
                   "barely moves — the boundary is far and flat there. Each model has its own y scale: read where "
                   "each line crosses 0 and how steeply, not their heights against each other. A flatter solid line "
                   "after adversarial training means a more linear, less curved model around x.")
    st.markdown("#### Over a sample of test inputs")
    n = st.slider("Test inputs", 10, 100, 30, 10, key="geo_sample_n", bind=state.IN_URL,
                  help="Hessian power iteration, CURE and 8 random directions of bisection per input")
    if st.button("Measure curvature and distances", key="geo_sample_go", icon=":material/straighten:"):
        st.session_state["geo_sample_for"] = (tuple(runs), n, device)
    if st.session_state.get("geo_sample_for") == (tuple(runs), n, device):
        with st.spinner(f"Measuring {n} inputs per model…"):
            stats = {label: cache.curvature_sample(r, dataset, n, device) for r, label in labels}
        st.dataframe(views.sample_table(stats), hide_index=True,
                     column_config={label: st.column_config.NumberColumn(format="%.4g") for _, label in labels})
        left, right = panels(2, "geo-sample")
        left.plotly_chart(views.sample_figure(stats, "hessian", "Top eigenvalue of the loss's input-Hessian",
                                              "eigenvalue (log)", log=True, colours=colours), key="geo_hess")
        right.plotly_chart(views.sample_figure(stats, "ratio", "Random ÷ adversarial distance to the boundary",
                                               "ratio", colours=colours), key="geo_ratio")
        st.caption("Expect much lower curvature after adversarial training (Hessian and CURE), and a "
                   f"random ÷ DeepFool ratio near √d = {next(iter(stats.values()))['sqrt_dim'][0]:.1f} where the "
                   f"boundary is locally flat. Rays are searched up to {views.RANDOM_REACH:g}× the DeepFool "
                   "distance; an input whose random rays mostly meet no boundary there (a ray pointing away from "
                   f"the boundary never meets it) has ratio ∞, beyond {views.RANDOM_REACH:g}: the table's median "
                   f"and the boxes count it, drawn on the dotted line at {views.RANDOM_REACH:g}, and each box's "
                   "label says how many. Inputs DeepFool cannot flip have no ratio and are left out. Distances are "
                   "unclipped: they measure the function, not the pixel box.")
    else:
        st.caption("Press the button to measure; it takes a few seconds per model and is remembered.")

with tab_surface:
    if view is None:
        st.info(NEEDS_EPS, icon=":material/tune:")
    else:
        surface_tab(view, spec)

with tab_heavy:
    heavy_analyses(data, labels, device, is_image, colours)
