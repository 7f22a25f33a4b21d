"""The jobs panel of the Training page: status, progress, ETA, cancel/resume, live per-epoch charts."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from core.errors import AtlasError
from core.jobs import cancel_job, eta_seconds, list_jobs, submit_job
from dashboard import cache
from dashboard.components.charts import per_class_heatmap, training_curves
from dashboard.components.labels import ARCH_LABELS, NORM_LABELS, SHORT_METHOD_LABELS, label, plural

STATUS_COLOUR = {"queued": "gray", "running": "blue", "cancelling": "orange", "completed": "green",
                 "cancelled": "orange", "failed": "red", "interrupted": "red"}


def _title(job: dict[str, Any]) -> str:
    a = job["args"]
    if job["kind"] == "eval":
        specs = a.get("specs") or [a["spec"]]
        run = cache.registry().find_run(specs[0]["run_id"])
        eps = ", ".join(f"{e:g}" for e in dict.fromkeys(e for s in specs for e in s["eps_grid"]))
        attacks = ", ".join(dict.fromkeys(s["attack"] for s in specs)) + (" + trust checks" if a.get("trust") else "")
        return (f"Evaluate {run['name'] if run else specs[0]['run_id']}: {attacks} at ε = {eps} "
                f"({specs[0]['dataset']})")
    name = a.get("name") or (f"{a.get('dataset')} · {label(ARCH_LABELS, a.get('arch'))} · "
                             f"{label(SHORT_METHOD_LABELS, a.get('method'))}")
    details = [f"{label(NORM_LABELS, a.get('norm', 'linf'))} ε = {a.get('eps'):g}" if a.get("method") != "erm"
               else "clean inputs", plural(a.get("epochs"), "epoch")]
    if a.get("class_weighting") == "adaptive":
        details.append(f"adaptive class weights (strength {a.get('class_weight_strength', 0.5):g})")
    elif a.get("class_weighting") == "fixed":
        details.append("fixed class weights " + ", ".join(f"{w:g}" for w in a.get("class_weights", [])))
    return f"{name} ({', '.join(details)})"


def _identity(job: dict[str, Any]) -> str:
    """What tells two jobs with the same title apart: the job id, when it was submitted and started, its run."""
    parts = [f"job `{job['id']}`", f"submitted {_clock(job['created_at'])}"]
    if job["started_at"]:
        parts.append(f"started {_clock(job['started_at'])}")
    if job["run_id"]:
        parts.append(f"run `{job['run_id']}`")
    return " · ".join(parts)


def _clock(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def progress_bar(job: dict[str, Any]) -> tuple[float, str]:
    """The fraction and text of a job's progress bar: full for a completed job, whatever its last report said."""
    fraction = 1.0 if job["status"] == "completed" else min(max(float(job["progress"] or 0.0), 0.0), 1.0)
    text = "" if job["message"] == job["status"] else job["message"] or ""
    eta = eta_seconds(job)
    if eta is not None:
        text += f" · about {eta:.0f} s left"
    return fraction, text or " "


def _job_row(job: dict[str, Any]) -> None:
    with st.container(border=True, key=f"job_{job['id']}"):
        head, actions = st.columns([5, 1])
        colour = STATUS_COLOUR.get(job["status"], "gray")
        head.markdown(f"**{_title(job)}**  :{colour}-badge[{job['status']}]")
        head.caption(_identity(job))
        # Under the columns, not in the title's: there the bar stopped at 5/6 of the card even when complete.
        st.progress(*progress_bar(job))
        if job["error"]:
            st.error(job["error"])
        if job["status"] in ("queued", "running"):
            if actions.button("Cancel", key=f"train_cancel_{job['id']}"):
                try:
                    cancel_job(cache.registry(), job["id"])
                except AtlasError as exc:
                    st.error(str(exc))
        elif job["status"] in ("interrupted", "cancelled") and job["kind"] == "train":
            run = cache.registry().find_run(job["run_id"]) if job["run_id"] else None
            if run is None or run["status"] != "completed":
                if actions.button("Resume", key=f"train_resume_{job['id']}",
                                  help="Continue from the last finished epoch"):
                    try:
                        submit_job(cache.registry(), "train", job["args"], device=job["device"])
                    except AtlasError as exc:
                        head.error(f"Not resumed: {exc}")
                    else:
                        st.rerun(scope="fragment")


def _live_charts(job: dict[str, Any]) -> None:
    epochs = cache.run_epochs(job["run_id"]) if job["run_id"] else []
    if not epochs:
        st.caption("Charts appear after the first epoch.")
        return
    for e in epochs:
        if e.get("warning"):
            st.warning(f"Epoch {e['epoch']}: {e['warning']}", icon="⚠️")
    left, right = st.columns(2)
    left.plotly_chart(training_curves(epochs, "Loss and accuracy per epoch"), key=f"train_curves_{job['id']}")
    left.caption("Accuracy on the left axis (PGD robust accuracy on a held-out subset at the training ε); "
                 "loss dashed, right axis. A red line marks suspected catastrophic overfitting.")
    heat = per_class_heatmap(epochs, "Per-class robust accuracy")
    if heat is not None:
        right.plotly_chart(heat, key=f"train_heat_{job['id']}")
        right.caption("Rows are classes, columns epochs; red = easily attacked, green = robust.")


@st.fragment(run_every=1.0)
def jobs_panel(kind: str = "train") -> None:
    """Re-runs every second on its own, so progress moves without rerunning the page. Shows jobs of ``kind``."""
    jobs = [j for j in list_jobs(cache.registry(), limit=50) if j["kind"] == kind]
    if not jobs:
        st.info("No training jobs yet. Fill in the form above and press **Start training**." if kind == "train"
                else "No background evaluations yet.")
        return
    for job in jobs[:6]:
        _job_row(job)
    if len(jobs) > 6:
        st.caption(f"Showing the 6 most recent of {len(jobs)} jobs (`python -m core jobs list` lists all).")
    # A finished job changes the page's numbers (a new run in the Trade-offs charts and the sidebar's model lists,
    # an evaluation's results): rerun the whole page once when one completes.
    finished = {j["id"] for j in jobs if j["status"] == "completed"}
    seen = st.session_state.setdefault(f"_jobs_seen_{kind}", finished)
    if finished - seen:
        st.session_state[f"_jobs_seen_{kind}"] = finished
        cache.runs.clear()  # cached for 2 s: the rerun must list the new run
        st.rerun(scope="app")
    if kind != "train":
        return
    labels = {j["id"]: _title(j) + f" — {j['status']} (job {j['id']})" for j in jobs if j["kind"] == "train"}
    if labels:
        # Follow the newest job whenever one appears (queued here, on the other page or in another tab); between
        # new jobs, the one the user picked stays.
        newest = next(iter(labels))
        followed = st.session_state.get("_train_chart_newest")
        if followed != newest or st.session_state.get("train_chart_job") not in labels:
            st.session_state["_train_chart_newest"] = newest
            st.session_state["train_chart_job"] = newest
        chosen = st.selectbox("Live charts for", list(labels), format_func=labels.__getitem__,
                              key="train_chart_job")
        _live_charts(next(j for j in jobs if j["id"] == chosen))
