"""Checks that must pass before a training job is queued, so a form never starts a job that cannot run."""

from __future__ import annotations

from core.data import dataset_info, missing_files
from core.errors import ConfigError, DataError
from core.training.classwise import check_class_weights
from core.training.config import TrainConfig, archs_for, norm_problem
from core.utils import data_home


def preflight(config: TrainConfig) -> None:
    """Raise DataError when the dataset's files are missing, ConfigError when the architecture does not fit or the
    class weights do not match the classes."""
    spec = dataset_info(config.dataset)
    missing = missing_files(config.dataset)
    if missing:
        raise DataError(f"{config.dataset} needs its files in {data_home() / config.dataset} (missing: "
                        f"{', '.join(missing[:3])}{' …' if len(missing) > 3 else ''}); run "
                        f"`python -m core data download {config.dataset}` or place them there")
    if (problem := norm_problem(config.dataset, tuple(spec.input_shape), config.norm)) is not None:
        raise ConfigError(problem)
    if config.class_weighting == "fixed":
        check_class_weights(config.class_weights, spec.num_classes)
    fitting = archs_for(tuple(spec.input_shape))
    if config.arch not in fitting:
        raise ConfigError(f"architecture {config.arch!r} does not fit {config.dataset} inputs of shape "
                          f"{tuple(spec.input_shape)}; choose {', '.join(fitting)}")
