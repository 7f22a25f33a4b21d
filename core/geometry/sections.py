"""Decision-boundary cross-sections on an adaptive grid, attack paths projected onto the plane, loss surfaces.

Paper: Ortiz-Jimenez et al., Proc. IEEE 2021, https://arxiv.org/abs/2010.09624 (METHODS.md §1b and §1g).
The classifier is evaluated at x + a·û + b·v̂ (see ``planes.py``) for a, b in [−R, R]. The grid is adaptive: a
coarse grid first, then only the cells whose corners disagree about the predicted class (and their neighbours)
are split, level by level, down to the finest resolution. Inside a cell whose four corners agree the class is
taken as constant and the logit margin is interpolated bilinearly (exact for a model that is linear there). A
boundary island smaller than a coarse cell with no corner in it can be missed; ``uniform=True`` evaluates every
point. The plane is not clipped to the pixel range: it shows the function itself.
Example::

    plane = make_plane(model, x, y, "deepfool")
    section = cross_section(model, plane, extent=2.0, resolution=129)
    section.pred      # resolution × resolution predicted classes, rows along b (v̂), columns along a (û)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.attacks import DeepFool, PGD
from core.attacks.base import eval_mode
from core.errors import ConfigError
from core.geometry.planes import Plane

COARSE_CELLS = 16
MAX_LEVELS = 5           # 16·2⁵ + 1 = 513 points per side at most
RESOLUTIONS = tuple(COARSE_CELLS * 2 ** k + 1 for k in range(1, MAX_LEVELS + 1))  # 33, 65, 129, 257, 513
DEFAULT_RESOLUTION = 129
MAX_SURFACE = 101
MAX_PATH_STEPS = 50
_BATCH = 4096


@dataclass
class Section:
    """Predicted class and logit margin over the plane. ``margin`` is f_c(p) − max_{k≠c} f_k(p) for the class c
    the model predicts at x (the origin): its zero level is the boundary of c's region."""

    a: np.ndarray
    b: np.ndarray
    pred: np.ndarray
    margin: np.ndarray
    origin_class: int
    evaluated: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def resolution(self) -> int:
        return len(self.a)

    def distance_along_u(self) -> float:
        """First crossing of the boundary on the b = 0 line in the +û direction (linear interpolation; inf if
        none on the grid)."""
        row = self.margin[len(self.b) // 2]
        centre = len(self.a) // 2
        for i in range(centre, len(self.a) - 1):
            m0, m1 = row[i], row[i + 1]
            if m0 > 0 >= m1:
                return float(self.a[i] + (self.a[i + 1] - self.a[i]) * m0 / (m0 - m1))
        return math.inf


def _levels(resolution: int) -> int:
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {resolution}")
    return RESOLUTIONS.index(resolution) + 1


def capped_resolution(requested: int) -> tuple[int, str | None]:
    """The nearest allowed resolution not above ``requested`` (≥ the smallest), with a note when it changed."""
    if requested in RESOLUTIONS:
        return requested, None
    allowed = [r for r in RESOLUTIONS if r <= requested] or [RESOLUTIONS[0]]
    return allowed[-1], f"resolution {requested} is not available; using {allowed[-1]} points per side"


def _evaluate(model: nn.Module, plane: Plane, a: torch.Tensor, b: torch.Tensor,
              origin_class: int) -> tuple[np.ndarray, np.ndarray]:
    preds, margins = [], []
    with torch.no_grad():
        for start in range(0, len(a), _BATCH):
            logits = model(plane.points(a[start:start + _BATCH], b[start:start + _BATCH])).float()
            own = logits[:, origin_class].clone()
            logits[:, origin_class] = -math.inf
            margins.append((own - logits.max(dim=1).values).cpu())
            logits[:, origin_class] = own
            preds.append(logits.argmax(dim=1).cpu())
    return torch.cat(preds).numpy(), torch.cat(margins).double().numpy()


def _origin_class(model: nn.Module, plane: Plane) -> int:
    with torch.no_grad(), eval_mode(model):
        return int(model(plane.points(torch.zeros(1), torch.zeros(1))).argmax(1))


def cross_section(model: nn.Module, plane: Plane, *, extent: float, resolution: int = DEFAULT_RESOLUTION,
                  uniform: bool = False) -> Section:
    """Classes and margins on a resolution × resolution grid over [−extent, extent]² of the plane."""
    if not math.isfinite(extent) or extent <= 0:
        raise ConfigError(f"the section's extent must be a positive number, got {extent}")
    levels = _levels(resolution)
    started = time.perf_counter()
    n = resolution
    coords = np.linspace(-extent, extent, n)
    coords_t = torch.from_numpy(coords)
    pred = np.full((n, n), -1, dtype=np.int64)
    margin = np.full((n, n), np.nan)
    with eval_mode(model):
        origin_class = _origin_class(model, plane)

        def run(rows: np.ndarray, cols: np.ndarray) -> None:
            p, m = _evaluate(model, plane, coords_t[cols], coords_t[rows], origin_class)
            pred[rows, cols], margin[rows, cols] = p, m

        if uniform:
            rr, cc = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
            run(rr.ravel(), cc.ravel())
            return Section(coords, coords.copy(), pred, margin, origin_class, n * n,
                           time.perf_counter() - started)
        step = 2 ** levels
        nodes = np.arange(0, n, step)
        rr, cc = np.meshgrid(nodes, nodes, indexing="ij")
        run(rr.ravel(), cc.ravel())
        uniform_cells: list[tuple[int, np.ndarray, np.ndarray]] = []
        while step > 1:
            starts = np.arange(0, n - 1, step)
            r0, c0 = np.meshgrid(starts, starts, indexing="ij")
            corners = np.stack([pred[r0, c0], pred[r0 + step, c0], pred[r0, c0 + step], pred[r0 + step, c0 + step]])
            # Cells with an unknown corner lie inside a uniform cell of a coarser level: they are done.
            known = (corners >= 0).all(axis=0)
            mixed = known & (corners != corners[0]).any(axis=0)
            # Split the neighbours of mixed cells too, so that the boundary contour is drawn from real values.
            grown = mixed.copy()
            grown[1:, :] |= mixed[:-1, :]
            grown[:-1, :] |= mixed[1:, :]
            grown[:, 1:] |= mixed[:, :-1]
            grown[:, :-1] |= mixed[:, 1:]
            grown &= known
            uniform_cells.append((step, r0[known & ~grown], c0[known & ~grown]))
            half = step // 2
            offsets = np.array([(0, half), (half, 0), (half, half), (half, step), (step, half)])
            rows = (r0[grown][:, None] + offsets[None, :, 0]).ravel()
            cols = (c0[grown][:, None] + offsets[None, :, 1]).ravel()
            todo = np.unique(rows * n + cols)
            todo = todo[pred.ravel()[todo] < 0]
            if len(todo):
                run(todo // n, todo % n)
            step = half
    evaluated = int((pred >= 0).sum())
    for size, rows0, cols0 in uniform_cells:
        _fill(pred, margin, size, rows0, cols0)
    return Section(coords, coords.copy(), pred, margin, origin_class, evaluated, time.perf_counter() - started)


def _fill(pred: np.ndarray, margin: np.ndarray, size: int, rows0: np.ndarray, cols0: np.ndarray) -> None:
    """Fill the unknown points of uniform cells: their class, and the bilinear interpolation of the margin."""
    if len(rows0) == 0:
        return
    t = np.arange(size + 1) / size
    ti, tj = np.meshgrid(t, t, indexing="ij")
    rows = rows0[:, None, None] + np.arange(size + 1)[None, :, None]
    cols = cols0[:, None, None] + np.arange(size + 1)[None, None, :]
    rows, cols = np.broadcast_arrays(rows, cols)
    m00, m10 = margin[rows0, cols0], margin[rows0 + size, cols0]
    m01, m11 = margin[rows0, cols0 + size], margin[rows0 + size, cols0 + size]
    values = ((1 - ti) * (1 - tj) * m00[:, None, None] + ti * (1 - tj) * m10[:, None, None]
              + (1 - ti) * tj * m01[:, None, None] + ti * tj * m11[:, None, None])
    unknown = pred[rows, cols] < 0
    pred[rows[unknown], cols[unknown]] = np.broadcast_to(pred[rows0, cols0][:, None, None], rows.shape)[unknown]
    margin[rows[unknown], cols[unknown]] = values[unknown]


@dataclass
class AttackPath:
    """Iterates x₀ = x, x₁, … of an attack, as plane coordinates and their distance off the plane."""

    ab: np.ndarray
    off_plane: np.ndarray
    preds: list[int]
    attack: str


def attack_path(model: nn.Module, plane: Plane, y: int, *, attack: str, eps: float, norm: str,
                steps: int = 10) -> AttackPath:
    """The path of PGD (no random start, fixed step 2.5·ε/steps) or of ℓ2/ℓ∞ DeepFool, projected on the plane.

    Each iterate k is the attack run for k steps (the step size does not depend on the step count, so these are
    the prefixes of one path): the real attack code, at the price of steps²/2 gradient evaluations.
    """
    if attack not in ("pgd", "deepfool"):
        raise ConfigError(f"the path is drawn for 'pgd' or 'deepfool', got {attack!r}")
    if not 1 <= steps <= MAX_PATH_STEPS:
        raise ConfigError(f"path steps must be between 1 and {MAX_PATH_STEPS}, got {steps}")
    if not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f"ε must be a positive number, got {eps}")
    x = plane.origin.reshape(1, *plane.shape)
    target = torch.tensor([y], device=x.device)
    iterates = [x]
    preds = []
    with torch.no_grad(), eval_mode(model):
        preds.append(int(model(x).argmax(1)))
    for k in range(1, steps + 1):
        if attack == "pgd":
            result = PGD(norm=norm, steps=k, step_size=2.5 * eps / steps, random_start=False)(model, x, target,
                                                                                              eps=eps)
        else:
            result = DeepFool(norm=norm, steps=k)(model, x, target, eps=1e3)
        iterates.append(result.x_adv)
        preds.append(int(result.logits_adv.argmax(1)))
        if attack == "deepfool" and preds[-1] != preds[0]:
            break
    ab, off = plane.coordinates(torch.cat(iterates))
    return AttackPath(ab=ab, off_plane=off, preds=preds, attack=attack)


@dataclass
class LossSurface:
    a: np.ndarray
    b: np.ndarray
    loss: np.ndarray
    seconds: float


def loss_surface(model: nn.Module, plane: Plane, y: int, *, extent: float, resolution: int = 41) -> LossSurface:
    """Cross-entropy loss for class y over [−extent, extent]² of the plane (METHODS.md §1g), a uniform grid."""
    if not math.isfinite(extent) or extent <= 0:
        raise ConfigError(f"the surface's extent must be a positive number, got {extent}")
    if not 5 <= resolution <= MAX_SURFACE:
        raise ConfigError(f"the loss surface takes 5–{MAX_SURFACE} points per side, got {resolution}")
    started = time.perf_counter()
    coords = np.linspace(-extent, extent, resolution)
    bb, aa = np.meshgrid(coords, coords, indexing="ij")
    loss = _losses(model, plane, y, aa.ravel(), bb.ravel()).reshape(resolution, resolution)
    return LossSurface(coords, coords.copy(), loss, time.perf_counter() - started)


def _losses(model: nn.Module, plane: Plane, y: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cross-entropy for class y at the plane's points (a, b), in batches."""
    a_t, b_t = torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(np.ascontiguousarray(b))
    losses = []
    with torch.no_grad(), eval_mode(model):
        for start in range(0, len(a_t), _BATCH):
            logits = model(plane.points(a_t[start:start + _BATCH], b_t[start:start + _BATCH])).float()
            target = torch.full((len(logits),), y, dtype=torch.long, device=logits.device)
            losses.append(nn.functional.cross_entropy(logits, target, reduction="none").cpu())
    return torch.cat(losses).double().numpy()


@dataclass
class BallLoss:
    """The cross-entropy at x and its largest value over the plane's section of the ε-ball (METHODS.md §1g): how
    much the loss rises inside the threat model on this plane, whatever the surface does beyond it."""

    at_x: float
    highest: float

    @property
    def rise(self) -> float:
        return self.highest - self.at_x


def ball_loss(model: nn.Module, plane: Plane, y: int, ball: np.ndarray, *, rings: int = 8,
              per_edge: int = 24) -> BallLoss:
    """Loss at x and its maximum over the ε-ball's section ``ball`` (closed vertices from ``ball_section``), sampled
    on the outline and on ``rings`` shrunken copies of it (the section is convex and holds x, so the copies stay
    inside), ``per_edge`` points per edge."""
    if len(ball) < 3 or not np.isfinite(ball).all():
        raise ConfigError("the ε-ball's section must be a closed polygon of finite vertices")
    start, end = ball[:-1], ball[1:]
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)[None, :, None]
    outline = (start[:, None, :] + t * (end - start)[:, None, :]).reshape(-1, 2)
    scales = np.linspace(0.0, 1.0, rings + 1)
    ab = np.concatenate([[[0.0, 0.0]], *(s * outline for s in scales[1:])])
    loss = _losses(model, plane, y, ab[:, 0], ab[:, 1])
    return BallLoss(at_x=float(loss[0]), highest=float(loss.max()))
