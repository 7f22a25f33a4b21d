"""Training: ``train(config, *, on_progress, should_stop) -> RunResult`` over the methods in ``METHODS``."""

from core.training.config import METHOD_NAMES, SCHEDULES, TrainConfig
from core.training.loop import RunResult, run_id_for, train
from core.training.methods import METHODS

__all__ = ["METHODS", "METHOD_NAMES", "RunResult", "SCHEDULES", "TrainConfig", "run_id_for", "train"]
