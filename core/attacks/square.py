"""Square Attack (ℓ∞): a score-based black-box attack by random square-shaped updates, no gradients at all.

Paper: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient black-box adversarial attack via
random search", ECCV 2020, https://arxiv.org/abs/1912.00049 — as in the authors' code: start from vertical stripes
x + ε·(±1 per column and channel); at every query each still-robust point draws a square window (side
round(√(p·H·W)), at least 1, at most min(H, W) − 1) at a random position and sets it to x ± ε (one random sign per
channel); the candidate is kept when it lowers the margin loss z_y − max_{j≠y} z_j. The window fraction p starts at
``p_init`` and is halved at 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 queries (the schedule
rescaled to ``queries``). A point stops once its margin is ≤ 0. The only departure: window positions may also
touch the last row and column (the authors' ``randint(0, h − s)`` never starts a window at h − s).
Inputs that are not images are viewed as N×1×1×D (windows become runs of round(p·D) coordinates) or, for
N×P×d patches, as N×1×P×d. All randomness comes from the given ``torch.Generator``.
Threat model: ℓ∞ ball of radius ε (only ℓ∞: the ℓ2 variant is not implemented and other norms are refused),
clipped to the data bounds. A black-box attack beating the white-box ones on some point is a gradient-masking
red flag, which is why the full ensemble runs it.

Arguments (keyword-only config): ``norm`` ("linf"), ``queries`` (1000 per restart, the stripe start included),
``p_init`` (0.8), ``restarts`` (1; later restarts run only on points still robust).
Shapes: x N×…, y N; ``loss_trace`` is at most queries×N, the best margin after every query of the first restart
(rows stop early once every point is fooled). Example::

    result = Square(queries=1000)(model, x, y, eps=0.1, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from core.attacks.base import Attack, AttackConfig, Bounds, check_int, check_positive
from core.attacks.gradient import clip_to
from core.errors import ConfigError

# Fractions of the 10,000-query budget after which p is halved again (Andriushchenko et al., p_selection).
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass(frozen=True, kw_only=True)
class SquareConfig(AttackConfig):
    queries: int = 1000
    p_init: float = 0.8
    restarts: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.norm != "linf":
            raise ConfigError(f"Square is implemented for norm 'linf' only, got {self.norm!r}")
        check_int("queries", self.queries)
        check_int("restarts", self.restarts)
        check_positive("p_init", self.p_init)
        if self.p_init > 1:
            raise ConfigError(f"p_init is a fraction of the image and must be ≤ 1, got {self.p_init!r}")


def p_schedule(i: int, queries: int, p_init: float) -> float:
    """Window fraction at query ``i``: p_init halved at every mark passed, marks rescaled to ``queries``."""
    at = int(i / queries * 10000)
    return p_init / 2 ** sum(at > mark for mark in _HALVINGS)


def window_size(p: float, h: int, w: int) -> tuple[int, int]:
    """(height, width) of the window covering a fraction p of an h×w image; runs along w for 1-row inputs."""
    if h == 1:
        return 1, min(max(round(p * w), 1), max(w - 1, 1))
    side = min(max(round(math.sqrt(p * h * w)), 1), max(min(h, w) - 1, 1))
    return side, side


def as_images(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 2:
        return x.reshape(x.shape[0], 1, 1, x.shape[1])
    if x.dim() == 3:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], x.shape[1], x.shape[2], -1)


def margin(model: nn.Module, img: torch.Tensor, y: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """z_y − max_{j≠y} z_j from the model's outputs only (the attack sees no gradient)."""
    with torch.no_grad():
        logits = model(img.reshape(-1, *shape[1:]))
    others = logits.scatter(1, y[:, None], float("-inf"))
    return logits.gather(1, y[:, None]).squeeze(1) - others.amax(dim=1)


class Square(Attack):
    name = "square"
    config_class = SquareConfig

    def _signs(self, shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
        # Drawn on the generator's device, then moved: the same seed gives the same signs on CPU and GPU.
        bits = torch.randint(0, 2, shape, generator=generator, device=generator.device)
        return (bits * 2 - 1).to(device=like.device, dtype=like.dtype)

    def _windows(self, n: int, p: float, h: int, w: int, generator: torch.Generator,
                 device: torch.device) -> torch.Tensor:
        """A boolean N×1×H×W mask with one window at a random position per point."""
        sh, sw = window_size(p, h, w)
        top = torch.randint(0, h - sh + 1, (n, 1), generator=generator, device=generator.device).to(device)
        left = torch.randint(0, w - sw + 1, (n, 1), generator=generator, device=generator.device).to(device)
        rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
        in_rows = (rows >= top) & (rows < top + sh)
        in_cols = (cols >= left) & (cols < left + sw)
        return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)

    def _run(self, model: nn.Module, img: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
             generator: torch.Generator, bounds: Bounds, shape: torch.Size) -> tuple[torch.Tensor, ...]:
        """One restart: (best images, best margins, trace of best margins per query)."""
        n, c, h, w = img.shape
        e = eps.view(-1, 1, 1, 1).to(img.dtype)
        x_best = clip_to(img + e * self._signs((n, c, 1, w), generator, img), bounds)
        best = margin(model, x_best, y, shape)
        trace = [best.clone()]
        for i in range(1, self.config.queries):
            active = torch.nonzero(best > 0).flatten()
            if len(active) == 0:
                break
            mask = self._windows(len(active), p_schedule(i - 1, self.config.queries, self.config.p_init), h, w,
                                 generator, img.device)
            corner = clip_to(img[active] + e[active] * self._signs((len(active), c, 1, 1), generator, img), bounds)
            candidate = torch.where(mask, corner, x_best[active])
            cand_margin = margin(model, candidate, y[active], shape)
            better = cand_margin < best[active]
            x_best[active[better]] = candidate[better]
            best[active[better]] = cand_margin[better]
            trace.append(best.clone())
        return x_best, best, torch.stack(trace)

    def _perturb(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor,
        generator: torch.Generator, bounds: Bounds,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        img = as_images(x)
        x_best, best, trace = self._run(model, img, y, eps, generator, bounds, x.shape)
        for _ in range(self.config.restarts - 1):
            todo = torch.nonzero(best > 0).flatten()
            if len(todo) == 0:
                break
            cand, cand_best, _ = self._run(model, img[todo], y[todo], eps[todo], generator, bounds, x.shape)
            better = cand_best < best[todo]
            x_best[todo[better]] = cand[better]
            best[todo[better]] = cand_best[better]
        return x_best.reshape(x.shape), trace
