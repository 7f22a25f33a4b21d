"""Local geometry of one input for several models on one shared plane, and curvature statistics over a sample.

``compare_on_plane`` is what the Geometry page draws: the plane is built once from the first (primary) model and
every model is evaluated on that same plane, so the pictures are comparable. Example::

    spec, notes = SectionSpec.checked(plane="deepfool", eps=0.1, norm="linf")
    view = compare_on_plane({"PGD-AT": at_model, "ERM": erm_model}, x, y, spec)
    view.results["ERM"].section.pred, view.ball          # classes on the grid, the ε-ball's section
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from core.attacks.base import eval_mode
from core.errors import ConfigError
from core.geometry.curvature import (
    BoundaryCurvature, MarginProfile, boundary_curvature, cure_curvature, hessian_top_eigenvalue, margin_profile,
    random_vs_adversarial,
)
from core.geometry.planes import PLANES, Plane, ball_section, deepfool_direction, make_plane
from core.geometry.sections import (
    DEFAULT_RESOLUTION, MAX_PATH_STEPS, RESOLUTIONS, AttackPath, BallLoss, LossSurface, Section, attack_path,
    ball_loss, capped_resolution, cross_section, loss_surface,
)
from core.training.config import MAX_EPS

PATHS = ("pgd", "deepfool", "none")
MAX_ZOOM = 20.0
MAX_SAMPLE = 200
_NORM_NAMES = {"linf": "ℓ∞", "l2": "ℓ2"}  # notes are read by people


@dataclass(frozen=True)
class SectionSpec:
    """What the Geometry page asks for. ``zoom`` multiplies the automatic extent of the section."""

    plane: str = "deepfool"
    resolution: int = DEFAULT_RESOLUTION
    zoom: float = 1.0
    eps: float = 0.1
    norm: str = "linf"
    path: str = "pgd"
    path_steps: int = 10
    surface_resolution: int = 41
    seed: int = 0

    def __post_init__(self) -> None:
        if self.plane not in PLANES:
            raise ConfigError(f"unknown plane {self.plane!r}; choose from {', '.join(PLANES)}")
        if self.norm not in ("linf", "l2"):
            raise ConfigError(f"norm must be 'linf' or 'l2', got {self.norm!r}")
        if self.path not in PATHS:
            raise ConfigError(f"path must be one of {', '.join(PATHS)}, got {self.path!r}")
        for name in ("eps", "zoom"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value}")
        if self.eps > MAX_EPS[self.norm]:
            raise ConfigError(f"eps must be at most {MAX_EPS[self.norm]:g} for {self.norm}, got {self.eps}")
        if self.resolution not in RESOLUTIONS:
            raise ConfigError(f"resolution must be one of {', '.join(map(str, RESOLUTIONS))}, got {self.resolution}")

    @classmethod
    def checked(cls, **kwargs: Any) -> tuple["SectionSpec", list[str]]:
        """Build a spec, capping sizes beyond their limits; returns the notes saying what was capped."""
        notes: list[str] = []
        if "resolution" in kwargs:
            kwargs["resolution"], note = capped_resolution(int(kwargs["resolution"]))
            if note:
                notes.append(note)
        if kwargs.get("zoom", 1.0) > MAX_ZOOM:
            notes.append(f"zoom {kwargs['zoom']:g} capped at {MAX_ZOOM:g}")
            kwargs["zoom"] = MAX_ZOOM
        norm, eps = kwargs.get("norm", "linf"), kwargs.get("eps", 0.1)
        if norm in MAX_EPS and isinstance(eps, (int, float)) and math.isfinite(eps) and eps > MAX_EPS[norm]:
            notes.append(f"ε = {eps:g} capped at {MAX_EPS[norm]:g}, the largest {_NORM_NAMES[norm]} budget")
            kwargs["eps"] = MAX_EPS[norm]
        steps = int(kwargs.get("path_steps", 10))
        if steps > MAX_PATH_STEPS or steps < 1:
            kwargs["path_steps"] = min(max(steps, 1), MAX_PATH_STEPS)
            notes.append(f"path steps {steps} capped to {kwargs['path_steps']}")
        surface = int(kwargs.get("surface_resolution", 41))
        if not 5 <= surface <= 101:
            kwargs["surface_resolution"] = min(max(surface, 5), 101)
            notes.append(f"loss-surface resolution {surface} capped to {kwargs['surface_resolution']}")
        return cls(**kwargs), notes


@dataclass
class LocalGeometry:
    """One model's view of one plane."""

    section: Section
    path: AttackPath | None
    profile: MarginProfile
    surface: LossSurface
    hessian: float
    cure: float
    boundary: BoundaryCurvature
    deepfool_distance: float
    prediction: int
    ball_loss: BallLoss


@dataclass
class PlaneComparison:
    plane: Plane
    extent: float
    ball: np.ndarray
    results: dict[str, LocalGeometry]
    seconds: float
    notes: list[str] = field(default_factory=list)
    other_at: np.ndarray | None = None  # (a, b) of the other image on an "image" plane


def _deepfool_distance(model: nn.Module, x: torch.Tensor) -> float:
    """‖r‖₂ of unclipped ℓ2 DeepFool (overshoot 0.02 included); inf when it does not flip the prediction."""
    return _length(deepfool_direction(model, x))


def _length(r: torch.Tensor) -> float:
    return float(r.norm()) if float(r.norm()) > 0 else math.inf


def auto_extent(distances: list[float], ball: np.ndarray, zoom: float) -> float:
    """Half-width of the section: room for the farthest DeepFool boundary and the ε-ball's section, × zoom."""
    reach = float(np.abs(ball).max())
    finite = [d for d in distances if math.isfinite(d)]
    return zoom * 1.6 * max([reach, *finite])


def compare_on_plane(models: dict[str, nn.Module], x: torch.Tensor, y: int, spec: SectionSpec, *,
                     other: torch.Tensor | None = None) -> PlaneComparison:
    """Sections, attack paths, profiles, loss surfaces and curvatures of every model on the first model's plane."""
    if not models:
        raise ConfigError("compare_on_plane needs at least one model")
    started = time.perf_counter()
    first = next(iter(models.values()))
    steps = {name: deepfool_direction(m, x) for name, m in models.items()}
    plane = make_plane(first, x, y, spec.plane, other=other, seed=spec.seed, normal=next(iter(steps.values())))
    ball = ball_section(plane, spec.eps, spec.norm)
    distances = {name: _length(r) for name, r in steps.items()}
    extent = auto_extent(list(distances.values()), ball, spec.zoom)
    notes = list(plane.notes)
    other_at = None
    if plane.kind == "image" and other is not None:
        gap = float((other.flatten().float().to(x.device) - x.flatten().float()).norm())
        extent = max(extent, 1.2 * gap * spec.zoom)
        other_at = np.array([gap, 0.0])
        notes.append(f"The other image lies at a = {gap:.3f} on the û axis (the square marker).")
    results = {}
    for name, model in models.items():
        with torch.no_grad(), eval_mode(model):
            pred = int(model(x[None]).argmax(1))
        target = torch.tensor([y], device=x.device)
        results[name] = LocalGeometry(
            section=cross_section(model, plane, extent=extent, resolution=spec.resolution),
            path=None if spec.path == "none" else attack_path(model, plane, y, attack=spec.path, eps=spec.eps,
                                                              norm=spec.norm, steps=spec.path_steps),
            profile=margin_profile(model, plane, extent=extent),
            surface=loss_surface(model, plane, y, extent=extent, resolution=spec.surface_resolution),
            hessian=float(hessian_top_eigenvalue(model, x[None], target)[0]),
            cure=float(cure_curvature(model, x[None], target)[0]),
            boundary=boundary_curvature(model, plane, t_max=max(4 * extent, 4 * distances[name])
                                        if math.isfinite(distances[name]) else 4 * extent),
            deepfool_distance=distances[name], prediction=pred,
            ball_loss=ball_loss(model, plane, y, ball))
    return PlaneComparison(plane, extent, ball, results, time.perf_counter() - started, notes, other_at)


def curvature_sample(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, directions: int = 8,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Per input of a sample: Hessian top eigenvalue, CURE, DeepFool distance, random distance and their ratio
    (inf where the random rays meet no boundary within RANDOM_REACH × the DeepFool distance)."""
    if len(x) > MAX_SAMPLE:
        raise ConfigError(f"curvature statistics take at most {MAX_SAMPLE} inputs, got {len(x)}")
    ratio = random_vs_adversarial(model, x, directions=directions, seed=seed)
    return {"hessian": hessian_top_eigenvalue(model, x, y, seed=seed).cpu().numpy(),
            "cure": cure_curvature(model, x, y).cpu().numpy(),
            "adversarial": ratio.adversarial, "random": ratio.random, "ratio": ratio.ratio,
            "sqrt_dim": np.full(len(x), ratio.sqrt_dim)}


__all__ = ["LocalGeometry", "PlaneComparison", "SectionSpec", "auto_extent", "compare_on_plane",
           "curvature_sample"]
