"""Latent space: UMAP / PCA / t-SNE maps of a layer's features, clean and adversarial, scrubbed through ε."""

from __future__ import annotations

import numpy as np
import streamlit as st

from core.errors import AtlasError
from core.evaluation.bundle import eps_range
from core.latent import LatentSpec
from core.latent.maps import eps_grid
from core.latent.projection import LABELS, tsne_max_clean_points
from dashboard import cache, state
from dashboard.components import latent_views as views
from dashboard.components.cards import no_model_yet
from dashboard.components.labels import input_scale, md
from dashboard.components.layout import panels
from dashboard.components.teaching import explain

st.title("Latent space")
explain(
    "Each dot is one test image, placed by what a layer of the network makes of it (its **features**), squeezed "
    "to 2-D. Clean images (dots) are coloured by their true class; each image's adversarial twin (×), found by an "
    "attack with budget ε, is coloured by what the model now predicts, and a thin line joins the two. Move ε and "
    "watch the twins leave their cluster for another class's. The map is fitted on the clean points only; the "
    "adversarial points are placed into the same map, so clean and adversarial positions are comparable. A "
    "standard model's clusters dissolve at small ε; an adversarially trained model's hold much longer.",
    "madry", "geometry")
with st.expander("What distances on the map do and do not mean (UMAP, PCA, t-SNE)", icon=":material/info:"):
    st.markdown(
        "- UMAP keeps **neighbourhoods**: points close on the map are usually close in feature space.\n"
        "- It does **not** keep distances between clusters or cluster sizes: a gap twice as wide is not twice as "
        "far, and a tight cluster is not necessarily a tight class. Read the numbers in the table (computed in the "
        "full feature space) rather than the picture for sizes and distances.\n"
        "- A new point (an adversarial twin) is placed near the clean points it is closest to in feature space; "
        "if it lands inside another class's cluster, its features really resemble that class's.\n"
        "- PCA is a linear projection: distances are faithful along two axes and blind to the rest. t-SNE cannot "
        "place new points, so it embeds clean and adversarial features together, and the clean map then depends on "
        "the attack too.")

dataset = st.session_state[state.DATASET]
device = st.session_state[state.DEVICE]
primary, comparison = st.session_state.get(state.PRIMARY_RUN), st.session_state.get(state.COMPARISON_RUN)
if not primary:
    no_model_yet(dataset, cache.files_missing(dataset))
    st.stop()
runs = [r for r in (primary, comparison) if r]
registry = cache.registry()
names = {r: registry.get_run(r)["name"] for r in runs}
primary_run = registry.get_run(primary)
if primary_run["norm"] == "l2patch":
    st.info("The patch models live in a per-patch threat model with no image features to map; see the theory "
            "page. Pick digits or a toy dataset.")
    st.stop()
try:
    layer_labels = cache.layers(primary, device)
    data = cache.run_dataset(primary, dataset)
except AtlasError as exc:
    st.error(str(exc))
    st.stop()
spec_shape = cache.dataset_specs()[dataset]["input_shape"]

with st.form("lat_form", border=False):
    # Two rows of three: six in one row left each select ~80 px at 1024 px with the sidebar open ("UM", "45(").
    cols = st.columns([2, 1, 1]) + st.columns(3)
    layer = cols[0].selectbox("Layer", list(layer_labels), format_func=layer_labels.__getitem__, key="lat_layer",
                              bind=state.IN_URL,
                              help="Features are read from this layer by a forward hook.")
    # Split and norm come first (each in its own column): the Points choices and t-SNE's cap depend on them.
    split = cols[3].selectbox("Split", ("test", "train"), key="lat_split", bind=state.IN_URL)
    norms = ("linf", "l2")
    norm = cols[5].selectbox("Norm", norms, key="lat_norm", bind=state.IN_URL,
                             format_func={"linf": "ℓ∞", "l2": "ℓ2"}.__getitem__,
                             index=norms.index(primary_run["norm"]) if primary_run["norm"] in norms else 0)
    own_eps = primary_run["eps"] if primary_run["norm"] == norm else None
    grid, first_eps = eps_grid(eps_range(norm, spec_shape, own_eps), own_eps)
    # A split that does not load is reported after the form: stopping inside it would leave it without its button.
    split_error = ""
    try:
        split_size = len(cache.run_dataset(primary, dataset, split))
    except AtlasError as exc:
        split_error, split_size = str(exc), len(data)
    projection = cols[1].selectbox("Projection", ("umap", "pca", "tsne"), format_func=LABELS.__getitem__,
                                   key="lat_projection", bind=state.IN_URL,
                                   help="UMAP: fitted on the clean points, adversarial points placed into that map. "
                                        "PCA: linear, instant. t-SNE: cannot place new points, so clean and "
                                        "adversarial features are embedded together in one fit (slowest: about a "
                                        "minute for 450 points and several ε on 2 cores). That fit holds at most "
                                        f"{tsne_max_clean_points(len(grid))} clean points at these {len(grid)} ε; "
                                        "more are cut to that, with a note, before anything runs.")
    choices = views.point_choices(split_size)
    asked = st.session_state.get("lat_n")
    n = cols[2].selectbox("Points", choices, index=views.default_point_choice(choices), key="lat_n",
                          bind=state.IN_URL, format_func=views.point_label(split_size),
                          help=f"The first N points of the {split} split, which has {split_size}. The choices "
                               "follow the split in use: after switching split, draw once to see the new split's.")
    attack = cols[4].selectbox("Attack", ("pgd", "fgsm"), key="lat_attack", bind=state.IN_URL,
                               format_func={"pgd": "PGD-10", "fgsm": "FGSM"}.__getitem__)
    st.form_submit_button("Draw the maps", icon=":material/scatter_plot:")
    st.caption("Changes take effect when you press **Draw the maps**. Another projection or layer of the same points "
               "reuses their attack.")

if split_error:
    st.error(split_error)
    st.stop()
if isinstance(asked, int) and asked > split_size:
    st.info(f"The {split} split of {dataset} has {split_size} points, fewer than the {asked} chosen before: the "
            f"maps use {views.point_label(split_size)(n)}.")
if projection == "tsne":
    n, tsne_note = views.tsne_points(n, len(grid))
    if tsne_note:
        st.info(tsne_note, icon=":material/info:")

maps, notes = {}, []
with st.spinner(f"Attacking {n} points at {len(grid)} budgets and projecting their features…"):
    for run_id in runs:
        run_layer = layer if layer in cache.layers(run_id, device) else "penultimate"
        if run_layer != layer:
            notes.append(f"{names[run_id]} has no layer {layer}; its map uses the penultimate layer.")
        try:
            spec = LatentSpec(run_id=run_id, dataset=dataset, eps_grid=grid, split=split, n=n, layer=run_layer,
                              attack=attack, norm=norm, projection=projection)
            maps[run_id] = cache.latent(spec, device)
        except AtlasError as exc:
            st.error(f"{md(names[run_id])}: {exc}")
if not maps:
    st.stop()
for note in dict.fromkeys(notes):
    st.warning(note)
images = cache.run_dataset(primary, dataset, split).x[:n].numpy()
classes = [str(c) for c in data.classes]


@st.fragment
def scrub() -> None:
    """Only this fragment reruns when ε, the toggles or a selection change; it indexes the cached maps."""
    labels = ["clean", *(f"{e:g}" for e in grid)]
    # The slider gets the row; the toggles, sized to their labels, wrap under each other where the page is narrow
    # (in columns, at 1024 px with the sidebar open, they were cut to "cle…", "l." and "a…").
    scale = input_scale(spec_shape)
    pick = st.select_slider(f"ε ({'ℓ∞' if norm == 'linf' else 'ℓ2'}, {scale})", options=labels,
                            value=labels[first_eps + 1], key="lat_eps", bind=state.IN_URL,
                            help="Scrubbing only looks up the precomputed maps.")
    index = labels.index(pick)
    row = st.container(horizontal=True, gap="medium")
    layers = views.Layers(clean=row.toggle("clean ●", True, key="lat_show_clean"),
                          adversarial=row.toggle("adversarial ×", True, key="lat_show_adv"),
                          lines=row.toggle("lines", False, key="lat_show_lines",
                                          help="A line from each clean point to its adversarial twin. Off at "
                                               "first: drawing them makes every ε step about twice as slow."))
    animate = row.toggle("animate", False, key="lat_animate",
                        help="Adds every ε to the charts and a ▶ button that plays them in the browser.")
    columns = panels(len(maps), "lat-maps")
    selected: dict[str, np.ndarray] = {}
    for column, (run_id, latent) in zip(columns, maps.items()):
        role = "primary" if run_id == primary else "comparison"
        title = views.map_title(f"{'Primary' if role == 'primary' else 'Comparison'}: {names[run_id]}", latent)
        fig, rows = views.latent_figure(latent, index, classes, layers, title, pick, animate)
        event = column.plotly_chart(fig, key=f"lat_chart_{role}", on_select="rerun", selection_mode=("box", "lasso"))
        selected[run_id] = views.selected_rows(event, rows)
        column.caption(views.map_caption(latent, projection))
    by_name = {("Primary" if r == primary else "Comparison") + f": {names[r]}": m for r, m in maps.items()}
    st.markdown("**Measures on the clean points**" if index == 0 else f"**Measures at ε = {pick}**")
    left, right = panels(2, "lat-measures")
    table = views.measures_table(by_name, index)
    left.dataframe(table, column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns},
                   key="lat_measures")
    right.caption("Measured in the layer's full feature space, not on the map. k-NN accuracy: the 5 nearest clean "
                  "points vote (clean: leave-one-out). Silhouette: how well the true classes form clusters (−1…1). "
                  "Still nearest own centroid: share of twins closest to their true class's clean centre. "
                  "Distance to own centroid ÷ clean: how far the twins moved from their class's centre.")
    if index > 0:
        columns = panels(len(maps), "lat-drift")
        for column, (run_id, latent) in zip(columns, maps.items()):
            column.plotly_chart(views.drift_figure(latent, index, classes, f"Drift toward class — {names[run_id]}"),
                                key=f"lat_drift_{run_id}")
        st.caption("Row: true class; column: the class whose clean centroid the adversarial point now lies nearest. "
                   "Numbers are points; the colour is their share of the row. Off-diagonal mass is where the attack "
                   "moved the features.")
    for run_id, rows in selected.items():
        if len(rows):
            st.markdown(f"**Selected in {md(names[run_id])}** ({len(rows)} points, at ε = {pick})")
            views.gallery(images, rows, maps[run_id], index, classes)
    if not any(len(r) for r in selected.values()):
        st.caption("Drag a box (or lasso) over points in a map to see their images here.")


scrub()
# Over the whole grid, so it does not depend on the slider: drawn once, outside the fragment.
left, right = panels(2, "lat-over-eps")
left.plotly_chart(views.measures_over_eps({("Primary" if r == primary else "Comparison") + f": {names[r]}": m
                                           for r, m in maps.items()}, "ℓ∞" if norm == "linf" else "ℓ2"),
                  key="lat_over_eps")
right.caption("Solid: k-NN accuracy of the adversarial features at each ε (does the layer still put them with "
              "their class?). Dashed: robust accuracy of the model. A robust model keeps both up longer.")
