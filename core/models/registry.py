"""The architecture registry: an explicit dict filled by a decorator, and ``build_model`` on top of it.

Constructor kwargs are JSON-able by contract, because they are written next to the weights and are all a checkpoint
needs to rebuild the network. Kwargs are checked against the constructor's signature *before* anything is built,
which is also what lets ``core.models.checkpoint`` validate a checkpoint's JSON without building the model.
"""

from __future__ import annotations

import inspect
import json
import math
import logging
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from core.errors import ConfigError

__all__ = [
    "ARCHS",
    "ArchitectureClash",
    "class_path",
    "register_arch",
    "build_model",
    "check_arch_kwargs",
    "instantiate",
    "require_int",
    "require_float",
    "require_choice",
]

logger = logging.getLogger(__name__)

ARCHS: dict[str, type[nn.Module]] = {}

ModuleT = TypeVar("ModuleT", bound=type[nn.Module])


def class_path(cls: type) -> str:
    """``module.QualName`` of a class, which says where a registered architecture comes from."""
    return f"{cls.__module__}.{cls.__qualname__}"


class ArchitectureClash(ConfigError):
    """``register_arch`` was given a name that another class already holds; the registry is left unchanged."""

    def __init__(self, name: str, existing: type, new: type) -> None:
        super().__init__(f"architecture {name!r} is already registered to {class_path(existing)}")
        self.name, self.existing, self.new = name, existing, new


def register_arch(name: str) -> Callable[[ModuleT], ModuleT]:
    """Class decorator: make an architecture buildable as ``build_model(name, ...)`` and loadable from checkpoints.

    A name already held by another class raises :class:`ArchitectureClash` (a ConfigError, hence a ValueError).
    """

    def decorate(cls: ModuleT) -> ModuleT:
        if name in ARCHS and ARCHS[name] is not cls:
            raise ArchitectureClash(name, ARCHS[name], cls)
        ARCHS[name] = cls
        return cls

    return decorate


def _arch_class(arch: str) -> type[nn.Module]:
    if not isinstance(arch, str) or arch not in ARCHS:
        # Imported here: plugins.py imports this module, and an unknown name is the rare path.
        from core.models.plugins import unknown_arch_hint

        raise ConfigError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}{unknown_arch_hint()}")
    return ARCHS[arch]


def check_arch_kwargs(arch: str, kwargs: Mapping[str, Any]) -> type[nn.Module]:
    """Check that ``arch`` is known, that every kwarg name is accepted by it and that the kwargs are JSON-able.

    Values are range-checked later, by the constructor itself. Returns the architecture's class.
    """
    cls = _arch_class(arch)
    params = inspect.signature(cls.__init__).parameters
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    allowed = [n for n, p in params.items() if n != "self" and p.kind in kinds]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ConfigError(
            f"architecture {arch!r} does not take {', '.join(map(repr, unknown))}; "
            f"its kwargs are: {', '.join(allowed)}"
        )
    try:
        json.dumps(dict(kwargs), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"kwargs of architecture {arch!r} must be JSON-able numbers/strings/lists: {err}") from err
    return cls


def _json_normalised(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    # Tuples become lists, exactly as they come back from a checkpoint's JSON, so a built model and a loaded one
    # carry equal ``arch_kwargs``.
    return json.loads(json.dumps(dict(kwargs)))


def instantiate(arch: str, kwargs: Mapping[str, Any], *, device: str | torch.device | None = None) -> nn.Module:
    """Construct ``arch`` from (checked) kwargs, optionally on ``device`` (e.g. ``"meta"``: shapes, no memory).

    Constructor errors caused by bad values surface as ConfigError naming the architecture.
    """
    cls = check_arch_kwargs(arch, kwargs)
    try:
        if device is None:
            model = cls(**kwargs)
        else:
            with torch.device(device):
                model = cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"architecture {arch!r}: {err}") from err
    except (TypeError, ValueError) as err:
        raise ConfigError(f"architecture {arch!r} rejected its kwargs {dict(kwargs)!r}: {err}") from err
    model.arch_name = arch
    model.arch_kwargs = _json_normalised(kwargs)
    return preferred_layout(model)


def preferred_layout(model: nn.Module) -> nn.Module:
    """Channels-last weights for a model with 2-D convolutions, in place; returns the model.

    oneDNN's CPU convolutions and max-pooling are faster in this layout: a PGD-10 call on the digits SmallCNN takes
    ≈ 1.2× less time (bench/RESULTS.md). Every output is the same up to float rounding, state dicts keep their
    shapes, and checkpoints are written contiguous, so files do not depend on it.
    """
    if any(isinstance(m, nn.Conv2d) for m in model.modules()):
        model.to(memory_format=torch.channels_last)
    return model


def build_model(arch: str, *, seed: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a registered architecture; unknown names or kwargs raise ConfigError naming them.

    With ``seed`` the weights are initialised inside ``torch.random.fork_rng`` after ``torch.manual_seed(seed)``:
    the same seed gives identical weights on every call and the global RNG state is left as it was. Without it,
    initialisation draws from the global RNG like any ``nn.Module``. ``seed`` is not part of ``arch_kwargs``.
    The returned model carries ``arch_name``, ``arch_kwargs`` (JSON-able) and ``num_classes``.
    """
    if seed is None:
        return instantiate(arch, kwargs)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int or None, got {seed!r}")
    check_arch_kwargs(arch, kwargs)
    # fork_rng also forks CUDA generators by default and warns when there are many; init runs on CPU, so fork
    # only the CPU generator.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = instantiate(arch, kwargs)
    logger.debug("built %s with seed %d", arch, seed)
    return model


def require_int(name: str, value: Any, minimum: int = 1) -> int:
    """An int (not a bool) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def require_float(name: str, value: Any, *, minimum: float = 0.0, inclusive: bool = True) -> float:
    """A finite real number that is at least (or, with ``inclusive=False``, above) ``minimum``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = value >= minimum if inclusive else value > minimum
    if not ok:
        bound = ">=" if inclusive else ">"
        raise ConfigError(f"{name} must be a finite number {bound} {minimum}, got {value!r}")
    return float(value)


def require_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value
