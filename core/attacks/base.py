"""The Attack contract (foolbox-style template method).

``Attack.__call__`` is the same for every attack: validate ε, put the model in eval mode, call the subclass's
``_perturb``, then always project onto the ε-ball, clip to the data bounds, restore the model's mode, and decide
success by re-predicting. Subclasses implement only ``_perturb`` and cannot forget any of those steps.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import torch
from torch import nn

from core.attacks.norms import NORMS, lp_norms, project
from core.errors import ConfigError

Bounds = tuple[float, float] | None


@dataclass(frozen=True, kw_only=True)
class AttackConfig:
    """Hyper-parameters shared by every attack; subclasses add their own fields (all keyword-only)."""

    norm: str = "linf"
    # Autocast dtype of the attack's forward and backward passes. The projection, the clipping and the final
    # success check always run in fp32.
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; choose from {', '.join(NORMS)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if out["precision"] == "fp32":
            # Left out at its default, so configs (and the evaluation ids hashed from them) stay as they were.
            out.pop("precision")
        return out


PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_for(precision: str, device: torch.device) -> AbstractContextManager:
    """Autocast to ``precision`` on ``device`` (a no-op for fp32). fp16 autocast needs a GPU."""
    if precision == "fp32":
        return nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 attacks need a CUDA GPU; use bf16 on a CPU")
    return torch.autocast(device.type, dtype=_AUTOCAST[precision])


@dataclass
class AttackResult:
    """What an attack returns; tensors are detached and live on the input's device."""

    x_adv: torch.Tensor
    success: torch.Tensor
    norms: dict[str, torch.Tensor]
    logits_adv: torch.Tensor
    loss_trace: torch.Tensor = field(default_factory=lambda: torch.empty(0))

    @property
    def robust(self) -> torch.Tensor:
        """Per-sample flag: the attack did not change the prediction away from the true label."""
        return ~self.success


def validate_eps(eps: float | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """ε as a per-sample float tensor; NaN, infinite or negative values are refused with a clear message.

    A number is checked on the host and filled on ``device`` (a training step calls this once per batch, and a check
    on a GPU tensor would make the host wait for the GPU); a tensor is checked on its own device."""
    if isinstance(eps, (int, float)) and not isinstance(eps, bool):
        if not math.isfinite(eps):
            raise ConfigError("eps must be finite (got NaN or inf)")
        if eps < 0:
            raise ConfigError(f"eps must be ≥ 0, got {eps:g}")
        return torch.full((n,), eps, dtype=torch.float32, device=device)
    try:
        eps_t = torch.as_tensor(eps, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"eps must be a number or a tensor of numbers, got {eps!r}") from exc
    if eps_t.dim() == 0:
        eps_t = eps_t.expand(n)
    if eps_t.shape != (n,):
        raise ConfigError(f"eps must be a float or a tensor of shape ({n},), got shape {tuple(eps_t.shape)}")
    if not torch.isfinite(eps_t).all():
        raise ConfigError("eps must be finite (got NaN or inf)")
    if (eps_t < 0).any():
        raise ConfigError(f"eps must be ≥ 0, got {eps_t.min().item():g}")
    return eps_t.to(device).clone()


def check_int(name: str, value: object, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer ≥ {low}, got {value!r}")


def check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{name} must be true or false, got {value!r}")


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the attack; afterwards every submodule gets back its own mode (frozen BatchNorm stays frozen)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Shared validation for config fields; raises ConfigError with the field's name."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name} must be {'≥' if allow_zero else '>'} 0, got {value!r}")


class Attack:
    """Base class. Subclasses set ``name``, ``config_class`` and implement ``_perturb``."""

    name: ClassVar[str] = "attack"
    config_class: ClassVar[type[AttackConfig]] = AttackConfig
    # False for attacks whose ball is deliberately wider than ε (N-FGSM): not for robust accuracy "at ε".
    evaluates_at_eps: ClassVar[bool] = True

    def __init__(self, config: AttackConfig | None = None, **kwargs: Any) -> None:
        if config is not None and kwargs:
            raise ConfigError("pass either a config object or keyword arguments, not both")
        self.config = config if config is not None else self.config_class(**kwargs)
        if not isinstance(self.config, self.config_class):
            raise ConfigError(f"{self.name} needs a {self.config_class.__name__}, got {type(self.config).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config})"

    def radius(self, eps: torch.Tensor) -> torch.Tensor:
        """Radius of the ball the result is projected onto; equal to ε except for deliberately wider attacks."""
        return eps

    def perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float | torch.Tensor,
        *,
        bounds: Bounds = (0.0, 1.0),
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_adv, loss_trace) with every guarantee of the template but no re-prediction (training needs none)."""
        if x.shape[0] != y.shape[0]:
            raise ConfigError(f"x has {x.shape[0]} samples but y has {y.shape[0]}")
        eps_t = validate_eps(eps, x.shape[0], x.device)
        if generator is None:
            # Deterministic by default: an unseeded attack would make every figure irreproducible.
            generator = torch.Generator()
            generator.manual_seed(0)
        with eval_mode(model):
            x = x.detach()
            with autocast_for(self.config.precision, x.device):
                x_adv, loss_trace = self._perturb(model, x, y, eps_t, generator, bounds)
            return self.finalize(x, x_adv.detach().to(x.dtype), eps_t, bounds), loss_trace.float()

    def __call__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: float | torch.Tensor,
        *,
        bounds: Bounds = (0.0, 1.0),
        generator: torch.Generator | None = None,
    ) -> AttackResult:
        x_adv, loss_trace = self.perturb(model, x, y, eps, bounds=bounds, generator=generator)
        with eval_mode(model), torch.no_grad():
            logits_adv = model(x_adv)
        success = logits_adv.argmax(dim=1) != y
        return AttackResult(
            x_adv=x_adv,
            success=success,
            norms=lp_norms(x_adv - x.detach()),
            logits_adv=logits_adv.detach(),
            loss_trace=loss_trace,
        )

    def finalize(self, x: torch.Tensor, x_adv: torch.Tensor, eps: torch.Tensor, bounds: Bounds) -> torch.Tensor:
        """Project onto the ε-ball and clip to the data bounds (the box is convex, so this stays inside both)."""
        delta = project(x_adv - x, self.radius(eps), self.config.norm)
        out = x + delta
        if bounds is not None:
            out = out.clamp(bounds[0], bounds[1])
        return out

    def _perturb(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        generator: torch.Generator,
        bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (x_adv, loss_trace). Runs with the model in eval mode; the base projects and clips afterwards."""
        raise NotImplementedError


LossFn = Callable[[torch.Tensor], torch.Tensor]


def input_gradient(loss_fn: LossFn, x_adv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample loss and its gradient w.r.t. the input only (no parameter gradients are computed)."""
    x_adv = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(x_adv)
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
    return loss.detach(), grad.detach()
