"""The jobs panel of the Training page: status, progress, ETA, cancel/resume, live per-epoch charts."""

from __future__ import annotations

import time
from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.errors import AtlasError
from core.jobs import (RESUMABLE_JOB, cancel_job, count_jobs, eta_seconds, job_run_id, kept_epochs, list_jobs,
                       never_started, resumable_jobs, resume_text, resumed_by, submit_job, waiting_for)
from dashboard import cache
from dashboard.components.charts import per_class_heatmap, training_curves
from dashboard.components.labels import ARCH_LABELS, NORM_LABELS, SHORT_METHOD_LABELS, label, plural
from dashboard.components.layout import panels

STATUS_COLOUR = {"queued": "gray", "running": "blue", "cancelling": "orange", "completed": "green",
                 "cancelled": "orange", "failed": "red", "interrupted": "red"}
SHOWN = 6  # the most recent jobs shown as cards; older ones that can be resumed are listed below them
NOUNS = {"train": "training job", "eval": "evaluation job"}


def _title(job: dict[str, Any], run: dict[str, Any] | None = None) -> str:
    """A job's title. A training job's starts with its dataset (the jobs of every dataset share the panel: one
    device trains them in turn) and names its run as the registry does now (``run``: the run's row, None before the
    run exists): a run renamed in the hub or with `runs rename` kept its old name here."""
    a = job["args"]
    if job["kind"] == "eval":
        specs = a.get("specs") or [a["spec"]]
        run = cache.registry().find_run(specs[0]["run_id"])
        eps = ", ".join(f"{e:g}" for e in dict.fromkeys(e for s in specs for e in s["eps_grid"]))
        attacks = ", ".join(dict.fromkeys(s["attack"] for s in specs)) + (" + trust checks" if a.get("trust") else "")
        return (f"Evaluate {run['name'] if run else specs[0]['run_id']}: {attacks} at ε = {eps} "
                f"({specs[0]['dataset']})")
    name = _run_name(a, run) or a.get("name") or (f"{a.get('dataset')} · {label(ARCH_LABELS, a.get('arch'))} · "
                                                  f"{label(SHORT_METHOD_LABELS, a.get('method'))}")
    if a.get("dataset") and not name.startswith(f"{a['dataset']} "):
        name = f"{a['dataset']} · {name}"
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


def _run_name(args: dict[str, Any], run: dict[str, Any] | None) -> str | None:
    """The run's name in the registry, unless it is the name training gave a job without one and nobody renamed it
    (for such a job the title's dataset · architecture · method says the same in fewer words)."""
    if run is None:
        return None
    if not args.get("name"):
        from core.training import TrainConfig
        from core.training.loop import default_name

        try:
            config = TrainConfig.from_dict(run["config"])
        except AtlasError:  # options an older version wrote that no longer validate: its name is as good as any
            return run["name"]
        if run["name"] == default_name(config, run["id"]):
            return None
    return run["name"]


def _identity(job: dict[str, Any]) -> str:
    """What tells two jobs with the same title apart: the job id, when it was submitted and started, its run."""
    parts = [f"job `{job['id']}`", f"submitted {_clock(job['created_at'])}"]
    if job["started_at"]:
        parts.append(f"started {_clock(job['started_at'])}")
    if job["run_id"]:
        parts.append(f"run `{job['run_id']}`")
    return " · ".join(parts)


def _result(job: dict[str, Any]) -> tuple[str | None, str | None]:
    """What a completed training job produced: its run's final clean and robust accuracy, and the warning that came
    with them (a run that ended at chance level says so and what to change); None before that."""
    if job["kind"] != "train" or job["status"] != "completed" or not job["run_id"]:
        return None, None
    run = cache.registry().find_run(job["run_id"])
    metrics = (run or {}).get("final_metrics") or {}
    if metrics.get("clean_acc") is None:
        return None, None
    text = f"Final: clean **{100 * metrics['clean_acc']:.1f} %**"
    if metrics.get("robust_acc") is not None:
        # A run trained before the headline protocol has its last epoch's held-out check here, without "n".
        how = f"{metrics.get('attack', 'PGD').upper()} at ε = {run['eps']:g}"
        if "n" in metrics:
            how += f" on {metrics['n']} test points, as every model in the hub"
        text += f" · robust **{100 * metrics['robust_acc']:.1f} %** ({how})"
    return text, metrics.get("warning")


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


def _stopped(job: dict[str, Any], newer: dict[str, Any] | None) -> str | None:
    """For a training job that stopped before its run was complete: the epochs it kept, or that it never ran (it
    stopped while queued), and, when a newer job took its run on since, that job (it is no open problem then)."""
    if job["kind"] != "train" or job["status"] not in RESUMABLE_JOB:
        return None
    total = job["args"].get("epochs")
    if never_started(job):
        text = f"{job['status'].capitalize()} while queued: it never ran, so it trained no epoch."
    else:
        kept = kept_epochs(cache.registry(), job)
        text = "" if kept is None else (f"Kept {kept} of {plural(total, 'epoch')}." if kept else
                                        f"No epoch of {total} finished: none kept.")
    if newer is not None:
        return f"{text} :material/replay: Resumed since by job `{newer['id']}` (now {newer['status']}).".strip()
    return text or None


def _job_row(job: dict[str, Any], resumable: set[str], *, compact: bool = False, run: dict[str, Any] | None = None,
             newer: dict[str, Any] | None = None) -> None:
    """A job's card: title, status, identity, what it kept or produced, progress (not when ``compact``), error,
    Cancel or Resume. ``run``: its run's registry row; ``newer``: the newest job for the same run, when there is a
    newer one (a stopped job then reads as taken over, in gray, not as an open problem)."""
    with st.container(border=True, key=f"job_{job['id']}"):
        head, actions = st.columns([5, 1])
        colour = "gray" if newer is not None else STATUS_COLOUR.get(job["status"], "gray")
        head.markdown(f"**{_title(job, run)}**  :{colour}-badge[{job['status']}]")
        head.caption(_identity(job))
        result, warning = _result(job)
        if result is not None:
            head.markdown(result)
        if warning is not None:
            head.warning(warning[:1].upper() + warning[1:], icon=":material/warning:")
        if (stopped := _stopped(job, newer)) is not None:
            head.markdown(stopped)
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
                else:
                    _rerun_panel()  # the card says "cancelling" and the "Queued job" note goes at once
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


def _runs_of(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{job id: its run's registry row} for the training jobs whose run exists (a queued job's run, too, when its
    settings name one that exists: it resumes that run, under that run's name)."""
    runs = {r["id"]: r for r in cache.runs()}
    out = {}
    for job in jobs:
        run_id = job["run_id"] or (job_run_id(job) if job["kind"] == "train" else None)
        if run_id in runs:
            out[job["id"]] = runs[run_id]
    return out


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


def queued_text(job: dict[str, Any], blocker: dict[str, Any] | None) -> str:
    """The note for a job waiting for its turn (``blocker``: the job it waits for, None when it waits for none)."""
    text = f"Queued job `{job['id']}`"
    if blocker is not None:
        where = "running" if blocker["status"] != "queued" else "queued before it"
        text += (f": it waits for {NOUNS.get(blocker['kind'], 'job')} `{blocker['id']}` ({where} on "
                 f"{blocker['device']}) and starts when that one is done")
    return text + ". Progress appears below."


def _queue_notes(jobs: list[dict[str, Any]], queued: str | None) -> None:
    """The notes above the training cards, all read from the queue and the registry at every rerun, so a page
    switch, a reload or a full rerun keeps them and a cancel takes them away: "Queued job …" for every job waiting
    for its turn (and for ``queued``, the job the form has just queued, once it runs), and for a job that resumes a
    run, where it goes on from (the form's note stayed after that job was cancelled, and kept its old epoch)."""
    registry = cache.registry()
    for job in jobs:
        if job["status"] == "queued" or (job["id"] == queued and job["status"] == "running"):
            st.success(queued_text(job, waiting_for(registry, job)))
        if (note := resume_text(registry, job)) is not None:
            st.info(note, icon=":material/replay:")


@st.fragment(run_every=1.0)
def jobs_panel(kind: str = "train", queued: str | None = None) -> None:
    """Re-runs every second on its own, so progress moves without rerunning the page. Shows the most recent jobs of
    ``kind`` and, for training, every older job that can still be resumed (else its Resume would be out of reach).

    ``queued``: the job the page's form has just queued; the panel announces it while it runs too (every waiting
    training job is announced anyway, see :func:`_queue_notes`). Shown by the page itself, the note stayed on
    screen after that job was cancelled: these reruns do not touch the page."""
    registry = cache.registry()
    jobs = list_jobs(registry, limit=50, kind=kind)
    # Before the notes: it marks runs whose process died as interrupted, as the resume notes must read them.
    resumable = resumable_jobs(registry) if kind == "train" else []
    if kind == "train":
        _queue_notes(jobs, queued)
    if not jobs:
        st.info("No training jobs yet. Fill in the form above and press **Start training**." if kind == "train"
                else "No background evaluations yet.")
        return
    resumable_ids = {j["id"] for j in resumable}
    newer = resumed_by(registry) if kind == "train" else {}
    runs = _runs_of(jobs) if kind == "train" else {}
    for job in jobs[:SHOWN]:
        _job_row(job, resumable_ids, run=runs.get(job["id"]), newer=newer.get(job["id"]))
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
                _job_row(job, resumable_ids, compact=True, run=_runs_of([job]).get(job["id"]))
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
    labels = {j["id"]: _title(j, runs.get(j["id"])) + f" — {j['status']} (job {j['id']})" for j in jobs
              if j["kind"] == "train"}
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
