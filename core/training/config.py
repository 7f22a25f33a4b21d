"""Training configuration: one frozen, validated, JSON-round-trippable dataclass.

Its sorted JSON hashes to the run id, so the same command twice names the same run (and resumes it).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Sequence

from core.errors import ConfigError
from core.store.registry import MAX_NAME

METHOD_NAMES = ("erm", "fgsm-rs", "n-fgsm", "pgd-at", "trades", "mart", "dale", "dale-kl")
DALE_NOISES = ("laplacian", "gaussian")
CLASS_WEIGHTINGS = ("none", "fixed", "adaptive")
SCHEDULES = ("constant", "cosine", "onecycle", "step")
OPTIMIZERS = ("sgd", "adam")
NORMS = ("linf", "l2", "l2patch")
# Architectures that fit each kind of data, first = the sensible default (the Training form offers these).
ARCHS_FOR_SHAPE = {"image8": ("smallcnn",), "image28": ("smallcnn", "lenet"),
                   "image32": ("preact_resnet18", "wideresnet", "smallcnn"), "vector": ("mlp",),
                   "patches": ("patchnet",)}


# The usual ε per dataset in the [0,1] input scale (ℓ∞), as in the literature and the shipped models.
DEFAULT_EPS = {"digits": 0.1, "mnist": 0.3, "fashion-mnist": 0.1, "cifar10": 8 / 255, "svhn": 8 / 255,
               "patches": 0.25}
TOY_EPS = 0.05
MAX_EPS = {"linf": 1.0, "l2": 100.0, "l2patch": 100.0}


def default_eps(dataset: str) -> float:
    return DEFAULT_EPS.get(dataset, TOY_EPS)


def norms_for(input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Threat models that mean something for inputs of this shape: per-patch ℓ2 for patch data (N×P×d, not in
    the [0, 1] scale an ℓ∞ or ℓ2 ε is read in), ℓ∞ and ℓ2 for everything else."""
    return ("l2patch",) if len(input_shape) == 2 else ("linf", "l2")


def norm_problem(dataset: str, input_shape: tuple[int, ...], norm: str) -> str | None:
    allowed = norms_for(input_shape)
    if norm in allowed:
        return None
    if norm == "l2patch":
        return (f"the l2patch threat model needs patch data (N×P×d); {dataset} has inputs of shape "
                f"{tuple(input_shape)}")
    return (f"{dataset} is patch data (P×d, not in the [0, 1] input scale that ε is read in for norm {norm!r}): "
            f"train it with norm {' or '.join(repr(n) for n in allowed)}")


def archs_for(input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """Architectures that accept inputs of this shape."""
    if len(input_shape) == 1:
        return ARCHS_FOR_SHAPE["vector"]
    if len(input_shape) == 2:
        return ARCHS_FOR_SHAPE["patches"]
    return ARCHS_FOR_SHAPE.get(f"image{input_shape[-1]}", ("smallcnn",))


def _as_items(value: Any) -> tuple[tuple[str, Any], ...]:
    if isinstance(value, dict):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    return tuple((str(k), _freeze(v)) for k, v in value)


def _freeze(value: Any) -> Any:
    return tuple(_freeze(v) for v in value) if isinstance(value, list) else value


def eps_problem(method: str, eps: float, shown: str | None = None) -> str | None:
    """The rule that ties ε to the method (a form lists it with its other problems, naming the method as it shows
    it, ``shown``; TrainConfig raises it)."""
    if method != "erm" and eps == 0:
        if shown is not None:
            return f"{shown} needs ε > 0 (ε = 0 is standard training, ERM)"
        return f"method {method!r} needs ε > 0 (ε = 0 is standard training: choose erm)"
    return None


# The largest class weight taken. Only the weights' ratios matter (each batch's loss is divided by its total
# weight); beyond float32's range (3.4e38) a weight became inf and the loss NaN.
MAX_CLASS_WEIGHT = 1e6


def class_weights_problem(weights: Sequence[Any]) -> str | None:
    """The first class weight that is not a positive finite number up to MAX_CLASS_WEIGHT, described; None when all
    are."""
    for i, w in enumerate(weights):
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not math.isfinite(w) or w <= 0:
            return f"the weight of class {i} must be a positive finite number, got {w!r}"
        if w > MAX_CLASS_WEIGHT:
            return (f"the weight of class {i} is {w:g}; at most {MAX_CLASS_WEIGHT:g} (only the weights' ratios "
                    "matter: scale them all down)")
    return None


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run. ``dataset_params`` and ``arch_kwargs`` are sorted item tuples."""

    dataset: str = "digits"
    arch: str = "smallcnn"
    method: str = "erm"
    dataset_params: tuple[tuple[str, Any], ...] = ()
    arch_kwargs: tuple[tuple[str, Any], ...] = ()
    norm: str = "linf"
    eps: float = 0.1
    attack_steps: int = 10
    attack_step_size: float | None = None
    trades_beta: float = 6.0
    nfgsm_noise: float = 2.0
    mart_beta: float = 5.0
    dale_noise: str = "laplacian"
    dale_noise_scale: float = 1e-3
    dale_rho: float = 0.1
    dale_nu: float = 1.0
    dale_dual_lr: float = 1e-3
    class_weighting: str = "none"
    class_weights: tuple[float, ...] = ()
    class_weight_strength: float = 0.5
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    step_milestones: tuple[float, ...] = (0.5, 0.75)
    warmup_epochs: float = 0.0
    seed: int = 0
    eval_n: int = 256
    eval_steps: int = 10
    device: str = "auto"
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset_params", _as_items(self.dataset_params))
        object.__setattr__(self, "arch_kwargs", _as_items(self.arch_kwargs))
        object.__setattr__(self, "step_milestones", tuple(float(m) for m in self.step_milestones))
        if isinstance(self.eps, float):
            object.__setattr__(self, "eps", self.eps + 0.0)  # -0.0 is 0.0: the same run id for the same model
        if isinstance(self.class_weights, (list, tuple)):
            object.__setattr__(self, "class_weights", tuple(self.class_weights))
        self.validate()

    def validate(self) -> None:
        _choice("method", self.method, METHOD_NAMES)
        _choice("norm", self.norm, NORMS)
        # ε lives in the [0,1] input scale: beyond 1 in ℓ∞ every image can become any other.
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _number("ε", self.eps, low=0.0, high=MAX_EPS[self.norm])
        if len(self.name.strip()) > MAX_NAME:
            raise ConfigError(f"name is {len(self.name.strip())} characters; at most {MAX_NAME}")
        if (problem := eps_problem(self.method, self.eps)) is not None:
            raise ConfigError(problem)
        for name in ("amp", *SPEED_OPTIONS):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name, label in (("attack_steps", "attack steps"), ("epochs", "epochs"), ("batch_size", "batch size"),
                            ("eval_steps", "evaluation attack steps (eval_steps)")):
            _integer(label, getattr(self, name), low=1)
        _integer("held-out points (eval_n)", self.eval_n, low=0)
        _integer("seed", self.seed, low=0)
        _number("learning rate", self.lr, low=0.0, strict=True)
        _number("momentum", self.momentum, low=0.0, high=1.0)
        _number("weight decay", self.weight_decay, low=0.0)
        _number("TRADES β", self.trades_beta, low=0.0)
        _number("N-FGSM noise (nfgsm_noise)", self.nfgsm_noise, low=0.0)
        _number("warm-up epochs", self.warmup_epochs, low=0.0)
        if self.attack_step_size is not None:
            _number("attack step size", self.attack_step_size, low=0.0, strict=True)
        if any(not 0 < m < 1 for m in self.step_milestones):
            raise ConfigError("step_milestones are fractions of training in (0, 1), e.g. 0.5,0.75")
        self._validate_dale_and_weights()
        # The method's training attack must exist in this threat model (DALE's Langevin steps have no per-patch ℓ2):
        # refused here, before a job is queued, not in the job's process.
        from core.training.methods import METHODS

        try:
            METHODS[self.method].make_attack(self)
        except ConfigError as exc:
            raise ConfigError(f"{self.method} cannot train with norm {self.norm!r}: {exc}") from exc

    def _validate_dale_and_weights(self) -> None:
        _number("MART β", self.mart_beta, low=0.0)
        _choice("dale_noise", self.dale_noise, DALE_NOISES)
        _number("Langevin noise scale c", self.dale_noise_scale, low=0.0)
        _number("ρ (clean-loss bound)", self.dale_rho, low=0.0, strict=True)
        _number("ν₀ (initial ν)", self.dale_nu, low=0.0)
        _number("η_d (dual step)", self.dale_dual_lr, low=0.0)
        _choice("class_weighting", self.class_weighting, CLASS_WEIGHTINGS)
        _number("class_weight_strength", self.class_weight_strength, low=0.0, high=1.0)
        if not isinstance(self.class_weights, tuple):
            raise ConfigError(f"class_weights must be a list of numbers, got {self.class_weights!r}")
        if self.class_weighting == "fixed":
            if not self.class_weights:
                raise ConfigError("class_weighting 'fixed' needs class_weights, one positive number per class")
            if (problem := class_weights_problem(self.class_weights)) is not None:
                raise ConfigError(problem)
        elif self.class_weights:
            raise ConfigError("class_weights are used only with class_weighting 'fixed'")
        if self.class_weighting == "adaptive" and self.method == "erm":
            raise ConfigError("adaptive class weights follow per-class robustness under the training attack; "
                              "ERM has no attack: use fixed weights or an adversarial method")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["dataset_params"] = dict(self.dataset_params)
        out["arch_kwargs"] = dict(self.arch_kwargs)
        out["step_milestones"] = list(self.step_milestones)
        out["class_weights"] = list(self.class_weights)
        return out

    def identity(self) -> dict[str, Any]:
        """The fields that determine the trained weights (not name, device, memory layout, compilation or extras):
        hashed into the run id, so the same run can be resumed with other speed options."""
        out = self.to_dict()
        for key in ("name", "device", "extra", *SPEED_OPTIONS):
            out.pop(key)
        # Options added after runs existed are left out at their defaults, so those runs keep their ids.
        for key, default in LATER_DEFAULTS.items():
            if out.get(key) == default:
                out.pop(key)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}")
        return cls(**data)


# Options that change speed, not the maths (up to float rounding): left out of the run id.
SPEED_OPTIONS = ("channels_last", "compile")
LATER_DEFAULTS: dict[str, Any] = {
    "mart_beta": 5.0, "dale_noise": "laplacian", "dale_noise_scale": 1e-3, "dale_rho": 0.1, "dale_nu": 1.0,
    "dale_dual_lr": 1e-3, "class_weighting": "none", "class_weights": [], "class_weight_strength": 0.5,
}


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _number(name: str, value: Any, *, low: float, high: float | None = None, strict: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low) or (high is not None and value > high):
        if high is None:
            raise ConfigError(f"{name} must be {'>' if strict else '≥'} {low:g}, got {value!r}")
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value!r}")


def _integer(name: str, value: Any, *, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}")
