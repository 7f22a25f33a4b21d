"""The Langevin panel: DALE's perturbation distribution around one point, next to PGD's single worst case.

METHODS.md §2 (Robey et al., NeurIPS 2021): DALE trains on samples of λ(δ|x,y) ∝ [ℓ(f(x+δ), y) − t]₊ drawn
by Langevin steps δ ← Π_Δ[δ + η·sign(∇_δ ℓ_pert + c·Laplace(0, 1))]; as the noise vanishes this is PGD.
For one point x this module computes, in input coordinates of the 2-D plane:

* the loss heatmap CE(f(x + δ), y) on a grid over the ε-ball (outside the ball or outside [0, 1]²: NaN),
  and the margin z_y − max_{k≠y} z_k on the same grid (its zero line is the decision boundary);
* ``samples`` independent Langevin chains started at x, run by :class:`core.attacks.Langevin` (Laplacian
  noise inside the sign, as the authors' code) on ``samples`` copies of x;
* PGD's point: :class:`core.attacks.PGD` started at x (no random start) with the same steps and step size,
  then finished by a compass search of the same cross-entropy (see :func:`climb_to_local_max`), so the star is a
  local maximum of the loss the heatmap shows. Fixed signed steps alone need not end on one: across a kink of a
  ReLU network's loss a gradient component flips sign, so PGD zigzags over the kink between two points and its
  last iterate can be the lower one (on the default moons run, point 0: loss 0.205 while one step away it is
  0.228, and the ball's only local maximum, its corner, has 0.512). The loss is not concave, so a sample can
  still beat a local maximum elsewhere in the ball; ``samples_above_pgd`` says how many do.

Temperature. The sampler's noise scale c is set from the temperature T as c = T · ḡ, where ḡ is the mean
absolute gradient the sampler sees at x (of the batch mean of ℓ_pert over the ``samples`` copies, so ḡ already
carries the 1/``samples`` factor of the authors' batch-mean ascent). T is therefore noise measured in units of
the gradient, whatever the batch size or how steep the loss is at x. T ≪ 1: the sign is almost always the
gradient's and every chain follows PGD. T = 1: a coordinate with an average gradient steps against it with
probability ½·e⁻¹ ≈ 0.18, and the chains spread over the high-loss region. T ≫ 1: a random walk, close to data
augmentation. ``last_noise_to_grad`` of the sampler (mean |noise| ÷ mean |gradient| over the run) stays near T.
At T = 0 (c = 0, and the chains start at δ = 0) every sample is exactly fixed-step PGD's last iterate
(``fixed_step_point``): the gradients of log(1 − p_y) and of the cross-entropy −log p_y are positive multiples of
each other, so their signs agree step by step. That is the star unless the compass search climbed further.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.attacks import PGD, Langevin
from core.attacks.base import input_gradient
from core.attacks.langevin import log_one_minus_p
from core.attacks.norms import project
from core.errors import ConfigError
from core.utils import make_generator

MAX_SAMPLES = 1000
MAX_PANEL_STEPS = 100
MAX_PANEL_GRID = 121
MAX_TEMPERATURE = 100.0
# The compass search stops once its step is below this share of ε (a local maximum to that resolution) or after
# this many rounds (each one forward pass of 8 points).
CLIMB_RESOLUTION = 1e-4
CLIMB_MAX_ROUNDS = 500
# Axes and diagonals: the diagonals are ℓ∞ PGD's signed steps, the axes move along a kink that they zigzag across.
_COMPASS = torch.tensor([[1, 0], [-1, 0], [0, 1], [0, -1], [1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=torch.float32)


@dataclass(frozen=True)
class LangevinPanel:
    """Everything the panel draws for one point (numpy, input coordinates)."""

    x: np.ndarray  # (2,)
    y: int
    eps: float
    norm: str
    temperature: float
    noise_scale: float  # c = T · ḡ
    axis_x: np.ndarray  # heatmap columns
    axis_y: np.ndarray  # heatmap rows
    loss: np.ndarray  # rows × columns, NaN outside the ball or [0, 1]²
    margin: np.ndarray  # z_y − max_{k≠y} z_k on the same grid (< 0: misclassified)
    samples: np.ndarray  # samples × 2
    sample_loss: np.ndarray
    sample_fooled: np.ndarray
    pgd_point: np.ndarray  # (2,) a local maximum of ``loss``: fixed-step PGD finished by a compass search
    pgd_loss: float
    pgd_fooled: bool
    noise_to_grad: float
    fixed_step_point: np.ndarray  # (2,) fixed-step PGD's last iterate, where every chain ends at T = 0
    fixed_step_loss: float
    step_size: float  # η of every Langevin (and PGD) step

    @property
    def spread(self) -> float:
        """Mean distance of the samples from PGD's point (0 at T = 0)."""
        return float(np.linalg.norm(self.samples - self.pgd_point, axis=1).mean())

    @property
    def samples_above_pgd(self) -> float:
        """Share of the samples whose loss beats PGD's point: they found a higher peak than PGD climbed."""
        return float((self.sample_loss > self.pgd_loss * (1 + 1e-5) + 1e-7).mean())


def _check(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low:g} and {high:g}, got {value!r}")


def ball_grid(x: np.ndarray, eps: float, norm: str, resolution: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column and row coordinates of a grid over the ε-ball's bounding box, and a mask of the cells inside
    both the ball and [0, 1]²."""
    axis_x = np.linspace(x[0] - eps, x[0] + eps, resolution, dtype=np.float32)
    axis_y = np.linspace(x[1] - eps, x[1] + eps, resolution, dtype=np.float32)
    dx, dy = np.meshgrid(axis_x - x[0], axis_y - x[1])
    inside = np.hypot(dx, dy) <= eps * (1 + 1e-6) if norm == "l2" else np.ones_like(dx, dtype=bool)
    xx, yy = np.meshgrid(axis_x, axis_y)
    inside &= (xx >= 0) & (xx <= 1) & (yy >= 0) & (yy <= 1)
    return axis_x, axis_y, inside


@torch.no_grad()
def _loss_and_margin(model: nn.Module, axis_x: np.ndarray, axis_y: np.ndarray, y: int) -> tuple[np.ndarray, ...]:
    xx, yy = np.meshgrid(axis_x, axis_y)
    points = torch.from_numpy(np.stack([xx.ravel(), yy.ravel()], axis=1))
    logits = model(points)
    labels = torch.full((len(points),), y, dtype=torch.int64)
    loss = F.cross_entropy(logits, labels, reduction="none")
    others = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
    margin = logits[:, y] - others
    return loss.reshape(xx.shape).numpy(), margin.reshape(xx.shape).numpy()


@torch.no_grad()
def climb_to_local_max(model: nn.Module, x: torch.Tensor, y: int, start: torch.Tensor, *, eps: float, norm: str,
                       step: float) -> tuple[torch.Tensor, float]:
    """(point, loss): a local maximum of CE(f(·), y) over the ε-ball around ``x`` (and [0, 1]²), from ``start``.

    A compass search: try the 8 moves of size ``step`` along the axes and diagonals (projected into the ball),
    take the best if it raises the loss, else halve the step; stop below ``CLIMB_RESOLUTION``·ε. It never lowers
    the loss, and where it stops no move of that size in those directions raises it.
    """
    labels = torch.full((len(_COMPASS),), y, dtype=torch.int64)
    best = start.reshape(2).clone()
    best_loss = float(F.cross_entropy(model(best[None]), labels[:1]))
    eps_t = torch.full((len(_COMPASS),), eps)
    for _ in range(CLIMB_MAX_ROUNDS):
        if step < CLIMB_RESOLUTION * eps:
            break
        moves = (x + project(best + step * _COMPASS - x, eps_t, norm)).clamp(0.0, 1.0)
        losses = F.cross_entropy(model(moves), labels, reduction="none")
        top = int(losses.argmax())
        if float(losses[top]) > best_loss:
            best, best_loss = moves[top], float(losses[top])
        else:
            step /= 2
    return best, best_loss


def noise_scale_for(model: nn.Module, x: torch.Tensor, y: int, temperature: float, samples: int) -> float:
    """c = T · ḡ: ḡ is the mean |∇_δ| of the batch-mean ℓ_pert over ``samples`` copies of x, at δ = 0."""
    if temperature == 0:
        return 0.0
    label = torch.tensor([y])
    _, grad = input_gradient(lambda v: log_one_minus_p(model(v), label), x[None])
    mean_grad = float(grad.abs().mean()) / samples
    # A flat loss (saturated softmax) has no gradient: any positive noise then gives a random walk.
    return temperature * max(mean_grad, 1e-12)


def langevin_panel(model: nn.Module, x: torch.Tensor, y: int, *, eps: float, norm: str = "linf",
                   temperature: float = 1.0, samples: int = 200, steps: int = 40, step_size: float | None = None,
                   resolution: int = 61, seed: int = 0) -> LangevinPanel:
    """DALE's Langevin samples at temperature T and PGD's point for the point ``x`` (shape (2,)) of class ``y``.

    ``steps`` and ``step_size`` (None → ε/10, so a chain can cross the ball twice) are shared by the
    sampler and by PGD, which is what makes T = 0 give PGD's point exactly. Raises ConfigError on bad values.
    """
    _check("eps", eps, 1e-6, 1.0)
    _check("temperature T", temperature, 0.0, MAX_TEMPERATURE)
    _check("samples", samples, 1, MAX_SAMPLES)
    _check("steps", steps, 1, MAX_PANEL_STEPS)
    _check("resolution", resolution, 5, MAX_PANEL_GRID)
    if x.shape != (2,):
        raise ConfigError(f"the Langevin panel needs one 2-D point, got shape {tuple(x.shape)}")
    model.eval()
    step = eps / 10 if step_size is None else step_size
    c = noise_scale_for(model, x, y, temperature, samples)
    sampler = Langevin(norm=norm, steps=steps, step_size=step, noise="laplacian", noise_scale=c, init_scale=0.0)
    copies, labels = x.expand(samples, 2).clone(), torch.full((samples,), y, dtype=torch.int64)
    chains = sampler(model, copies, labels, eps, generator=make_generator(seed, "playground-langevin"))
    pgd = PGD(norm=norm, steps=steps, step_size=step, random_start=False)(model, x[None], labels[:1], eps)
    pgd_point, pgd_loss = climb_to_local_max(model, x, y, pgd.x_adv[0], eps=eps, norm=norm, step=step)
    x_np = x.numpy()
    axis_x, axis_y, inside = ball_grid(x_np, eps, norm, int(resolution))
    loss, margin = _loss_and_margin(model, axis_x, axis_y, y)
    with torch.no_grad():
        sample_loss = F.cross_entropy(chains.logits_adv, labels, reduction="none").numpy()
        fixed_step_loss = float(F.cross_entropy(pgd.logits_adv, labels[:1]))
        pgd_fooled = bool(model(pgd_point[None]).argmax(1)[0] != y)
    return LangevinPanel(
        x=x_np, y=y, eps=eps, norm=norm, temperature=temperature, noise_scale=c, axis_x=axis_x, axis_y=axis_y,
        loss=np.where(inside, loss, np.nan), margin=np.where(inside, margin, np.nan),
        samples=chains.x_adv.numpy(), sample_loss=sample_loss, sample_fooled=chains.success.numpy(),
        pgd_point=pgd_point.numpy(), pgd_loss=pgd_loss, pgd_fooled=pgd_fooled,
        noise_to_grad=sampler.last_noise_to_grad, fixed_step_point=pgd.x_adv[0].numpy(),
        fixed_step_loss=fixed_step_loss, step_size=step)
