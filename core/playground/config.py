"""The Playground's configuration: one frozen, validated dataclass and the caps that keep it interactive.

Two ways in. ``PlaygroundConfig(...)`` is strict: anything out of range raises :class:`ConfigError` with the
field, the value and the range. ``PlaygroundConfig.capped(...)`` is what a page calls with raw widget values:
sizes and resolutions above their limit are lowered to it and a note says so (the Playground must stay live on a
laptop), while values that make no sense (NaN, negative ε, an unknown dataset) still raise ConfigError.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from core.errors import ConfigError

DATASETS = ("moons", "circles", "spirals", "xor", "blobs")
ACTIVATIONS = ("relu", "tanh", "softplus")
METHODS = ("erm", "fgsm-rs", "pgd-at", "trades", "dale")
NORMS = ("linf", "l2")
METHOD_LABELS = {"erm": "ERM", "fgsm-rs": "FGSM-RS", "pgd-at": "PGD-AT", "trades": "TRADES", "dale": "DALE"}

# Upper limits: a value above one is capped (with a note) by ``capped`` and refused by the constructor.
LIMITS: dict[str, float] = {
    "n": 1000, "noise": 0.5, "depth": 6, "width": 128, "eps": 0.25, "lr": 1.0, "steps": 5000,
    "batch_size": 1000, "attack_steps": 20, "eval_steps": 20, "trades_beta": 20.0, "grid": 200,
    "test_n": 1000, "seed": 2**31 - 1,
}
# ℓ2 balls need a larger radius than ℓ∞ boxes to reach as far along a diagonal.
L2_EPS_LIMIT = 0.35
LOWER: dict[str, float] = {
    "n": 10, "noise": 0.0, "depth": 0, "width": 1, "eps": 0.0, "lr": 0.0, "steps": 1, "batch_size": 1,
    "attack_steps": 1, "eval_steps": 1, "trades_beta": 0.0, "grid": 10, "test_n": 10, "seed": 0,
}
STRICT_LOWER = ("lr",)
INTEGER_FIELDS = ("n", "seed", "depth", "width", "steps", "batch_size", "attack_steps", "eval_steps", "grid",
                  "test_n")
WHY = {"n": "every point is redrawn several times a second", "grid": "the decision regions are redrawn live",
       "steps": "a Playground run should finish in seconds", "width": "a wider MLP no longer trains live",
       "depth": "a deeper MLP no longer trains live", "batch_size": "a batch cannot exceed the training set",
       "test_n": "the held-out set is attacked at every frame"}


@dataclass(frozen=True)
class PlaygroundConfig:
    """One Playground run: toy data, MLP, training method, threat model and drawing resolution.

    Args:
        dataset: one of ``DATASETS`` (the toy 2-D sets of core.data.synthetic, points in [0, 1]²).
        n: training points (the test set has ``test_n`` points drawn the same way with another seed).
        noise: the dataset's noise level (natural units of core.data.synthetic; its default differs per set).
        seed: data and weight-initialisation seed; both runs of a comparison share it, so they see the same data
            and start from the same weights.
        depth, width, activation: the MLP (``depth`` hidden layers of ``width`` units; depth 0 = linear).
        method: ``"erm"`` or an adversarial training method (FGSM-RS, PGD-AT, TRADES, DALE).
        eps, norm: the threat model, an ℓ∞ box or ℓ2 disc of radius ε in input units.
        lr: Adam's learning rate.  steps: optimiser steps.  batch_size: None for full batch.
        attack_steps: steps of the training attack (PGD-AT, TRADES, DALE).  trades_beta: TRADES's β.
        eval_steps: steps of the PGD that decides "robust at ε" and draws the arrows.
        grid: the decision-region grid is grid × grid over [0, 1]².
        test_n: held-out points for the accuracy curves.
    """

    dataset: str = "moons"
    n: int = 300
    noise: float = 0.1
    seed: int = 0
    depth: int = 2
    width: int = 32
    activation: str = "relu"
    method: str = "erm"
    eps: float = 0.07
    norm: str = "linf"
    lr: float = 0.02
    steps: int = 300
    batch_size: int | None = None
    attack_steps: int = 5
    trades_beta: float = 6.0
    eval_steps: int = 10
    grid: int = 80
    test_n: int = 300

    def __post_init__(self) -> None:
        _choice("dataset", self.dataset, DATASETS)
        _choice("activation", self.activation, ACTIVATIONS)
        _choice("method", self.method, METHODS)
        _choice("norm", self.norm, NORMS)
        for name in LIMITS:
            value = getattr(self, name)
            if value is None and name == "batch_size":
                continue
            _check_number(name, value)
            high = eps_limit(self.norm) if name == "eps" else LIMITS[name]
            if value > high:
                raise ConfigError(f"{name} must be ≤ {high:g}, got {value!r} "
                                  "(PlaygroundConfig.capped lowers it to the limit with a note)")
        if self.batch_size is not None and self.batch_size > self.n:
            raise ConfigError(f"batch_size ({self.batch_size}) cannot exceed n ({self.n})")
        if self.method != "erm" and self.eps == 0:
            raise ConfigError(f"method {METHOD_LABELS[self.method]} needs ε > 0 (with ε = 0 it is ERM)")

    @property
    def hidden(self) -> tuple[int, ...]:
        return (self.width,) * self.depth

    @property
    def adversarial(self) -> bool:
        return self.method != "erm"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_method(self, method: str) -> "PlaygroundConfig":
        """The same run with another training method (ERM keeps ε: it is still attacked at ε to be judged)."""
        return replace(self, method=method)

    @classmethod
    def capped(cls, **values: Any) -> tuple["PlaygroundConfig", list[str]]:
        """A config from raw values with sizes above their limits lowered to them; returns (config, notes).

        Unknown keys, NaN, infinite or negative values and unknown choices raise ConfigError.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown Playground option(s): {', '.join(unknown)}")
        notes: list[str] = []
        norm = values.get("norm", cls.norm)
        for name, value in list(values.items()):
            if name not in LIMITS or (value is None and name == "batch_size"):
                continue
            _check_number(name, value)
            high = eps_limit(norm) if name == "eps" else LIMITS[name]
            if value > high:
                values[name] = type(value)(high) if name in INTEGER_FIELDS else float(high)
                reason = f" ({WHY[name]})" if name in WHY else ""
                notes.append(f"{name} capped at {high:g} (asked for {value:g}){reason}.")
        batch, n = values.get("batch_size"), values.get("n", cls.n)
        if batch is not None and batch > n:
            values["batch_size"] = None
            notes.append(f"batch_size {batch} is more than the {n} training points: full batch used.")
        return cls(**values), notes


def eps_limit(norm: str) -> float:
    """The largest ε the Playground accepts for ``norm`` (the data live in [0, 1]²)."""
    return L2_EPS_LIMIT if norm == "l2" else LIMITS["eps"]


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _check_number(name: str, value: Any) -> None:
    """Type, finiteness and lower bound of one numeric field (the upper bound is the caller's business)."""
    if name in INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    low = LOWER[name]
    if value < low or (name in STRICT_LOWER and value == low):
        bound = f"> {low:g}" if name in STRICT_LOWER else f"≥ {low:g}"
        raise ConfigError(f"{name} must be {bound}, got {value!r}")
