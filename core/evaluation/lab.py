"""The Attack Lab's engine: one example attacked at a whole ε grid in one batched call.

The example is repeated once per grid point and attacked with a per-sample ε, so a single call of the attack gives
the adversarial image, the probabilities and the loss trace at every ε. A slider then only indexes into the result.
The smallest ε that flips the example comes from a minimal-norm attack (FMN where registered, else DeepFool).
"""

from __future__ import annotations

import math
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

# The Attack Lab refuses a sweep whose estimated cost, summed over the models it attacks, exceeds this many
# gradient steps per grid point. The whole grid is one batch, so a step costs about the same for 1 or 41 points:
# on the 2-core lecture laptop PGD-1000 on both shipped digits models (exactly this budget) takes ~15–30 s.
LAB_STEP_BUDGET = 2000
# A Square query is one forward pass on the points still robust, no backward: about a quarter of a gradient step.
SQUARE_QUERY_COST = 0.25
# Grid steps a slider can show as short decimals; the first that puts the model's ε on the grid wins.
NICE_STEPS = (0.001, 0.002, 0.0025, 0.005, 0.01, 0.02, 0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0)


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
    # G: the grid point whose attack result is shown at each ε; itself unless the attack flipped the example at a
    # smaller ε but not at this one (see kept_flips).
    source: np.ndarray | None = None

    def carried(self, index: int) -> int | None:
        """The smaller grid point whose flip is shown at ``index`` (None when its own result is shown)."""
        if self.source is None or int(self.source[index]) == index:
            return None
        return int(self.source[index])

    def flip_index(self) -> int | None:
        """Index of the smallest grid ε at which the prediction is no longer the true label (None: never)."""
        flipped = np.nonzero(self.pred_adv != self.y)[0]
        return int(flipped[0]) if len(flipped) else None


def sweep_cost(attack_name: str, attack_kwargs: dict[str, Any]) -> float:
    """Gradient steps (forward + backward on the whole grid batch) that one sweep of this attack takes: steps ×
    restarts × targets × search steps as the attack's config says; a Square query counts SQUARE_QUERY_COST."""
    config = make_attack(attack_name, **attack_kwargs).config
    if attack_name == "fgsm":
        return 1.0
    if attack_name == "square":
        return config.queries * config.restarts * SQUARE_QUERY_COST
    if attack_name == "quick":  # APGD-CE, then targeted APGD-DLR against each of the top classes
        return float(config.steps + config.targets * config.targeted_steps)
    runs = max(getattr(config, "targets", 0), 1)
    return float(config.steps * getattr(config, "restarts", 1) * runs * getattr(config, "search_steps", 1))


def lab_eps_grid(top: float, model_eps: float | None, max_points: int = 41) -> tuple[float, ...]:
    """An evenly spaced ε grid from 0 to about ``top`` with at most ``max_points`` points that contains
    ``model_eps`` (when given and inside the range), so a slider can stop exactly on the model's own ε.

    The step is the smallest short decimal (0.01, 0.025…) ≥ top / (max_points − 1) that divides ``model_eps``;
    failing that, ``model_eps`` divided into equal parts; without a model ε, top / (max_points − 1).
    """
    if not (top > 0 and math.isfinite(top)) or max_points < 2:
        raise ConfigError(f"an ε grid needs a positive top and at least 2 points, got top={top!r}, "
                          f"points={max_points!r}")
    finest = top / (max_points - 1)
    step = finest
    if model_eps is not None and 0 < model_eps <= top:
        fits = [s for s in NICE_STEPS if s >= finest * (1 - 1e-9) and abs(model_eps / s - round(model_eps / s)) < 1e-6]
        step = fits[0] if fits else model_eps / max(math.floor(model_eps / finest + 1e-9), 1)
    points = min(int(math.floor(top / step + 1e-6)) + 1, max_points)
    return tuple(float(v) for v in np.round(np.arange(points) * step, 6))


def kept_flips(flipped: np.ndarray) -> np.ndarray:
    """For each grid point, the grid point whose result to show: itself, or, where the attack did not flip the
    example but did at a smaller ε, the largest such ε. An adversarial example inside a smaller ball lies inside
    every larger one, so "fooled at 0.12, correct at 0.13" only says the attack missed at 0.13 (an FGSM step that
    overshoots, a PGD run that stalls): the worst case found up to each ε is shown, and the curve cannot go back."""
    source = np.arange(len(flipped))
    last = -1
    for i, hit in enumerate(np.asarray(flipped, dtype=bool)):
        if hit:
            last = i
        elif last >= 0:
            source[i] = last
    return source


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
    pred = result.logits_adv.argmax(1)
    # Only for an example the model gets right: otherwise there is no flip to keep.
    source = kept_flips((pred != int(y)).cpu().numpy()) if int(probs_clean.argmax()) == int(y) \
        else np.arange(grid_size)
    pick = torch.as_tensor(source, device=device)
    source.setflags(write=False)
    return EpsSweep(eps_grid=_frozen(eps_t), x=_frozen(x), x_adv=_frozen(result.x_adv[pick]),
                    probs_clean=_frozen(probs_clean),
                    probs_adv=_frozen(torch.softmax(result.logits_adv[pick], dim=1)), pred_adv=_frozen(pred[pick]),
                    loss_trace=_frozen(trace[:, pick.to(trace.device)]), y=int(y),
                    pred_clean=int(probs_clean.argmax()), seconds=seconds, source=source)


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


def to_8bit(x: np.ndarray, x_adv: np.ndarray, eps: float, norm: str) -> tuple[np.ndarray, float]:
    """``x_adv`` (values in [0, 1]) as 8-bit levels that stay inside the ε-ball around ``x``, and the distance
    ‖levels/255 − x‖ they keep.

    Rounding each pixel to the nearest level moves it by up to 0.5/255 ≈ 0.002, so a PNG of a perturbation at the
    budget's edge left the ball: an exported ℓ∞ example at ε = 0.1 sat at 0.102. Here a pixel keeps its nearest
    level unless that breaks the budget. In ℓ∞ the level is clipped into the ball (it has one whenever 2ε ≥ 1/255 or
    ``x`` is itself on a level). In ℓ2 the pixels whose other neighbouring level is nearer to ``x`` switch to it,
    those that shrink the distance most first, until the distance is at most ε; if even all of them do not get
    there (a perturbation far smaller than a level, on an ``x`` off the levels), the returned distance says so.
    """
    if norm not in ("linf", "l2"):
        raise ConfigError(f"to_8bit: norm must be 'linf' or 'l2', not {norm!r}")
    x = np.asarray(x, dtype=np.float64)
    scaled = np.clip(np.asarray(x_adv, dtype=np.float64), 0.0, 1.0) * 255
    levels = np.rint(scaled)
    if norm == "linf":
        low = np.maximum(np.ceil((x - eps) * 255 - 1e-9), 0)
        high = np.minimum(np.floor((x + eps) * 255 + 1e-9), 255)
        inside = np.clip(levels, low, high)
        # Where the ball holds no level, the level nearest to x.
        levels = np.where(low <= high, inside, np.clip(np.rint(x * 255), 0, 255))
        return levels.astype(np.uint8), float(np.abs(levels / 255 - x).max(initial=0.0))
    other = np.where(levels > scaled, np.floor(scaled), np.ceil(scaled))
    gain = (levels / 255 - x) ** 2 - (other / 255 - x) ** 2  # > 0: the other level is nearer to x
    excess = float(((levels / 255 - x) ** 2).sum()) - eps ** 2
    if excess > 0:
        order = np.argsort(-gain, axis=None)
        helpful = order[gain.flat[order] > 0]
        # The fewest switches, largest gain first, that bring the squared distance down to ε² (all if none do).
        taken = np.searchsorted(np.cumsum(gain.flat[helpful]), excess - 1e-15) + 1
        switch = helpful[:taken]
        levels.flat[switch] = other.flat[switch]
    return levels.astype(np.uint8), float(np.sqrt(((levels / 255 - x) ** 2).sum()))
