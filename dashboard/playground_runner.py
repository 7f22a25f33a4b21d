"""Background runs of the Playground, outside the script thread.

A run keeps only its latest frame and the scalar history (one row per frame), so the page's polling fragment
redraws from a snapshot while training goes on. ``start_pair`` starts the two runs of a comparison — standard
(ERM) and adversarial — on the same data and from the same initial weights, in ONE worker thread that
alternates their optimiser steps. One thread rather than two, because every small torch op releases and
re-takes the GIL: two training threads hand it back and forth after nearly every op and both crawl (measured:
several times slower than running the steps in turn). The thread also runs torch on ONE intra-op thread (a
per-thread setting, so the rest of the server keeps its own): these tensors are small, and on a laptop whose cores
are busy with the browser and the server, OpenMP's worker threads wait on each other at every op — measured on a
loaded 2-core machine, a step and a frame took 7–12× longer with two threads than with one.

A pair is stopped by an Event. The Stop button asks for a last frame (the page shows where training stopped);
a restart abandons the old pair instead (its thread finishes the current step and exits without computing a
frame nobody will see, so the new pair gets the CPU at once).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from core.playground import FRAME_INTERVAL, Frame, PlaygroundConfig, PlaygroundData, Trainer, frame_due, load_data

log = logging.getLogger(__name__)


@dataclass
class PlaygroundRun:
    """One training run in the background: its latest frame, history rows, status and stop switch."""

    config: PlaygroundConfig
    trainer: Trainer = field(repr=False)
    stop: threading.Event
    frame: Frame | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    status: str = "running"
    error: str = ""
    started: float = field(default_factory=time.perf_counter)
    first_frame_after: float | None = None  # seconds from start to the first frame
    last_frame_at: float = -math.inf
    abandoned: bool = False  # stopped by a restart: no last frame

    @property
    def data(self) -> PlaygroundData:
        """The run's points (the trainer owns them; both runs of a pair share one object)."""
        return self.trainer.data

    @property
    def done(self) -> bool:
        return self.status != "running"

    def progress(self) -> float:
        return self.frame.step / self.config.steps if self.frame is not None else 0.0

    def publish(self, frame: Frame) -> None:
        if self.first_frame_after is None:
            self.first_frame_after = time.perf_counter() - self.started
        self.history.append(frame.row())
        self.frame = frame  # one assignment: a reader sees either the old frame or the new one
        self.last_frame_at = time.perf_counter()


def _advance(run: PlaygroundRun, interval: float) -> None:
    """One step of one run, and a frame when one is due; a stop request ends it with a last frame."""
    if run.stop.is_set():
        if not run.abandoned:
            run.publish(run.trainer.frame())
        run.status = "stopped"
        return
    run.trainer.step()
    if frame_due(run.trainer, run.last_frame_at, interval):
        run.publish(run.trainer.frame())
    if run.trainer.finished:
        run.status = "done"


def _work(runs: list[PlaygroundRun], interval: float) -> None:
    torch.set_num_threads(1)  # this thread only (see the module docstring)
    active = list(runs)
    while active:
        for run in list(active):
            try:
                _advance(run, interval)
            except Exception as exc:  # reported on the page, and logged with its traceback
                log.exception("playground run failed")
                run.error, run.status = f"{type(exc).__name__}: {exc}", "failed"
            if run.done:
                active.remove(run)


def start_pair(config: PlaygroundConfig, interval: float = FRAME_INTERVAL) -> dict[str, PlaygroundRun]:
    """Standard (ERM) and adversarial (``config.method``) runs on the same data, from the same weights, trained
    in turn by one daemon thread; returns their handles at once."""
    data = load_data(config)
    stop = threading.Event()
    runs = {"standard": PlaygroundRun(replace(config, method="erm"), Trainer(replace(config, method="erm"), data),
                                      stop),
            "adversarial": PlaygroundRun(config, Trainer(config, data), stop)}
    threading.Thread(target=_work, args=(list(runs.values()), interval), name="atlas-playground",
                     daemon=True).start()
    return runs


def stop_all(runs: dict[str, PlaygroundRun] | None, *, last_frame: bool = True) -> None:
    """Ask the runs' thread to stop after its current step; with ``last_frame`` each run publishes a final
    frame first (the Stop button), without it they are abandoned (a restart: nobody will look at them)."""
    for run in (runs or {}).values():
        run.abandoned = not last_frame
        run.stop.set()


def running(runs: dict[str, PlaygroundRun] | None) -> bool:
    """Whether any run of the pair is still training and not yet asked to stop (what a Stop button could end)."""
    return any(not run.done and not run.stop.is_set() for run in (runs or {}).values())
