"""Learning-rate schedules as pure functions of the global step, so resuming needs no scheduler state."""

from __future__ import annotations

import bisect
import math

from core.training.config import TrainConfig


def lr_at(config: TrainConfig, step: int, total_steps: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based) of ``total_steps``."""
    total = max(total_steps, 1)
    progress = min(step / total, 1.0)
    steps_per_epoch = total / config.epochs
    warmup = config.warmup_epochs * steps_per_epoch
    if warmup > 0 and step < warmup and config.schedule != "onecycle":
        return config.lr * (step + 1) / warmup
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return 0.5 * config.lr * (1 + math.cos(math.pi * progress))
    if config.schedule == "step":
        return config.lr * 0.1 ** bisect.bisect_right(list(config.step_milestones), progress)
    return _one_cycle(config.lr, progress)


def _one_cycle(peak: float, progress: float) -> float:
    """Triangular one-cycle (as in Wong et al.'s fast AT): 0 → peak at 40 % → 0."""
    if progress < 0.4:
        return peak * progress / 0.4
    return peak * max(0.0, (1 - progress) / 0.6)
