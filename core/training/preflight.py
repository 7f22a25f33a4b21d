"""Checks that must pass before a training job is queued, so a form never starts a job that cannot run.

The shipped architectures fit the kinds of data listed in ``ARCHS_FOR_SHAPE``. An architecture from a plugin is not
listed there: it is probed instead, built for the dataset exactly as training builds it and run forward once on a
batch of two zero inputs (CPU, no gradients), and refused only when that fails or does not give one logit per class.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from core.data import DatasetSpec, dataset_info, load_dataset, missing_files
from core.errors import AtlasError, ConfigError, DataError
from core.models import ARCHS, build_model
from core.models.registry import check_arch_kwargs
from core.training.classwise import check_class_weights
from core.training.config import ARCHS_FOR_SHAPE, TrainConfig, archs_for, norm_problem, norms_for
from core.training.loop import default_arch_kwargs
from core.utils import data_home, derive_seed

__all__ = ["SHIPPED_ARCHS", "arch_problem", "fitting_archs", "preflight"]

# The architectures whose fit is known by the shape of the data (ARCHS_FOR_SHAPE); every other one is probed.
SHIPPED_ARCHS = frozenset(name for names in ARCHS_FOR_SHAPE.values() for name in names)
# How much of an exception's text a refusal quotes.
MAX_REASON = 200


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
    if config.arch in SHIPPED_ARCHS:
        fitting = archs_for(tuple(spec.input_shape))
        if config.arch not in fitting:
            raise ConfigError(f"architecture {config.arch!r} does not fit {config.dataset} inputs of shape "
                              f"{tuple(spec.input_shape)}; choose {', '.join(fitting)}")
    elif (problem := arch_problem(config, spec)) is not None:
        raise ConfigError(problem)


def fitting_archs(dataset: str) -> tuple[str, ...]:
    """The architectures a training form can offer for ``dataset``: the shipped ones that fit its inputs (the
    sensible default first), then every plugin architecture that passes :func:`arch_problem` with its default
    kwargs. Builds each plugin model once: cache the answer (it changes only with the plugins loaded)."""
    spec = dataset_info(dataset)
    shape = tuple(spec.input_shape)
    norm = norms_for(shape)[0]
    plugins = [name for name in ARCHS if name not in SHIPPED_ARCHS]
    return archs_for(shape) + tuple(name for name in plugins
                                    if arch_problem(TrainConfig(dataset=dataset, arch=name, norm=norm), spec) is None)


def arch_problem(config: TrainConfig, spec: DatasetSpec | None = None) -> str | None:
    """Why ``config.arch`` cannot train on ``config.dataset``, or None: the model is built as training builds it
    (``default_arch_kwargs`` fills in the dataset's shape arguments) and run on two zero inputs of the dataset's
    shape; it must return logits of shape (2, number of classes). An unknown architecture raises ConfigError, with
    the plugins that failed to load, if any."""
    spec = spec or dataset_info(config.dataset)
    check_arch_kwargs(config.arch, {})  # unknown name → the registry's message and plugin hint
    shape, num_classes = _data_shape(config, spec)
    where = f"{config.dataset} inputs of shape {shape}"
    stand_in = SimpleNamespace(input_shape=shape, num_classes=num_classes)
    try:
        model = build_model(config.arch, seed=derive_seed(config.seed, "init"),
                            **default_arch_kwargs(config, stand_in))  # type: ignore[arg-type]
    except Exception as exc:  # noqa: BLE001  (a plugin's constructor may raise anything)
        reason = _one_line(exc)
        if reason.startswith(f"architecture {config.arch!r}"):
            return f"{reason} (building it for {where})"
        return f"architecture {config.arch!r} cannot be built for {where}: {reason}"
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(2, *shape))
    except Exception as exc:  # noqa: BLE001  (a plugin's forward may raise anything)
        return f"architecture {config.arch!r} does not fit {where}: its forward pass fails with {_one_line(exc)}"
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else f"a {type(out).__name__}"
        return (f"architecture {config.arch!r} does not fit {where}: on a batch of 2 it returns {got}, not logits "
                f"of shape (2, {num_classes}), one per class")
    return None


def _data_shape(config: TrainConfig, spec: DatasetSpec) -> tuple[tuple[int, ...], int]:
    """Input shape and number of classes of the data training will see. A generated dataset's parameters can change
    both (patches' P, d and k, blobs' centers), so with parameters it is generated (small and quick); a file
    dataset's parameters only pick a subset."""
    if config.dataset_params and not spec.needs_files:
        data = load_dataset(config.dataset, "test", **dict(config.dataset_params))
        return tuple(data.input_shape), data.num_classes
    return tuple(spec.input_shape), spec.num_classes


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else ""
    if len(text) > MAX_REASON:
        text = text[:MAX_REASON - 1] + "…"
    if isinstance(exc, AtlasError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
