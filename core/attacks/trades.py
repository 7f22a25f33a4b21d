"""TRADES inner maximisation: PGD on KL(f(x) ‖ f(x')) from a small Gaussian start.

Paper: Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off between Robustness and
Accuracy", ICML 2019, https://arxiv.org/abs/1901.08573
Threat model: ``norm`` ball of radius ε, clipped to the data bounds. The label is not used by the loss (the
attack pushes the prediction away from the clean one); success is still judged against the true label.

Arguments (keyword-only config): ``norm`` ("linf"), ``steps`` (10), ``step_size`` (None → 2.5·ε/steps),
``init_std`` (0.001, the authors' start). Example::

    result = TRADESAttack(steps=10)(model, x, y, eps=0.1)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from core.attacks.base import Bounds, LossFn, check_positive
from core.attacks.gradient import clip_to
from core.attacks.pgd import PGD, PGDConfig
from core.attacks.shard import draw
from core.errors import ConfigError


@dataclass(frozen=True, kw_only=True)
class TRADESConfig(PGDConfig):
    init_std: float = 0.001

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("init_std", self.init_std, allow_zero=True)
        if self.target is not None:
            raise ConfigError("the TRADES attack maximises the KL to the clean prediction; it takes no target")


class TRADESAttack(PGD):
    name = "trades"
    config_class = TRADESConfig

    def get_loss_fn(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> LossFn:
        with torch.no_grad():
            p_clean = F.softmax(model(x), dim=1)

        def loss_fn(x_adv: torch.Tensor) -> torch.Tensor:
            log_p_adv = F.log_softmax(model(x_adv), dim=1)
            return F.kl_div(log_p_adv, p_clean, reduction="none").sum(dim=1)

        return loss_fn

    def initial_point(
        self, x: torch.Tensor, eps: torch.Tensor, generator: torch.Generator, bounds: Bounds
    ) -> torch.Tensor:
        noise = draw(lambda s: torch.randn(s, generator=generator, device=generator.device), x.shape)
        noise = noise.to(x.device) * self.config.init_std
        return clip_to(x + noise, bounds)
