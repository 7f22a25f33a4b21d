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
        """The tempered cross-entropy's value, ascended along its gradient's direction computed without underflow.

        At a small T the softmax of f(x')/T saturates in float32 (p_y rounds to 1) and the cross-entropy's gradient
        is exactly 0: at T = 0.01, 96 % of the shipped standard model's test points got no step, and the attack
        scored 95.8 % robust accuracy where PGD scores 52 %. CE(z/T) = softplus(m) with
        m = log Σ_{k≠y} exp((z_k − z_y)/T), so ∇CE = σ(m)·∇m: per sample the same direction as ∇m, which
        stays finite. The steps (sign for ℓ∞, normalised for ℓ2) use only that direction, so they follow ∇m; the
        value (the loss trace, the choice between restarts) stays the cross-entropy. T = 1 is PGD's own loss, bit
        for bit.
        """
        temperature = float(self.config.temperature)

        def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
            z = model(x_adv) / temperature
            ce = F.cross_entropy(z, y, reduction="none")
            if temperature == 1.0:
                return ce
            others = (z - z.gather(1, y[:, None])).scatter(1, y[:, None], float("-inf"))
            m = torch.logsumexp(others, dim=1)
            return ce.detach() + (m - m.detach())

        return loss_fn
