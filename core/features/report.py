"""What the Features page shows for one model: attributions clean vs adversarial over a sample, unit scores, the
activations of the units the attack moves most (per example: channel means, and spatial maps for convolutions) and an
ablation of the most attack-sensitive useful units. The adversarial inputs (PGD-10, ``adversarial``) are computed
once and shared by both reports."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from core.attacks import PGD
from core.features.attributions import (attribute, low_frequency_share, rank_correlation, stroke_share, summary,
                                        topk_overlap)
from core.features.units import ablation_study, unit_activations, unit_maps, unit_scores
from core.utils import make_generator


def adversarial(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str, *, steps: int = 10,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv, adversarial predictions) from PGD-``steps``, on the CPU."""
    device = next(model.parameters()).device
    result = PGD(norm=norm, steps=steps)(model, x.to(device), y.to(device), eps,
                                         generator=make_generator(seed, "features"))
    return result.x_adv.cpu(), result.logits_adv.argmax(1).cpu()


def attribution_report(model: nn.Module, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, method: str,
                       *, seed: int = 0) -> dict[str, Any]:
    """Maps toward the true class for clean and adversarial inputs, per-sample change measures and their means."""
    clean = attribute(model, x, y, method, seed=seed)
    adv = attribute(model, x_adv, y, method, seed=seed)
    per_sample = {"rank_correlation": rank_correlation(clean, adv).numpy(),
                  "topk_overlap": topk_overlap(clean, adv).numpy()}
    if clean.dim() == 4:
        per_sample["low_freq_clean"] = low_frequency_share(clean).numpy()
        per_sample["low_freq_adv"] = low_frequency_share(adv).numpy()
        per_sample["strokes_clean"] = stroke_share(clean, x).numpy()
        per_sample["strokes_adv"] = stroke_share(adv, x_adv).numpy()
    return {"clean": clean.numpy(), "adv": adv.numpy(),
            "per_sample": per_sample, "summary": summary(clean, adv, x=x, x_adv=x_adv)}


def unit_report(model: nn.Module, layer: str, x: torch.Tensor, y: torch.Tensor, x_adv: torch.Tensor, eps: float,
                norm: str, *, ablate: int = 5, seed: int = 0, num_classes: int | None = None) -> dict[str, Any]:
    """Unit scores from clean vs ``x_adv`` activations, and an ablation of the k most attack-sensitive useful
    units (whose robust accuracy needs a fresh attack on the ablated model, hence ε and norm)."""
    scores = unit_scores(model, layer, x, y, x_adv, num_classes)
    off = scores.nonrobust_useful(ablate)
    study = ablation_study(model, layer, x, y, off, eps=eps, norm=norm, seed=seed)
    most_moved = [int(i) for i in np.argsort(-scores.movement)[:10]]
    clean_maps, adv_maps = unit_maps(model, layer, x), unit_maps(model, layer, x_adv)
    return {"usefulness": scores.usefulness, "robustness": scores.robustness, "movement": scores.movement,
            "quadrant": scores.quadrant(), "ablated_units": off, "ablation": study,
            "clean_act": unit_activations(model, layer, x).numpy(),
            "adv_act": unit_activations(model, layer, x_adv).numpy(),
            # Spatial maps (N×4×H×W) of the 4 most-moved channels, for convolutional layers only.
            "clean_maps": None if clean_maps is None else clean_maps[:, most_moved[:4]].numpy(),
            "adv_maps": None if adv_maps is None else adv_maps[:, most_moved[:4]].numpy(),
            "most_moved": most_moved}
