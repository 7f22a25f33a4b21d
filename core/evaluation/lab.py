"""The Attack Lab's engine: one example attacked at a whole ε grid in one batched call.

The example is repeated once per grid point and attacked with a per-sample ε, so a single call of the attack gives
the adversarial image, the probabilities and the loss trace at every ε. A slider then only indexes into the result.
The smallest ε that flips the example comes from a minimal-norm attack (FMN where registered, else DeepFool).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core.attacks import ATTACKS, make_attack
from core.errors import ConfigError
from core.training.config import MAX_EPS
from core.utils import make_generator

Bounds = tuple[float, float] | None


@dataclass(frozen=True)
class EpsSweep:
    """Everything the Attack Lab shows for one example, at every ε of the grid (arrays are read-only views)."""

    eps_grid: np.ndarray        # G
    x: np.ndarray               # the clean input, input shape
    x_adv: np.ndarray           # G × input shape
    probs_clean: np.ndarray     # K
    probs_adv: np.ndarray       # G × K
    pred_adv: np.ndarray        # G
    loss_trace: np.ndarray      # steps × G (empty for single-step or minimal-norm attacks without a trace)
    y: int
    pred_clean: int
    seconds: float

    def flip_index(self) -> int | None:
        """Index of the smallest grid ε at which the prediction is no longer the true label (None: never)."""
        flipped = np.nonzero(self.pred_adv != self.y)[0]
        return int(flipped[0]) if len(flipped) else None


def _frozen(array: torch.Tensor) -> np.ndarray:
    out = array.detach().cpu().numpy()
    out.setflags(write=False)
    return out


def sweep_example(model: nn.Module, x: torch.Tensor, y: int, attack_name: str, attack_kwargs: dict[str, Any],
                  eps_grid: np.ndarray | list[float], *, seed: int = 0, bounds: Bounds = (0.0, 1.0)) -> EpsSweep:
    """Attack one example at every ε of ``eps_grid`` in one batched call."""
    eps_t = torch.as_tensor(np.asarray(eps_grid, dtype=np.float32))
    if eps_t.dim() != 1 or len(eps_t) == 0:
        raise ConfigError("the ε grid must be a non-empty list of numbers")
    attack = make_attack(attack_name, **attack_kwargs)
    norm = attack.config.norm
    if float(eps_t.max()) > MAX_EPS[norm]:
        raise ConfigError(f"ε = {float(eps_t.max()):g} is beyond the {norm} limit {MAX_EPS[norm]:g}")
    device = next(model.parameters()).device
    grid_size = len(eps_t)
    xs = x.to(device).unsqueeze(0).expand(grid_size, *x.shape).contiguous()
    ys = torch.full((grid_size,), int(y), dtype=torch.long, device=device)
    start = time.perf_counter()
    # One generator per example and attack, the same for every grid point: moving ε changes only ε.
    result = attack(model, xs, ys, eps_t.to(device), bounds=bounds,
                    generator=make_generator(seed, "lab", attack_name, sorted(attack_kwargs.items())))
    with torch.no_grad():
        was_training = model.training
        model.eval()
        probs_clean = torch.softmax(model(xs[:1]), dim=1)[0]
        model.train(was_training)
    seconds = time.perf_counter() - start
    trace = result.loss_trace if result.loss_trace.dim() == 2 else torch.empty(0, grid_size)
    return EpsSweep(eps_grid=_frozen(eps_t), x=_frozen(x), x_adv=_frozen(result.x_adv),
                    probs_clean=_frozen(probs_clean), probs_adv=_frozen(torch.softmax(result.logits_adv, dim=1)),
                    pred_adv=_frozen(result.logits_adv.argmax(1)), loss_trace=_frozen(trace), y=int(y),
                    pred_clean=int(probs_clean.argmax()), seconds=seconds)


def minimal_flip(model: nn.Module, x: torch.Tensor, y: int, norm: str, *, seed: int = 0,
                 bounds: Bounds = (0.0, 1.0)) -> dict[str, Any]:
    """The smallest perturbation found that flips the example (FMN if available, else DeepFool), in ``norm``."""
    if norm not in ("linf", "l2"):
        return {"eps": None, "method": None, "pred": None, "note": f"no minimal-norm attack for {norm}"}
    device = next(model.parameters()).device
    method = "fmn" if "fmn" in ATTACKS else "deepfool"
    attack = make_attack(method, norm=norm)
    xs, ys = x.to(device).unsqueeze(0), torch.tensor([int(y)], device=device)
    result = attack(model, xs, ys, MAX_EPS[norm], bounds=bounds, generator=make_generator(seed, "lab-min", norm))
    if not bool(result.success[0]):
        return {"eps": None, "method": method, "pred": None, "note": "no flip found inside the ε limit"}
    return {"eps": float(result.norms[norm][0]), "method": method, "pred": int(result.logits_adv.argmax(1)[0]),
            "note": ""}

