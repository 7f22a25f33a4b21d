"""Planes through an input x for decision-boundary cross-sections, and the exact section of the ε-ball.

Paper: Ortiz-Jimenez, Modas, Moosavi-Dezfooli, Frossard, "Optimism in the Face of Adversity: Understanding and
Improving Deep Learning through Adversarial Robustness", Proc. IEEE 2021, https://arxiv.org/abs/2010.09624 (§ on
decision-boundary geometry; METHODS.md §1b). A plane is x + a·û + b·v̂ with û, v̂ orthonormal (flattened input
space): û is the DeepFool normal, the loss gradient, a random direction or the direction toward another image; v̂
is random and orthogonalised to û. The same plane is used for every model compared.

Degenerate inputs never fail silently: a zero gradient, a DeepFool step that finds no boundary, a target image
equal to x, or a direction parallel to another falls back to a random direction and says so in ``Plane.notes``.
Example::

    plane = make_plane(model, x, y, "deepfool", seed=0)
    polygon = ball_section(plane, eps=0.1, norm="linf")      # M×2 vertices (a, b) of the ε-cube's section
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from core.attacks.base import eval_mode
from core.attacks.deepfool import deepfool_run
from core.errors import ConfigError
from core.utils import make_generator

PLANES = ("deepfool", "gradient", "random", "image")
PLANE_LABELS = {"deepfool": "DeepFool normal", "gradient": "loss gradient", "random": "random",
                "image": "toward the other image"}
# Below this ℓ2 length (in input units) a direction is treated as zero.
_ZERO = 1e-10
# A second direction whose component orthogonal to the first is shorter than this (relative) is parallel to it.
_PARALLEL = 1e-6


@dataclass
class Plane:
    """An orthonormal pair (u, v) through ``origin``; all three flattened float32 tensors of length d."""

    origin: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    kind: str
    u_label: str
    v_label: str
    shape: tuple[int, ...]
    notes: list[str] = field(default_factory=list)

    @property
    def dim(self) -> int:
        return int(self.u.numel())

    def points(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Inputs x + a·u + b·v for matching 1-D coordinate tensors a, b, shaped like the model's input batch."""
        a = a.to(self.u).reshape(-1, 1)
        b = b.to(self.u).reshape(-1, 1)
        return (self.origin + a * self.u + b * self.v).reshape(-1, *self.shape)

    def coordinates(self, x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates (a, b) of the projection of the inputs ``x`` (N×…) and their distance off the plane."""
        delta = x.reshape(len(x), -1).to(self.u) - self.origin
        ab = torch.stack([delta @ self.u, delta @ self.v], dim=1)
        off = (delta - ab[:, :1] * self.u - ab[:, 1:] * self.v).norm(dim=1)
        return ab.cpu().double().numpy(), off.cpu().double().numpy()


def _unit(t: torch.Tensor) -> torch.Tensor | None:
    n = float(t.norm())
    return None if not math.isfinite(n) or n < _ZERO else t / n


def orthogonal_to(u: torch.Tensor, w: torch.Tensor) -> torch.Tensor | None:
    """The unit vector along w's component orthogonal to the unit vector u; None if w is (nearly) parallel to u."""
    norm_w = float(w.norm())
    if not math.isfinite(norm_w) or norm_w < _ZERO:
        return None
    rest = w - (w @ u) * u
    rest = rest - (rest @ u) * u  # a second pass keeps float32 orthogonality at ~1e-7
    if float(rest.norm()) < _PARALLEL * norm_w:
        return None
    return _unit(rest)


def loss_gradient(model: nn.Module, x: torch.Tensor, y: int) -> torch.Tensor:
    """∇ₓ CE(f(x), y) for one input x (the model's input shape), flattened."""
    x_ = x.detach().unsqueeze(0).clone().requires_grad_(True)
    with eval_mode(model), torch.enable_grad():
        loss = nn.functional.cross_entropy(model(x_), torch.tensor([y], device=x.device))
        (grad,) = torch.autograd.grad(loss, x_)
    return grad.flatten()


def deepfool_direction(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The ℓ2 DeepFool perturbation r of one input, unclipped (the function's own geometry, like the sections),
    flattened, overshoot included; zero if DeepFool did not flip the prediction within its 50 iterations."""
    run = deepfool_run(model, x.unsqueeze(0), norm="l2", steps=50, bounds=None)
    return run.r[0].flatten() if bool(run.converged[0]) else torch.zeros_like(x.flatten())


def make_plane(model: nn.Module, x: torch.Tensor, y: int, kind: str, *, other: torch.Tensor | None = None,
               seed: int = 0, normal: torch.Tensor | None = None) -> Plane:
    """The plane of ``kind`` (see ``PLANES``) through x; ``other`` is the target image for ``kind="image"``;
    ``normal`` is the model's DeepFool step at x when the caller already has it (``deepfool_direction``)."""
    if kind not in PLANES:
        raise ConfigError(f"unknown plane {kind!r}; choose from {', '.join(PLANES)}")
    if kind == "image" and other is None:
        raise ConfigError("the 'image' plane needs the other image")
    x = x.detach()
    if not torch.isfinite(x).all():
        raise ConfigError("the input has NaN or infinite values")
    flat = x.flatten().float().clone()  # a view would carry (and pickle) its whole dataset's storage
    d = flat.numel()
    if d < 2:
        raise ConfigError(f"a plane needs at least 2 input dimensions, the input has {d}")
    gen = make_generator("plane", seed, device=str(flat.device))
    notes: list[str] = []
    first: torch.Tensor | None = None
    if kind == "deepfool":
        first = _unit((deepfool_direction(model, x) if normal is None else normal).float())
        if first is None:
            notes.append("DeepFool found no boundary from this point (zero step); the loss gradient is used instead.")
            kind = "gradient"
    if kind == "gradient":
        first = _unit(loss_gradient(model, x, y).float())
        if first is None:
            notes.append("The loss gradient is zero here (a saturated or flat region); a random direction is used "
                         "instead.")
            kind = "random"
    if kind == "image":
        assert other is not None
        if other.numel() != d:
            raise ConfigError(f"the other image has {other.numel()} values, the input has {d}")
        first = _unit((other.detach().flatten().float().to(flat.device) - flat))
        if first is None:
            notes.append("The other image equals this one; a random direction is used instead.")
            kind = "random"
    if first is None:
        first = _unit(torch.randn(d, generator=gen, device=flat.device))
    assert first is not None
    second = None
    for _ in range(8):
        second = orthogonal_to(first, torch.randn(d, generator=gen, device=flat.device))
        if second is not None:
            break
    if second is None:  # only for d = 2 with an unlucky draw: take the exact perpendicular
        second = orthogonal_to(first, torch.roll(first, 1)) if d > 2 else torch.stack([-first[1], first[0]])
    assert second is not None
    return Plane(origin=flat, u=first, v=second, kind=kind, u_label=PLANE_LABELS[kind],
                 v_label="random, orthogonal", shape=tuple(x.shape), notes=notes)


def plane_from(origin: torch.Tensor, u: torch.Tensor, w: torch.Tensor, *, shape: tuple[int, ...],
               u_label: str = "u", v_label: str = "v") -> Plane:
    """A plane from two given directions; w is orthogonalised to u. Parallel or zero directions are refused."""
    first = _unit(u.flatten().float())
    if first is None:
        raise ConfigError("the first direction of the plane is zero")
    second = orthogonal_to(first, w.flatten().float())
    if second is None:
        raise ConfigError("the two directions are parallel (or the second is zero): they do not span a plane")
    return Plane(origin=origin.flatten().float().clone(), u=first, v=second, kind="custom", u_label=u_label,
                 v_label=v_label, shape=shape)


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull of 2-D points, counter-clockwise (Andrew's monotone chain)."""
    pts = np.unique(points, axis=0)
    pts = pts[np.lexsort((pts[:, 1], pts[:, 0]))]

    def cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
        return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))

    lower: list[np.ndarray] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[np.ndarray] = []
    for p in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return np.array(lower[:-1] + upper[:-1])


def ball_section(plane: Plane, eps: float, norm: str, *, circle_points: int = 181) -> np.ndarray:
    """Vertices (a, b), closed (first = last), of the plane's section of the ε-ball around its origin.

    ℓ2: the disc of radius ε (u, v orthonormal), sampled at ``circle_points``. ℓ∞: the exact polygon
    {(a, b): |a·uᵢ + b·vᵢ| ≤ ε for all i}. By polar duality its edges lie on the lines of the hull vertices of
    the points ±(uᵢ, vᵢ)/ε, and its vertices solve the two lines of consecutive hull vertices. (The pixel-range
    clip to [0, 1] is not part of the section.)
    """
    if not math.isfinite(eps) or eps <= 0:
        raise ConfigError(f"ε must be a positive number, got {eps}")
    if norm == "l2":
        t = np.linspace(0.0, 2 * math.pi, circle_points)
        return np.stack([eps * np.cos(t), eps * np.sin(t)], axis=1)
    if norm != "linf":
        raise ConfigError(f"the ball's section is drawn for norm 'linf' or 'l2', got {norm!r}")
    uv = torch.stack([plane.u, plane.v], dim=1).double().cpu().numpy()
    uv = uv[np.abs(uv).max(axis=1) > 1e-12]
    hull = _hull(np.concatenate([uv, -uv]) / eps)
    nxt = np.roll(hull, -1, axis=0)
    vertices = np.array([np.linalg.solve(np.stack([p, q]), np.ones(2)) for p, q in zip(hull, nxt)])
    return np.concatenate([vertices, vertices[:1]])
