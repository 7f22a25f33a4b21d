"""The dataset registry: :class:`Dataset`, :class:`DatasetSpec`, the ``DATASETS`` dict and :func:`load_dataset`.

Datasets register themselves with :func:`register_dataset`, a decorator that fills an explicit dict (no
``globals()`` lookups). A loader receives the split and the fully resolved, validated parameters and returns a
:class:`LoadedData`; :func:`load_dataset` wraps that into a :class:`Dataset` carrying the parameters it used, so
``load_dataset(ds.name, ds.split, **ds.params)`` reproduces ``ds`` exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, NamedTuple, Sequence

from core.lazy import torch

from core.errors import ConfigError, DataError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
KINDS = ("image", "toy", "theory")


class LoadedData(NamedTuple):
    """What a loader returns: inputs, labels and, when they depend on the parameters, the class names."""

    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...] | None = None


Loader = Callable[..., LoadedData]


@dataclass(frozen=True)
class DatasetSpec:
    """Static description of a registered dataset; ``input_shape``/``classes`` are those of the defaults."""

    name: str
    kind: str
    description: str
    input_shape: tuple[int, ...]
    num_classes: int
    classes: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict, hash=False)
    needs_files: bool = False
    files: tuple[str, ...] = ()
    loader: Loader | None = field(default=None, repr=False, compare=False)
    bounds: tuple[float, float] | None = (0.0, 1.0)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a dataset held in memory.

    ``x`` is float32 (N×C×H×W images, N×D toy points, N×P×d patches), ``y`` int64 labels in
    ``[0, num_classes)``. ``bounds`` is the valid input range attacks clip to (None: unbounded, as for patches).
    ``params`` are the resolved parameters the data was generated or loaded with (JSON-able).
    """

    name: str
    split: str
    x: torch.Tensor
    y: torch.Tensor
    classes: tuple[str, ...]
    bounds: tuple[float, float] | None = (0.0, 1.0)
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.y.dtype != torch.int64:
            raise ValueError(f"Dataset needs float32 x and int64 y, got {self.x.dtype} and {self.y.dtype}")
        if self.x.dim() < 2 or self.y.dim() != 1 or len(self.x) != len(self.y):
            raise ValueError(f"Dataset shapes disagree: x {tuple(self.x.shape)}, y {tuple(self.y.shape)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.y)

    def __repr__(self) -> str:
        # The dataclass default would print whole tensors.
        return (f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"input_shape={self.input_shape}, classes={self.num_classes}, params={self.params})")

    def subset(self, n: int | None = None, indices: Sequence[int] | torch.Tensor | None = None) -> "Dataset":
        """The first ``n`` points (all of them if ``n`` exceeds the size), or the points at ``indices``.

        ``params`` stay those of the full dataset, so they still reproduce the data the subset was cut from.
        """
        if n is not None and indices is not None:
            raise ConfigError("subset takes either n or indices, not both")
        if n is not None:
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ConfigError(f"subset size n must be a non-negative integer, got {n!r}")
            return replace(self, x=self.x[:n], y=self.y[:n])
        if indices is None:
            return self
        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            if idx.shape != self.y.shape:
                raise ConfigError(f"boolean mask has shape {tuple(idx.shape)}, dataset has {len(self)} points")
            idx = idx.nonzero().flatten()
        if idx.dim() != 1 or (idx.numel() and idx.is_floating_point()):
            raise ConfigError("subset indices must be a 1-D sequence of integers")
        idx = idx.long()
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise ConfigError(f"subset indices out of range for a dataset of {len(self)} points")
        return replace(self, x=self.x[idx].contiguous(), y=self.y[idx].contiguous())


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(
    name: str,
    *,
    kind: str,
    description: str,
    input_shape: tuple[int, ...],
    classes: tuple[str, ...],
    defaults: dict[str, Any] | None = None,
    files: tuple[str, ...] = (),
    bounds: tuple[float, float] | None = (0.0, 1.0),
) -> Callable[[Loader], Loader]:
    """Decorator that adds a loader to :data:`DATASETS` under ``name``.

    The loader is called as ``loader(split, **params)`` with every parameter of ``defaults`` resolved.
    """
    if kind not in KINDS:
        raise ValueError(f"dataset kind must be one of {KINDS}, got {kind!r}")

    def decorate(loader: Loader) -> Loader:
        if name in DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        DATASETS[name] = DatasetSpec(
            name=name, kind=kind, description=description, input_shape=tuple(input_shape),
            num_classes=len(classes), classes=tuple(classes), defaults=dict(defaults or {}),
            needs_files=bool(files), files=tuple(files), loader=loader, bounds=bounds,
        )
        return loader

    return decorate


def dataset_info(name: str) -> DatasetSpec:
    """The :class:`DatasetSpec` of ``name``; :class:`DataError` listing the choices if it is unknown."""
    try:
        return DATASETS[name]
    except (KeyError, TypeError):
        raise DataError(f"unknown dataset {name!r}; available: {', '.join(sorted(DATASETS))}") from None


def _coerce(dataset: str, key: str, value: Any, default: Any) -> Any:
    """Convert ``value`` to the type of the parameter's default; strings come from the CLI and URLs."""
    bad = ConfigError(f"parameter {key}={value!r} of dataset {dataset!r} must be "
                      f"{'an integer' if isinstance(default, int) or default is None else 'a number'}")
    if value is None and default is None:
        return None
    if isinstance(value, bool):
        raise bad
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise bad from None
    if not isinstance(value, (int, float)) and not hasattr(value, "__index__"):
        raise bad
    if isinstance(default, float):
        value = float(value)
        if not math.isfinite(value):
            raise bad
        return value
    if isinstance(value, float) and not value.is_integer():
        raise bad
    return int(value)


def resolve_params(spec: DatasetSpec, params: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``params``, each converted to its default's type; unknown names are errors."""
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        allowed = ", ".join(spec.defaults) or "none"
        raise ConfigError(f"unknown parameter {unknown[0]!r} for dataset {spec.name!r}; allowed: {allowed}")
    return {key: _coerce(spec.name, key, params.get(key, default), default)
            for key, default in spec.defaults.items()}


def check_range(dataset: str, key: str, value: float | None, *, low: float, high: float = math.inf) -> None:
    """:class:`ConfigError` unless ``low <= value <= high`` (None passes: it means "not set")."""
    if value is not None and not low <= value <= high:
        span = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise ConfigError(f"parameter {key}={value!r} of dataset {dataset!r} must be {span}")


def load_dataset(name: str, split: str = "test", **params: Any) -> Dataset:
    """Load split ``split`` ("train" or "test") of dataset ``name`` with the given parameters.

    >>> ds = load_dataset("moons", "train", n=200, noise=0.1)
    >>> ds.x.shape, ds.num_classes
    (torch.Size([200, 2]), 2)
    """
    spec = dataset_info(name)
    if split not in SPLITS:
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    resolved = resolve_params(spec, params)
    assert spec.loader is not None, f"dataset {name!r} has no loader"
    data = spec.loader(split, **resolved)
    log.debug("loaded %s/%s with %s: %d points", name, split, resolved, len(data.y))
    return Dataset(
        name=name, split=split, x=data.x.contiguous(), y=data.y.contiguous(),
        classes=data.classes if data.classes is not None else spec.classes,
        bounds=spec.bounds, params=resolved,
    )
