"""Training methods: each is the loop's attack (if any) plus its loss. ``METHODS`` maps name → method.

* ``erm``      — standard training on clean inputs.
* ``fgsm-rs``  — Wong, Rice, Kolter 2020: FGSM from a uniform random start, α = 1.25ε.
* ``n-fgsm``   — de Jorge et al. 2022: FGSM from k·ε noise (k = nfgsm_noise), α = ε, no projection to ε.
* ``pgd-at``   — Madry et al. 2018: PGD-K with random start, step 2.5ε/K unless given.
* ``trades``   — Zhang et al. 2019: CE(f(x), y) + β·KL(f(x) ‖ f(x')), x' from KL-PGD.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from core.attacks import FGSM, NFGSM, PGD, Attack, TRADESAttack
from core.training.config import TrainConfig

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor | None, TrainConfig],
                  tuple[torch.Tensor, torch.Tensor]]


def _ce_on_adv(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None,
               config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    logits = model(x if x_adv is None else x_adv)
    return F.cross_entropy(logits, y), logits


def _trades_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor | None,
                 config: TrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    assert x_adv is not None
    # Two passes, as the authors do: one concatenated batch would mix clean and adversarial BatchNorm statistics.
    logits_clean, logits_adv = model(x), model(x_adv)
    kl = F.kl_div(F.log_softmax(logits_adv, dim=1), F.softmax(logits_clean, dim=1), reduction="batchmean")
    return F.cross_entropy(logits_clean, y) + config.trades_beta * kl, logits_clean


@dataclass(frozen=True)
class Method:
    name: str
    make_attack: Callable[[TrainConfig], Attack | None]
    loss: LossFn
    single_step: bool = False
    description: str = ""


def _pgd(config: TrainConfig) -> Attack:
    return PGD(norm=config.norm, steps=config.attack_steps, step_size=config.attack_step_size)


def _trades(config: TrainConfig) -> Attack:
    return TRADESAttack(norm=config.norm, steps=config.attack_steps, step_size=config.attack_step_size)


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("erm", lambda c: None, _ce_on_adv, description="standard training on clean inputs"),
        Method("fgsm-rs", lambda c: FGSM(norm=c.norm, random_start=True, step_factor=1.25), _ce_on_adv,
               single_step=True, description="FGSM from a random start (Wong et al. 2020)"),
        Method("n-fgsm", lambda c: NFGSM(norm=c.norm, noise_factor=c.nfgsm_noise, step_factor=1.0), _ce_on_adv,
               single_step=True, description="noisy FGSM without projection (de Jorge et al. 2022)"),
        Method("pgd-at", _pgd, _ce_on_adv, description="PGD adversarial training (Madry et al. 2018)"),
        Method("trades", _trades, _trades_loss, description="TRADES: clean CE + β·KL (Zhang et al. 2019)"),
    )
}
