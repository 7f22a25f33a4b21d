"""The body of a job process (``python -m core jobs run ID``): wait for its turn, run, report, end cleanly."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import time
from typing import Any

from core.errors import AtlasError, RegistryError
from core.jobs.queue import get_job, try_start, update_job
from core.store import Registry
from core.utils import REPO_ROOT, StopOnSignal, atomic_write_json

log = logging.getLogger(__name__)
POLL_S = 0.5
REPORT_EVERY_S = 0.5


class JobControl(StopOnSignal):
    """Cancel requests arrive as SIGTERM (cancel_job) or as status 'cancelling' in the registry."""

    def __init__(self, registry: Registry, job_id: str) -> None:
        super().__init__()
        self.registry, self.job_id = registry, job_id
        self._last_check = 0.0
        self._last_report = 0.0
        self._last_progress: float | None = None

    @property
    def cancelled(self) -> bool:
        return self.requested

    def should_stop(self) -> bool:
        now = time.monotonic()
        if not self.requested and now - self._last_check > POLL_S:
            self._last_check = now
            self.requested = get_job(self.registry, self.job_id)["status"] == "cancelling"
        return self.requested

    def report(self, progress: float, message: str, *, force: bool = False) -> None:
        """Write progress and message (at most every REPORT_EVERY_S unless ``force``). ``heartbeat_at`` is when the
        progress last changed: the time left counts down from it (queue.eta_seconds), so a poll that repeats the
        same progress (the multi-process loop, every second) must not move it."""
        now = time.monotonic()
        if force or now - self._last_report > REPORT_EVERY_S:
            self._last_report = now
            progress = min(max(progress, 0.0), 1.0)
            fields: dict[str, Any] = {"progress": progress, "message": message}
            if progress != self._last_progress:
                self._last_progress = progress
                fields["heartbeat_at"] = time.time()
            update_job(self.registry, self.job_id, **fields)


def _wait_for_turn(registry: Registry, job_id: str, control: JobControl) -> str:
    while True:
        state = try_start(registry, job_id)
        if state != "wait":
            return state
        if control.cancelled:
            update_job(registry, job_id, status="cancelled", finished_at=time.time())
            return "cancelled"
        update_job(registry, job_id, message="queued: waiting for the device", heartbeat_at=time.time())
        time.sleep(POLL_S)


def _run_train(registry: Registry, job_id: str, args: dict[str, Any], control: JobControl) -> str:
    from core.training import TrainConfig, run_id_for, train

    args = dict(args)
    processes = args.pop("processes", 1)
    config = TrainConfig.from_dict(args)
    run_id = run_id_for(config)
    update_job(registry, job_id, run_id=run_id)
    existing = registry.find_run(run_id)
    if existing is not None and existing["status"] == "completed":
        # Refused when queued (create_job); here only when the run was completed since, e.g. by `python -m core train`.
        log.warning("run %s ('%s') was already trained with these settings: nothing to train, the job ends at once",
                    run_id, existing["name"])
    if processes > 1:
        return _run_train_distributed(registry, job_id, config, processes, control)

    def on_progress(event: dict[str, Any]) -> None:
        epochs = config.epochs
        if event["kind"] == "batch":
            done = (event["epoch"] - 1 + event["batch"] / event["batches"]) / epochs
            control.report(done, f"epoch {event['epoch']}/{epochs}, batch {event['batch']}/{event['batches']}")
        else:
            m = event["metrics"]
            text = (f"epoch {event['epoch']}/{epochs}: clean {m['clean_acc']:.3f}"
                    + (f", robust {m['robust_acc']:.3f}" if "robust_acc" in m else ""))
            control.report(event["epoch"] / epochs, text, force=True)

    result = train(config, on_progress=on_progress, should_stop=control.should_stop, registry=registry)
    return "completed" if result.status == "completed" else "cancelled"


def _run_train_distributed(registry: Registry, job_id: str, config: Any, processes: int,
                           control: JobControl) -> str:
    """The same training under ``torchrun --nproc_per_node=N`` (one GPU per process, gloo CPU processes without
    GPUs). Rank 0 writes the registry, so progress is read from there; cancel is SIGTERM to torchrun, which hands
    it to every rank and they stop together at a batch boundary."""
    from core.training import run_id_for

    run_id = run_id_for(config)
    config_path = registry.home / "jobs" / f"{job_id}.config.json"
    atomic_write_json(config_path, config.to_dict())
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           "-m", "core", "--", "train", "--config", str(config_path), "--quiet", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    signalled = False
    while proc.poll() is None:
        if not signalled and control.should_stop():
            proc.send_signal(signal.SIGTERM)
            signalled = True
        done = len(registry.epochs(run_id)) if registry.find_run(run_id) else 0
        control.report(done / config.epochs, f"{processes} processes: epoch {done}/{config.epochs}")
        time.sleep(POLL_S)
    out, err = proc.communicate()
    sys.stdout.write(out)
    sys.stderr.write(err)
    if proc.returncode == 0:
        status = json.loads(out.strip().splitlines()[-1])["status"]
        return "completed" if status == "completed" else "cancelled"
    if control.cancelled:
        return "cancelled"
    ours = [line for line in err.splitlines() if "python -m core train: error:" in line]
    raise RegistryError(ours[0].split("error: ", 1)[1] if ours else
                        f"torchrun with {processes} processes exited with code {proc.returncode}; see the job log")


def _run_eval(registry: Registry, job_id: str, args: dict[str, Any], control: JobControl) -> str:
    """One evaluation (``spec``) or several of one run (``specs``, e.g. every attack of the Robustness page at a new
    ε), optionally followed by the run's trust checks at an ε (``trust``: run_id, dataset, eps, norm). Specs already
    stored are read back, not recomputed; each finished spec is stored at once, so a cancelled job keeps them."""
    from core.evaluation.suite import EvalSpec, EvaluationCancelled, evaluate, load_run_model, trust_checks_for
    from core.utils import resolve_device

    specs = [EvalSpec.from_dict(d) for d in (args["specs"] if "specs" in args else [args["spec"]])]
    trust = args.get("trust")
    runs = {s.run_id for s in specs} | ({trust["run_id"]} if trust else set())
    if len(runs) != 1:
        raise RegistryError(f"an evaluation job covers one run; these specs name {len(runs)}")
    run_id = runs.pop()
    update_job(registry, job_id, run_id=run_id)
    device = resolve_device(args.get("device", "cpu"))
    model, _ = load_run_model(registry, run_id, device)
    parts = len(specs) + bool(trust)
    robust = []
    for i, spec in enumerate(specs):
        def on_progress(done: int, total: int, i: int = i, spec: EvalSpec = spec) -> None:
            control.report((i + done / max(total, 1)) / parts, f"{spec.attack}: {done}/{total} attacks"
                           + (f" (evaluation {i + 1} of {parts})" if parts > 1 else ""))

        control.report(i / parts, f"{spec.attack} (evaluation {i + 1} of {parts})", force=True)
        try:
            result = evaluate(spec, registry=registry, model=model, device=device, on_progress=on_progress,
                              should_stop=control.should_stop)
        except EvaluationCancelled:
            return "cancelled"
        robust.append(min(result.summary["robust_acc"].values()))
    if trust:
        if control.should_stop():
            return "cancelled"
        control.report(len(specs) / parts, "trust checks", force=True)
        trust_checks_for(registry, trust["run_id"], trust["dataset"], eps=float(trust["eps"]), norm=trust["norm"],
                         device=device, model=model)
    text = f"{specs[0].attack}: robust {robust[0]:.3f}" if len(specs) == 1 and not trust else (
        f"{len(specs)} evaluations" + (" and the trust checks" if trust else "") + " done"
        + (f"; lowest robust accuracy {min(robust):.3f}" if robust else ""))
    control.report(1.0, text, force=True)
    return "completed"


def _run_geometry(registry: Registry, job_id: str, args: dict[str, Any], control: JobControl) -> str:
    from core.geometry.analysis import AnalysisCancelled, analysis, spec_from_dict
    from core.utils import resolve_device

    spec = spec_from_dict(args["spec"])
    update_job(registry, job_id, run_id=spec.run_id)
    try:
        analysis(spec, registry=registry, device=str(resolve_device(args.get("device", "cpu"))),
                 on_progress=lambda fraction, text: control.report(fraction, f"{spec.kind}: {text}"),
                 should_stop=control.should_stop)
    except AnalysisCancelled:
        return "cancelled"
    control.report(1.0, f"{spec.kind}: done", force=True)
    return "completed"


KINDS = {"train": _run_train, "eval": _run_eval, "geometry": _run_geometry}


def run_job(job_id: str, registry: Registry | None = None) -> str:
    """Run one job to its end; return its final status. Errors end the job as 'failed' with their message."""
    registry = registry or Registry()
    job = get_job(registry, job_id)
    control = JobControl(registry, job_id)
    state = _wait_for_turn(registry, job_id, control)
    if state != "running":
        return state
    try:
        final = KINDS[job["kind"]](registry, job_id, job["args"], control)
        update_job(registry, job_id, status=final, finished_at=time.time(), progress=1.0 if final == "completed"
                   else get_job(registry, job_id)["progress"], message=f"{final}")
    except AtlasError as exc:
        update_job(registry, job_id, status="failed", finished_at=time.time(), error=str(exc), message="failed")
        log.error("job %s failed: %s", job_id, exc)
        return "failed"
    except Exception as exc:
        update_job(registry, job_id, status="failed", finished_at=time.time(), error=f"{type(exc).__name__}: {exc}",
                   message="failed")
        raise
    return final
