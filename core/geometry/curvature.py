"""Curvature and distances of the decision boundary around an input, batched over inputs.

Paper: Ortiz-Jimenez et al., Proc. IEEE 2021, https://arxiv.org/abs/2010.09624 (METHODS.md §1c, §1d); CURE:
Moosavi-Dezfooli, Fawzi, Uesato, Frossard, "Robustness via curvature regularization, and vice versa", CVPR 2019,
https://arxiv.org/abs/1811.09716.

- ``hessian_top_eigenvalue``: the top eigenvalue of the input-Hessian of the cross-entropy loss by power iteration
  on Hessian-vector products (double back-propagation; ~20 iterations), one Rayleigh quotient per input.
- ``cure_curvature``: ‖∇ℓ(x + h·z) − ∇ℓ(x)‖ / h with z = sign(∇ℓ)/‖sign(∇ℓ)‖₂.
  Both take the softmax in float64 (``_summed_loss``): float32 rounded a sure prediction's p to 1.
- ``boundary_curvature``: the curvature of the decision boundary itself in the plane (û = normal, v̂ = random):
  the distance t(b) to the boundary along û from x + b·v̂ for offsets b ∈ [−s, s], s = half the model's own
  distance t₀, fitted by t ≈ t₀ + t₁b + t₂b²; κ = 2t₂ / (1 + t₁²)^{3/2}, the curvature of that curve at b = 0.
  κ > 0: the boundary bends away from x; κ < 0: it bends around x. κ = 0 for a flat (linear) boundary whatever
  the loss does, and it works for ReLU networks, whose logits have zero Hessian almost everywhere. The span is
  relative to t₀, so κ does not depend on how far the page zooms out.
- ``margin_profile``: logit margin along a direction. ``boundary_distance``: first label change along rays
  (scan, then bisection). ``random_vs_adversarial``: bisection distances along random rays vs the (unclipped)
  DeepFool distance; for a flat boundary their ratio grows like √d (a ray pointing away from the boundary never
  meets it, so the median counts those as infinite).
The input space is not clipped to the pixel range here: these measure the function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from core.attacks.base import eval_mode
from core.attacks.deepfool import deepfool_run
from core.errors import ConfigError
from core.geometry.planes import Plane
from core.utils import make_generator

MAX_POWER_ITERS = 200
_TINY = 1e-12


def _check_batch(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ConfigError(f"x and y must hold the same positive number of inputs, got {x.shape[0]} and {y.shape[0]}")
    if not torch.isfinite(x).all():
        raise ConfigError("the inputs have NaN or infinite values")


def _per_sample(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def _summed_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE summed over the batch, the softmax in float64 on the model's float32 logits. At an input the model is
    sure of (p ≈ 1 − 1e-7) float32 rounds p to 1, so the loss's gradient lost its largest term and the Geometry
    page showed rounding noise: λmax 7.8e-08 (true 1.7e-07) and CURE 2.4e-08 (true 2.2e-07) for the shipped
    PGD-AT model on digits test #9. The network itself stays float32 (its gradients are then ~1e-7, which float32
    holds to 7 digits); the whole model in float64 was as exact and 6× slower on CPU."""
    return nn.functional.cross_entropy(model(x).double(), y, reduction="sum")


def hessian_top_eigenvalue(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, iters: int = 20,
                           seed: int = 0) -> torch.Tensor:
    """Per-input top eigenvalue (largest in magnitude, signed) of ∇²ₓ CE(f(x), y), by power iteration.

    The loss is summed over the batch, so its Hessian is block-diagonal and one Hessian-vector product serves
    every input at once.
    """
    _check_batch(x, y)
    if not 1 <= iters <= MAX_POWER_ITERS:
        raise ConfigError(f"power iterations must be between 1 and {MAX_POWER_ITERS}, got {iters}")
    gen = make_generator("hessian", seed, device=str(x.device))
    v = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    v = v / _per_sample(v).norm(dim=1).clamp_min(_TINY).reshape(-1, *[1] * (x.dim() - 1))
    x_ = x.detach().clone().requires_grad_(True)
    eigen = torch.zeros(len(x), device=x.device)
    with eval_mode(model), torch.enable_grad():
        loss = _summed_loss(model, x_, y)
        (grad,) = torch.autograd.grad(loss, x_, create_graph=True)
        for _ in range(iters):
            (hv,) = torch.autograd.grad((grad * v).sum(), x_, retain_graph=True)
            eigen = _per_sample(v * hv).sum(dim=1).detach()
            norms = _per_sample(hv).norm(dim=1)
            # A zero Hessian-vector product means a zero Hessian here: keep v, the eigenvalue is 0.
            keep = norms < _TINY
            hv = torch.where(keep.reshape(-1, *[1] * (x.dim() - 1)), v, hv)
            v = (hv / _per_sample(hv).norm(dim=1).clamp_min(_TINY).reshape(-1, *[1] * (x.dim() - 1))).detach()
    return eigen


def _loss_grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x_ = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = _summed_loss(model, x_, y)
        (grad,) = torch.autograd.grad(loss, x_)
    return grad


def cure_curvature(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, h: float = 0.1) -> torch.Tensor:
    """Per-input CURE finite difference ‖∇ℓ(x + h·z) − ∇ℓ(x)‖₂ / h, z = sign(∇ℓ)/‖sign(∇ℓ)‖₂ (h in ℓ2 units)."""
    _check_batch(x, y)
    if not math.isfinite(h) or h <= 0:
        raise ConfigError(f"the finite-difference step h must be a positive number, got {h}")
    with eval_mode(model):
        g0 = _loss_grad(model, x, y)
        z = g0.sign()
        z = z / _per_sample(z).norm(dim=1).clamp_min(_TINY).reshape(-1, *[1] * (x.dim() - 1))
        g1 = _loss_grad(model, x + h * z, y)
    return _per_sample(g1 - g0).norm(dim=1) / h


def boundary_distance(model: nn.Module, starts: torch.Tensor, directions: torch.Tensor, classes: torch.Tensor, *,
                      t_max: float, scan: int = 48, bisect: int = 30) -> torch.Tensor:
    """Per row: the smallest t in (0, t_max] where argmax f(startᵢ + t·dirᵢ) ≠ classᵢ (inf if none found).

    A scan of ``scan`` evenly spaced points brackets the first change, then bisection narrows it to
    t_max / scan / 2^bisect. A boundary crossed twice between two scan points can be missed.
    """
    if not math.isfinite(t_max) or t_max <= 0:
        raise ConfigError(f"t_max must be a positive number, got {t_max}")
    n = len(starts)
    flat_s, flat_d = _per_sample(starts), _per_sample(directions)
    shape = starts.shape[1:]
    ts = torch.linspace(0, t_max, scan + 1, device=starts.device)[1:]
    with torch.no_grad(), eval_mode(model):
        pts = flat_s[:, None, :] + ts[None, :, None] * flat_d[:, None, :]
        preds = torch.cat([model(chunk.reshape(-1, *shape)).argmax(1)
                           for chunk in pts.reshape(-1, flat_s.shape[1]).split(8192)]).reshape(n, scan)
        changed = preds != classes[:, None]
        found = changed.any(dim=1)
        first = changed.float().argmax(dim=1)
        hi = ts[first]
        lo = torch.where(first > 0, ts[(first - 1).clamp_min(0)], torch.zeros_like(hi))
        for _ in range(bisect):
            mid = (lo + hi) / 2
            pm = model((flat_s + mid[:, None] * flat_d).reshape(-1, *shape)).argmax(1)
            flip = pm != classes
            hi = torch.where(flip, mid, hi)
            lo = torch.where(flip, lo, mid)
    return torch.where(found, hi, torch.full_like(hi, math.inf))


@dataclass
class BoundaryCurvature:
    kappa: float            # curvature of the boundary curve in the plane at b = 0 (1 / input units); NaN: unknown
    distance: float         # distance t₀ to the boundary along û from x (inf: none within t_max)
    offsets: np.ndarray     # b values (empty when t₀ is infinite)
    distances: np.ndarray   # t(b); NaN where the start is not in x's class, inf where no boundary was found


def boundary_curvature(model: nn.Module, plane: Plane, *, t_max: float, relative_span: float = 0.5,
                       points: int = 9) -> BoundaryCurvature:
    """κ of the boundary curve a = t(b) in the plane, from t(b) on b ∈ [−s, s], s = relative_span · t₀."""
    if not math.isfinite(t_max) or t_max <= 0:
        raise ConfigError(f"t_max must be a positive number, got {t_max}")
    if not math.isfinite(relative_span) or relative_span <= 0:
        raise ConfigError(f"the relative span must be a positive number, got {relative_span}")
    if points < 3:
        raise ConfigError("boundary curvature needs at least 3 offsets")
    zero = torch.zeros(1)
    with torch.no_grad(), eval_mode(model):
        cls = model(plane.points(zero, zero)).argmax(1)
    direction = plane.u.reshape(1, *plane.shape)
    t0 = float(boundary_distance(model, plane.points(zero, zero), direction, cls, t_max=t_max)[0])
    if not math.isfinite(t0):
        return BoundaryCurvature(math.nan, t0, np.empty(0), np.empty(0))
    span = relative_span * t0
    offsets = torch.linspace(-span, span, points, device=plane.u.device)
    starts = plane.points(torch.zeros_like(offsets), offsets)
    with torch.no_grad(), eval_mode(model):
        inside = (model(starts).argmax(1) == cls).cpu().numpy()
    dist = boundary_distance(model, starts, direction.expand(points, *plane.shape), cls.repeat(points),
                             t_max=t_max).double().cpu().numpy()
    dist[~inside] = math.nan  # a start already outside x's class has no distance to "its" boundary
    b = offsets.double().cpu().numpy()
    ok = np.isfinite(dist)
    if ok.sum() < 3:
        return BoundaryCurvature(math.nan, t0, b, dist)
    t2, t1, _ = np.polyfit(b[ok], dist[ok], 2)
    return BoundaryCurvature(float(2 * t2 / (1 + t1 ** 2) ** 1.5), t0, b, dist)


@dataclass
class MarginProfile:
    t: np.ndarray
    margin_normal: np.ndarray    # f_c − max_{k≠c} f_k along û (c = class at x)
    margin_random: np.ndarray    # the same along v̂


def margin_profile(model: nn.Module, plane: Plane, *, extent: float, points: int = 101) -> MarginProfile:
    """The logit margin of x's class along û and along v̂, t ∈ [−extent, extent]."""
    if not math.isfinite(extent) or extent <= 0:
        raise ConfigError(f"the profile's extent must be a positive number, got {extent}")
    t = torch.linspace(-extent, extent, points, dtype=torch.float64)
    zero = torch.zeros_like(t)
    with torch.no_grad(), eval_mode(model):
        cls = int(model(plane.points(torch.zeros(1), torch.zeros(1))).argmax(1))

        def margin(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
            logits = model(plane.points(a, b)).double()
            own = logits[:, cls].clone()
            logits[:, cls] = -math.inf
            return (own - logits.max(1).values).cpu().numpy()

        return MarginProfile(t.numpy(), margin(t, zero), margin(zero, t))


@dataclass
class DistanceRatio:
    adversarial: np.ndarray      # per input: unclipped DeepFool ℓ2 distance (inf: DeepFool did not flip it)
    random: np.ndarray           # per input: median bisection distance along random rays (inf: most found none)
    ratio: np.ndarray            # random / adversarial (NaN where DeepFool did not flip the input)
    dim: int

    @property
    def sqrt_dim(self) -> float:
        return math.sqrt(self.dim)


RANDOM_REACH = 40.0  # random rays are searched up to this × the DeepFool distance


def censored_ratios(ratio: np.ndarray, reach: float = RANDOM_REACH) -> np.ndarray:
    """The ratios of the inputs DeepFool flipped, an infinite one (no random crossing within ``reach`` × the
    DeepFool distance, so the ratio is beyond ``reach``) taken as ``reach``: every finite ratio is at most ``reach``,
    so ranks, medians and quartiles are those of the true ratios (a median equal to ``reach`` reads "≥ reach")."""
    ratio = np.asarray(ratio, dtype=float)
    ratio = ratio[~np.isnan(ratio)]
    return np.where(np.isinf(ratio), reach, ratio)


def random_vs_adversarial(model: nn.Module, x: torch.Tensor, *, directions: int = 16, seed: int = 0,
                          reach: float = RANDOM_REACH) -> DistanceRatio:
    """DeepFool ℓ2 distance vs distance to the boundary along random unit directions, per input.

    Random distances are searched up to ``reach`` × the DeepFool distance (or the diagonal √d of the unit box
    where DeepFool found none); rays with no change within it count as infinite, so a median of inf means most
    random rays never meet the boundary there.
    """
    if not torch.isfinite(x).all():
        raise ConfigError("the inputs have NaN or infinite values")
    if not 1 <= directions <= 256:
        raise ConfigError(f"directions must be between 1 and 256, got {directions}")
    with torch.no_grad(), eval_mode(model):
        cls = model(x).argmax(1)
    adv = deepfool_run(model, x, norm="l2", bounds=None)
    d_adv = _per_sample(adv.r).norm(dim=1)
    d_adv = torch.where(adv.converged, d_adv, torch.full_like(d_adv, math.inf))
    gen = make_generator("random-directions", seed, device=str(x.device))
    dim = _per_sample(x).shape[1]
    r = torch.randn(len(x), directions, dim, generator=gen, device=x.device)
    r = r / r.norm(dim=2, keepdim=True)
    starts = x.repeat_interleave(directions, dim=0)
    reach_t = torch.where(torch.isfinite(d_adv), d_adv * reach, torch.full_like(d_adv, math.sqrt(dim)))
    # One search radius per input: scan all its directions up to reach × its own DeepFool distance.
    dists = []
    for i in range(len(x)):
        rows = slice(i * directions, (i + 1) * directions)
        dists.append(boundary_distance(model, starts[rows], r[i].reshape(directions, *x.shape[1:]),
                                       cls[i].repeat(directions), t_max=float(reach_t[i])))
    d_rand = torch.stack(dists).double().cpu().numpy()
    median = np.median(d_rand, axis=1)
    adv_np = d_adv.double().cpu().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(np.isfinite(adv_np), median / adv_np, np.nan)
    return DistanceRatio(adv_np, median, ratio, dim)
