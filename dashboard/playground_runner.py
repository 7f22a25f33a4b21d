"""Background runs of the Playground, outside the script thread.

A run keeps only its latest frame and the scalar history (one row per frame), so the page's polling fragment
redraws from a snapshot while training goes on. ``start_pair`` starts the two runs of a comparison — standard
(ERM) and adversarial — on the same data and from the same initial weights, in ONE worker thread that
alternates their optimiser steps. One thread rather than two, because every small torch op releases and
re-takes the GIL: two training threads hand it back and forth after nearly every op and both crawl (measured:
several times slower than running the steps in turn). A pair is stopped by an Event; starting a new pair stops
the old one first (its thread finishes the current step and exits).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

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
        run.publish(run.trainer.frame())
        run.status = "stopped"
        return
    run.trainer.step()
    if frame_due(run.trainer, run.last_frame_at, interval):
        run.publish(run.trainer.frame())
    if run.trainer.finished:
        run.status = "done"


def _work(runs: list[PlaygroundRun], interval: float) -> None:
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


def stop_all(runs: dict[str, PlaygroundRun] | None) -> None:
    for run in (runs or {}).values():
        run.stop.set()
