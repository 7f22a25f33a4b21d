"""Background runs of the Li & Li simulation for the Theory Lab: a thread per run, outside the script thread.

Each run writes its recorded rows and a copy of the weights into its own object as it goes; the page polls it
from a fragment, so the curves grow live while the user keeps using the page. A run is stopped by an Event.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from core.theory import TheoryConfig, simulate

log = logging.getLogger(__name__)


@dataclass
class TheoryRun:
    config: TheoryConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    weights: torch.Tensor | None = None
    status: str = "running"
    error: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def done(self) -> bool:
        return self.status != "running"

    def progress(self) -> float:
        return self.history[-1]["t"] / self.config.iterations if self.history else 0.0


def _work(run: TheoryRun) -> None:
    # The page runs ST and AT side by side: with every thread using all cores they fought over them (AT on 100
    # iterations took 17.6–35.5 s next to ST, 7.3 s with one thread each on 2 cores). OpenMP's thread count is
    # per calling thread, so this leaves the server's other work alone.
    torch.set_num_threads(max(1, torch.get_num_threads() // 2))
    try:
        simulate(run.config, on_progress=run.history.append, should_stop=run.stop.is_set,
                 on_weights=lambda w: setattr(run, "weights", w))
        run.status = "stopped" if run.stop.is_set() else "done"
    except Exception as exc:  # reported on the page, and logged with its traceback
        log.exception("theory run failed")
        run.error, run.status = f"{type(exc).__name__}: {exc}", "failed"


def start(config: TheoryConfig) -> TheoryRun:
    run = TheoryRun(config)
    threading.Thread(target=_work, args=(run,), name="atlas-theory", daemon=True).start()
    return run
