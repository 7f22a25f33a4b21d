"""The Geometry page's heavy analyses: DeepFool margin distributions (computed inline, persisted), DCT-subspace
margins and universal perturbations (background jobs with progress and cancel; results persisted per run)."""

from __future__ import annotations

import json
import math
from typing import Any

import streamlit as st

from core.errors import AtlasError
from core.geometry.analysis import stored_analysis
from core.geometry.dct import DCTMarginSpec
from core.geometry.margins import MarginSpec
from core.geometry.universal import MAX_PASSES, UAPSpec
from core.jobs import cancel_job, list_jobs, submit_job
from core.training.config import MAX_EPS
from dashboard import cache
from dashboard.components import geometry_analysis_views as charts
from dashboard.components import geometry_views as views
from dashboard.components.layout import panels

ACTIVE = ("queued", "running", "cancelling")


def _same_spec(job: dict[str, Any], spec: Any) -> bool:
    return json.dumps(job["args"].get("spec"), sort_keys=True) == json.dumps(json.loads(json.dumps(spec.to_dict())),
                                                                             sort_keys=True)


def _jobs_for(specs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The newest geometry job of each spec (label → job)."""
    found: dict[str, dict[str, Any]] = {}
    for job in list_jobs(cache.registry(), limit=1000):
        if job["kind"] != "geometry":
            continue
        for label, spec in specs.items():
            if label not in found and _same_spec(job, spec):
                found[label] = job
    return found


def _background(name: str, specs: dict[str, Any], device: str, key: str) -> dict[str, Any]:
    """Stored results of ``specs`` (label → spec); for missing ones a button that starts jobs, and their progress."""
    try:
        stored = {label: stored_analysis(spec, registry=cache.registry()) for label, spec in specs.items()}
    except AtlasError as exc:
        st.error(str(exc))
        return {}
    missing = {label: spec for label, spec in specs.items() if stored[label] is None}
    if missing:
        jobs = _jobs_for(missing)
        running = {label: job for label, job in jobs.items() if job["status"] in ACTIVE}
        if len(running) < len(missing):
            failed = [job for label, job in jobs.items() if job["status"] == "failed" and label not in running]
            for job in failed:
                st.error(f"The last {name} job failed: {job['error']}")
            if st.button(f"Compute {name} in the background ({len(missing) - len(running)} "
                         f"model{'s' if len(missing) - len(running) > 1 else ''})", key=f"{key}_go",
                         icon=":material/play_arrow:", type="primary"):
                for label, spec in missing.items():
                    if label not in running:
                        submit_job(cache.registry(), "geometry", {"spec": spec.to_dict(), "device": device},
                                   device=device)
                st.rerun()
        if running:
            _progress(name, missing, key)
        elif not any(v is not None for v in stored.values()):
            st.caption("Not computed yet for these settings. Results are stored with each model and reused.")
    return {label: result for label, result in stored.items() if result is not None}


def _progress(name: str, specs: dict[str, Any], key: str) -> None:
    @st.fragment(run_every=1.0)
    def panel() -> None:
        jobs = _jobs_for(specs)
        for label, job in jobs.items():
            left, right = st.columns([5, 1])
            left.progress(float(job["progress"]), text=f"{label}: {job['message'] or job['status']}")
            if job["status"] in ("queued", "running") and right.button("Cancel", key=f"{key}_cancel_{job['id']}"):
                cancel_job(cache.registry(), job["id"])
        if jobs and all(job["status"] not in ACTIVE for job in jobs.values()):
            st.rerun(scope="app")  # finished: draw the results

    panel()


def _margins(data: Any, labels: list[tuple[str, str]], device: str, colours: dict[str, str]) -> None:
    left, right = st.columns(2)
    n = left.slider("Test inputs", 50, min(2000, len(data)), min(200, len(data)), 50, key="geo_margin_n")
    norm = right.segmented_control("Norm", ("l2", "linf"), default="l2", key="geo_margin_norm",
                                   format_func=lambda v: "ℓ2" if v == "l2" else "ℓ∞") or "l2"
    try:
        specs = {label: MarginSpec(run_id=run_id, dataset=data.name, n=int(n)) for run_id, label in labels}
        stored = {label: stored_analysis(spec, registry=cache.registry()) for label, spec in specs.items()}
    except AtlasError as exc:
        st.error(str(exc))
        return
    wanted = tuple(sorted(specs))
    if any(r is None for r in stored.values()):
        if st.button(f"Compute DeepFool margins on {n} test inputs", key="geo_margin_go",
                     icon=":material/play_arrow:", type="primary"):
            st.session_state["geo_margin_for"] = (wanted, int(n))
        if st.session_state.get("geo_margin_for") != (wanted, int(n)):
            st.caption("DeepFool (ℓ2 and ℓ∞) on every input of the sample; a few seconds per model on digits. "
                       "Results are stored with each model and reused.")
            return
    results = {}
    with st.spinner("DeepFool on every input (both norms; stored with the model)…"):
        for label, spec in specs.items():
            try:
                results[label] = stored[label] or cache.geometry_analysis(spec, device)
            except AtlasError as exc:
                st.error(f"{label}: {exc}")
                return
    st.plotly_chart(charts.margin_boxes(results, data.classes, norm, colours), key="geo_margin_boxes")
    rows = []
    for label, result in results.items():
        overall = result.summary(norm).loc["all"]
        rows.append({"model": label, "correct inputs": int(overall["n"]), "median ‖r‖": overall["median"],
                     "q25": overall["q25"], "q75": overall["q75"], "ρ_adv = mean ‖r‖/‖x‖": result.rho_adv(norm),
                     "not converged": int(overall["not_converged"])})
    st.dataframe(rows, hide_index=True)
    st.caption("DeepFool finds the minimal perturbation to the nearest boundary of each correctly classified input: "
               "its norm is that input's margin. ρ_adv normalises by ‖x‖. The paper's prediction: adversarial "
               "training pushes the boundary out for every class, unevenly — the weakest classes stay closest.")


def _dct(data: Any, labels: list[tuple[str, str]], device: str, colours: dict[str, str]) -> None:
    side = min(data.input_shape[-2:])
    left, right = st.columns(2)
    block = left.selectbox("DCT block (frequencies per side)", [b for b in (2, 4, 8) if b < side] or [1],
                           index=1 if side < 16 else 2, key="geo_dct_block",
                           help="Subspaces are block × block squares of 2-D DCT atoms sliding along the diagonal")
    n = right.slider("Test inputs", 20, min(500, len(data)), min(100, len(data)), 20, key="geo_dct_n")
    try:
        specs = {label: DCTMarginSpec(run_id=run_id, dataset=data.name, n=int(n), block=int(block))
                 for run_id, label in labels}
    except AtlasError as exc:
        st.error(str(exc))
        return
    results = _background("DCT margins", specs, device, "geo_dct")
    if not results:
        return
    st.plotly_chart(charts.dct_figure(results, colours), key="geo_dct_chart")
    info = next(iter(results.values())).info
    st.caption(f"{info.get('subspace_dim')}-dimensional subspaces of the {info.get('input_dim')}-dimensional input "
               f"({info.get('block')}×{info.get('block')} DCT blocks, step {info.get('step')}). Subspace-constrained "
               "DeepFool: every step is projected onto the subspace. Triangles at the dotted line: most inputs never "
               "flip along those frequencies (invariance). *Hold me tight!* (Ortiz-Jimenez et al., NeurIPS 2020): "
               "a standard model is fragile at low frequencies and invariant at high ones; adversarial training "
               "raises the low-frequency margins.")


def _uap(data: Any, labels: list[tuple[str, str]], device: str, is_image: bool, colours: dict[str, str]) -> None:
    c1, c2, c3, c4 = st.columns(4)
    norm = c1.segmented_control("Norm", ("l2", "linf"), default="l2", key="geo_uap_norm",
                                format_func=lambda v: "ℓ2" if v == "l2" else "ℓ∞") or "l2"
    xi = c2.number_input("ξ (the budget of v)", value=2.0 if norm == "l2" else 0.2, step=0.1, format="%g",
                         key=f"geo_uap_xi_{norm}")
    passes = c3.number_input("Passes at most", 1, 50, 5, key="geo_uap_passes")
    n = c4.number_input("Training images", 50, 5000, 500, 50, key="geo_uap_n")
    if not math.isfinite(xi) or xi <= 0:
        st.error(f"ξ must be a positive number, got {xi:g}.")
        return
    # As the cross-section's ε: a budget beyond the norm's largest is capped with a note, not refused.
    notes = []
    if xi > MAX_EPS[norm]:
        notes.append(f"ξ = {xi:g} capped at {MAX_EPS[norm]:g}, the largest {views.NORM_NAMES[norm]} budget")
        xi = MAX_EPS[norm]
    if passes > MAX_PASSES:
        notes.append(f"passes capped at {MAX_PASSES} (asked {passes})")
        passes = MAX_PASSES
    try:
        specs = {label: UAPSpec(run_id=run_id, dataset=data.name, n=int(n), norm=norm, xi=float(xi),
                                max_passes=int(passes)) for run_id, label in labels}
    except AtlasError as exc:
        st.error(str(exc))
        return
    for note in notes:
        st.info(note, icon=":material/info:")
    results = _background("universal perturbations", specs, device, "geo_uap")
    if not results:
        return
    for note in {n for r in results.values() for n in r.info.get("notes", [])}:
        st.info(note)
    columns = panels(len(results), "geo-uap-models")
    v_limit = charts.image_limit([r.v for r in results.values()])
    for column, (label, r) in zip(columns, results.items()):
        with column:
            if is_image:
                st.plotly_chart(charts.image_figure(r.v, f"v — {label}", limit=v_limit), key=f"geo_uap_v_{label}")
            st.plotly_chart(charts.label_figure(r, data.classes,
                                               f"Predictions without and with v — {views.short_name(label)}"),
                            key=f"geo_uap_labels_{label}")
            holdout = r.info.get("n_holdout", 0)
            st.caption(f"Best pass {r.info.get('best_pass')}: fools {max(r.fooling_rate):.0%} of the "
                       f"{r.info.get('n')} images it was built on"
                       + (f" and {float(r.fooling_rate_holdout):.0%} of {holdout} unseen test images" if holdout
                          else "")
                       + f"; ‖v‖ = {r.info.get('norm_v', float('nan')):.3f} ≤ ξ. Dominant label "
                       f"{data.classes[int(r.info.get('dominant_label', 0))]} "
                       f"({r.info.get('dominant_share', 0):.0%} of images after adding v)."
                       + (f" Both v share one colour range, ±{v_limit:.3g}." if is_image and len(results) > 1
                          else ""))
    left, right = panels(2, "geo-uap-charts")
    left.plotly_chart(charts.fooling_figure(results, 1 - next(iter(specs.values())).delta, colours), key="geo_uap_rate")
    right.plotly_chart(charts.singular_figure(results, colours), key="geo_uap_sv")
    st.caption("One perturbation v for all images (Moosavi-Dezfooli et al., CVPR 2017): after each image that v "
               "does not fool yet, a DeepFool step from x + v is added and v is projected back to ‖v‖ ≤ ξ. Its "
               "existence is a geometric fact: the normals of the boundary near different images share a few "
               "directions — the solid singular values fall much faster than those of random vectors. The fooling "
               "rate need not rise every pass; the circled pass's v is kept.")


def heavy_analyses(data: Any, labels: list[tuple[str, str]], device: str, is_image: bool,
                   colours: dict[str, str]) -> None:
    margins, dct, uap = st.tabs(["DeepFool margins", "Frequency (DCT) margins", "Universal perturbation"])
    with margins:
        _margins(data, labels, device, colours)
    with dct:
        if is_image:
            _dct(data, labels, device, colours)
        else:
            st.info("Frequency subspaces need images; pick an image dataset (digits is the default).")
    with uap:
        _uap(data, labels, device, is_image, colours)
