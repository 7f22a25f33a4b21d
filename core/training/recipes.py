"""Named training recipes from the literature, as TrainConfig defaults (``python -m core train --recipe NAME``).

Flags given next to ``--recipe`` override the recipe's values.

* ``cifar10-fgsm-rs`` — Wong, Rice & Kolter 2020, "Fast is better than free": PreAct-ResNet-18, FGSM from a
  uniform random start with α = 1.25ε (ε = 8/255), 15 epochs, triangular cyclic learning rate peaking at 0.2,
  SGD momentum 0.9, weight decay 5e-4, batch 128, mixed precision.
* ``cifar10-pgd-at`` — Madry et al. 2018 as trained by Rice, Wong & Kolter 2020: PreAct-ResNet-18, PGD-10 with
  α = 2/255 (ε = 8/255), 200 epochs, learning rate 0.1 divided by 10 at 50 % and 75 %, SGD momentum 0.9,
  weight decay 5e-4, batch 128.
"""

from __future__ import annotations

from typing import Any

from core.errors import ConfigError

_CIFAR = {"dataset": "cifar10", "arch": "preact_resnet18", "norm": "linf", "eps": 8 / 255, "batch_size": 128,
          "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4}

RECIPES: dict[str, dict[str, Any]] = {
    "cifar10-fgsm-rs": {**_CIFAR, "method": "fgsm-rs", "epochs": 15, "lr": 0.2, "schedule": "onecycle",
                        "amp": True},
    "cifar10-pgd-at": {**_CIFAR, "method": "pgd-at", "attack_steps": 10, "attack_step_size": 2 / 255,
                       "epochs": 200, "lr": 0.1, "schedule": "step", "step_milestones": (0.5, 0.75)},
}


def recipe(name: str) -> dict[str, Any]:
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return dict(RECIPES[name])
