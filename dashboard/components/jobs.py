"""The jobs panel of the Training page: status, progress, ETA, cancel/resume, live per-epoch charts."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.errors import AtlasError
from core.jobs import cancel_job, count_jobs, eta_seconds, list_jobs, resumable_jobs, submit_job
from dashboard import cache
from dashboard.components.charts import per_class_heatmap, training_curves
from dashboard.components.labels import ARCH_LABELS, NORM_LABELS, SHORT_METHOD_LABELS, label, plural
from dashboard.components.layout import panels

STATUS_COLOUR = {"queued": "gray", "running": "blue", "cancelling": "orange", "completed": "green",
                 "cancelled": "orange", "failed": "red", "interrupted": "red"}
SHOWN = 6  # the most recent jobs shown as cards; older ones that can be resumed are listed below them
NOUNS = {"train": "training job", "eval": "evaluation job"}


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
    if str(a.get("method", "")).startswith("dale"):  # two DALE jobs differing in ρ looked the same
        details.append(f"ρ = {a.get('dale_rho', 0.1):g}")
    if a.get("seed"):
        details.append(f"seed {a['seed']}")
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


def _result(job: dict[str, Any]) -> str | None:
    """What a completed training job produced: its run's final clean and robust accuracy (None before that)."""
    if job["kind"] != "train" or job["status"] != "completed" or not job["run_id"]:
        return None
    run = cache.registry().find_run(job["run_id"])
    metrics = (run or {}).get("final_metrics") or {}
    if metrics.get("clean_acc") is None:
        return None
    text = f"Final: clean **{100 * metrics['clean_acc']:.1f} %**"
    if metrics.get("robust_acc") is not None:
        # A run trained before the headline protocol has its last epoch's held-out check here, without "n".
        how = f"{metrics.get('attack', 'PGD').upper()} at ε = {run['eps']:g}"
        if "n" in metrics:
            how += f" on {metrics['n']} test points, as every model in the hub"
        text += f" · robust **{100 * metrics['robust_acc']:.1f} %** ({how})"
    return text


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


def _job_row(job: dict[str, Any], resumable: set[str], *, compact: bool = False) -> None:
    """A job's card: title, status, identity, progress (not when ``compact``), error, Cancel or Resume."""
    with st.container(border=True, key=f"job_{job['id']}"):
        head, actions = st.columns([5, 1])
        colour = STATUS_COLOUR.get(job["status"], "gray")
        head.markdown(f"**{_title(job)}**  :{colour}-badge[{job['status']}]")
        head.caption(_identity(job))
        if (result := _result(job)) is not None:
            head.markdown(result)
        if not compact:
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
        elif job["id"] in resumable:
            if actions.button("Resume", key=f"train_resume_{job['id']}",
                              help="Continue its run from the last finished epoch"):
                try:
                    submit_job(cache.registry(), "train", job["args"], device=job["device"])
                except AtlasError as exc:
                    head.error(f"Not resumed: {exc}")
                else:
                    _rerun_panel()


def _rerun_panel() -> None:
    """Show a click's effect at once: rerun the panel alone when the click came in a fragment run (the browser's
    way), the whole page when it came in a full run (AppTest's way; ``scope="fragment"`` is refused there)."""
    ctx = get_script_run_ctx()
    st.rerun(scope="fragment" if ctx is not None and ctx.fragment_ids_this_run else "app")


def _live_charts(job: dict[str, Any]) -> None:
    epochs = cache.run_epochs(job["run_id"]) if job["run_id"] else []
    if not epochs:
        st.caption("Charts appear after the first epoch.")
        return
    for e in epochs:
        if e.get("warning"):
            st.warning(f"Epoch {e['epoch']}: {e['warning']}", icon="⚠️")
    left, right = panels(2, f"train-{job['id']}")
    left.plotly_chart(training_curves(epochs, "Loss and accuracy per epoch"), key=f"train_curves_{job['id']}")
    left.caption("Accuracy on the left axis (PGD robust accuracy on a held-out subset at the training ε); "
                 "loss dashed, right axis. A red line marks suspected catastrophic overfitting.")
    heat = per_class_heatmap(epochs, "Per-class robust accuracy")
    if heat is not None:
        right.plotly_chart(heat, key=f"train_heat_{job['id']}")
        right.caption("Rows are classes, columns epochs; dark purple = easily attacked, yellow = robust.")


@st.fragment(run_every=1.0)
def jobs_panel(kind: str = "train") -> None:
    """Re-runs every second on its own, so progress moves without rerunning the page. Shows the most recent jobs of
    ``kind`` and, for training, every older job that can still be resumed (else its Resume would be out of reach)."""
    registry = cache.registry()
    jobs = list_jobs(registry, limit=50, kind=kind)
    if not jobs:
        st.info("No training jobs yet. Fill in the form above and press **Start training**." if kind == "train"
                else "No background evaluations yet.")
        return
    resumable = resumable_jobs(registry) if kind == "train" else []
    resumable_ids = {j["id"] for j in resumable}
    for job in jobs[:SHOWN]:
        _job_row(job, resumable_ids)
    older = [j for j in resumable if j["id"] not in {shown["id"] for shown in jobs[:SHOWN]}]
    total = count_jobs(registry, kind=kind)
    if total > SHOWN:
        hidden = (f"; the {plural(len(older), 'older one')} that can be resumed {'is' if len(older) == 1 else 'are'}"
                  " under “Resumable older jobs”" if older else "")
        st.caption(f"Showing the {SHOWN} most recent of {plural(total, NOUNS.get(kind, kind + ' job'))}{hidden}. "
                   "`python -m core jobs list` lists the 50 most recent jobs of every kind.")
    if older:
        with st.expander(f"Resumable older jobs ({len(older)})"):
            st.caption("Cancelled, failed or interrupted before their run was complete: Resume continues the run "
                       "from its last finished epoch.")
            for job in older:
                _job_row(job, resumable_ids, compact=True)
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
