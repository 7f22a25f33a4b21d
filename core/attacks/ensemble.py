"""The quick ensemble: APGD-CE, then targeted APGD-DLR against the top classes, each only on points still robust.

Practice from Croce & Hein 2020 (AutoAttack): report the worst case per point over all attacks, never an average,
and run later attacks only on points the earlier ones did not break. The result is one Attack, so every
evaluation view (per-sample table, curves, per-class charts) works with it unchanged.

Arguments (keyword-only config): ``norm`` ("linf"), ``steps`` (100 per attack), ``targets`` (3). Example::

    result = QuickEnsemble(steps=50)(model, x, y, eps=0.1, generator=gen)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.attacks.apgd import APGD
from core.attacks.base import Attack, AttackConfig, Bounds, check_int


@dataclass(frozen=True, kw_only=True)
class QuickConfig(AttackConfig):
    steps: int = 100
    targets: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("steps", self.steps)
        check_int("targets", self.targets)

    def members(self) -> list[Attack]:
        return [APGD(norm=self.norm, steps=self.steps),
                APGD(norm=self.norm, steps=self.steps, loss="dlr", targets=self.targets)]


class QuickEnsemble(Attack):
    name = "quick"
    config_class = QuickConfig

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x_adv = x.clone()
        with torch.no_grad():
            robust = model(x).argmax(1) == y
        for attack in self.config.members():
            todo = torch.nonzero(robust).flatten()
            if len(todo) == 0:
                break
            if attack.config.targets and model(x[:1]).shape[1] < 4:
                continue
            result = attack(model, x[todo], y[todo], eps[todo], bounds=bounds, generator=generator)
            x_adv[todo] = result.x_adv
            robust[todo[result.success]] = False
        return x_adv, robust.float().unsqueeze(0)
