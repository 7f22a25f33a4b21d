"""The Playground's configuration: one frozen, validated dataclass and the caps that keep it interactive.

Two ways in. ``PlaygroundConfig(...)`` is strict: anything out of range raises :class:`ConfigError` with the
field (named by its form label, ``LABELS``), the value and the range. ``PlaygroundConfig.capped(...)`` is what a
page calls with raw widget values: sizes and resolutions above their limit are lowered to it and a note says so
(the Playground must stay live on a laptop), while values that make no sense (NaN, negative ε, an unknown
dataset) still raise ConfigError.
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
DATASET_LABELS = {"moons": "Two moons", "circles": "Circles", "spirals": "Spirals", "xor": "XOR", "blobs": "Blobs"}
ACTIVATION_LABELS = {"relu": "ReLU", "tanh": "tanh", "softplus": "Softplus"}
# What messages call each field: the Playground page's form labels, so an error names what the user can change.
LABELS = {
    "dataset": "toy data", "n": "points n", "noise": "noise", "seed": "seed", "depth": "hidden layers",
    "width": "width", "activation": "activation", "method": "adversarial method", "eps": "ε", "norm": "norm",
    "lr": "learning rate", "steps": "steps", "batch_size": "batch size", "attack_steps": "attack steps",
    "trades_beta": "TRADES β", "eval_steps": "PGD steps for 'robust at ε'", "grid": "grid resolution",
    "test_n": "held-out points",
}

# Upper limits: a value above one is capped (with a note) by ``capped`` and refused by the constructor.
# n, width and depth together set the cost of a step and of a frame. Measured on a 2-core CPU (one torch thread,
# bench-style: training steps of ERM + PGD-AT and one frame): n 1000 × width 64 × 4 hidden layers costs about 2.7×
# the default (n 300 × width 32 × 2 layers) per step and per frame; width 128 × 6 layers cost 8–10× and made a
# 300-step pair take minutes instead of seconds. So all three at their caps keep a run within about 3× the default.
SIZE_CAPS_COST = 3
DEFAULT_STEPS = 300
LIMITS: dict[str, float] = {
    "n": 1000, "noise": 0.5, "depth": 4, "width": 64, "eps": 0.25, "lr": 1.0, "steps": 5000,
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
SIZE_FIELDS = ("n", "width", "depth")
SIZES_WHY = (f"with points n, width and hidden layers all at their caps a run takes about {SIZE_CAPS_COST}× as long "
             "as with the defaults")
WHY = {"grid": "every frame recomputes and redraws grid × grid cells",
       "steps": f"a run's time grows with its steps: {LIMITS['steps']:g} take about "
                f"{LIMITS['steps'] / DEFAULT_STEPS:.0f}× as long as the default {DEFAULT_STEPS}",
       "attack_steps": "every adversarial training step runs the attack this many times",
       "eval_steps": "every frame attacks all the points with this many steps",
       "batch_size": "a batch cannot exceed the training set",
       "eps": f"the Playground allows ε from 0 to {LIMITS['eps']:g} for ℓ∞ and to {L2_EPS_LIMIT:g} for ℓ2: a "
              "larger ball would cover most of the [0, 1]² plane",
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
    steps: int = DEFAULT_STEPS
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
                raise ConfigError(f"{LABELS[name]} must be ≤ {high:g}, got {value!r} "
                                  "(PlaygroundConfig.capped lowers it to the limit with a note)")
        if self.batch_size is not None and self.batch_size > self.n:
            raise ConfigError(f"batch size ({self.batch_size}) cannot exceed points n ({self.n})")
        if self.method != "erm" and self.eps == 0:
            raise ConfigError(f"{METHOD_LABELS[self.method]} needs ε > 0 (with ε = 0 it is standard training, ERM)")

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

        Unknown keys, NaN, infinite or negative values and unknown choices raise ConfigError; the number fields'
        problems all in one (one at a time, a user fixed n to be told about the noise, then about ε).
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown Playground option(s): {', '.join(unknown)}")
        notes: list[str] = []
        sizes: list[str] = []  # n, width and depth share one note: their caps are chosen together
        norm = values.get("norm", cls.norm)
        problems: list[str] = []
        for name, value in list(values.items()):
            if name not in LIMITS or (value is None and name == "batch_size"):
                continue
            try:
                _check_number(name, value)
            except ConfigError as exc:
                problems.append(str(exc))
                continue
            high = eps_limit(norm) if name == "eps" else LIMITS[name]
            if value > high:
                values[name] = type(value)(high) if name in INTEGER_FIELDS else float(high)
                capped = f"{LABELS[name]} capped at {_num(values[name])} (asked for {_num(value)})"
                if name in SIZE_FIELDS:
                    sizes.append(capped)
                else:
                    reason = f" ({WHY[name]})" if name in WHY else ""
                    notes.append(f"{_sentence(capped)}{reason}.")
        if problems:
            raise ConfigError("; ".join(problems))
        if sizes:
            notes.insert(0, f"{_sentence(', '.join(sizes))}: {SIZES_WHY}.")
        batch, n = values.get("batch_size"), values.get("n", cls.n)
        if batch is not None and batch > n:
            values["batch_size"] = None
            notes.append(f"Batch size {batch} is more than the {n} training points: full batch used.")
        return cls(**values), notes


def eps_limit(norm: str) -> float:
    """The largest ε the Playground accepts for ``norm`` (the data live in [0, 1]²)."""
    return L2_EPS_LIMIT if norm == "l2" else LIMITS["eps"]


def _num(value: float) -> str:
    """A number for a note: whole numbers with thousands separators (50,000, not 5e+04)."""
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _sentence(label: str) -> str:
    """A label at the start of a sentence: "points n" → "Points n"; "ε" and "TRADES β" stay as they are."""
    return label[0].upper() + label[1:] if label[0].isascii() else label


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{LABELS[name]} must be one of {', '.join(options)}; got {value!r}")


def _check_number(name: str, value: Any) -> None:
    """Type, finiteness and lower bound of one numeric field (the upper bound is the caller's business)."""
    if name in INTEGER_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{LABELS[name]} must be a whole number, got {value!r}")
    elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{LABELS[name]} must be a finite number, got {value!r}")
    low = LOWER[name]
    if value < low or (name in STRICT_LOWER and value == low):
        bound = f"> {low:g}" if name in STRICT_LOWER else f"≥ {low:g}"
        raise ConfigError(f"{LABELS[name]} must be {bound}, got {value!r}")
