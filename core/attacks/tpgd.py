"""Temperature-PGD: PGD on the cross-entropy of temperature-scaled logits, −log softmax(f(x')/T)_y.

Paper: Tian, Zhou, Liang, Wang, Cheng, "Analysis and Applications of Class-wise Robustness in Adversarial
Training", KDD 2021, https://arxiv.org/abs/2105.14240
Threat model: as PGD (ℓ∞ / ℓ2 / per-patch ℓ2 ball of radius ε, clipped to the data bounds).
T = 1 is exactly PGD; T → 0 tends to a margin step toward the nearest class; a large T keeps gradients alive on
confidently classified points whose softmax has saturated.

Arguments (keyword-only config): those of PGD plus ``temperature`` (1.0, > 0). Example::

    result = TemperaturePGD(steps=10, temperature=0.1)(model, x, y, eps=0.1)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.attacks.base import LossFn
from core.attacks.pgd import PGD, PGDConfig
from core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TPGDConfig(PGDConfig):
    temperature: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise ConfigError(f"temperature must be a finite number > 0, got {t!r}")


class TemperaturePGD(PGD):
    name = "tpgd"
    config_class = TPGDConfig

    def get_loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossFn:
        temperature = float(self.config.temperature)

        def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(model(x_adv) / temperature, y, reduction="none")

        return loss_fn
