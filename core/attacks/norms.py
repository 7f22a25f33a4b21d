"""Threat-model geometry: norms, projections, steepest-ascent directions and random starts.

``linf`` and ``l2`` act on the whole input; ``l2patch`` is the Li & Li threat model (every patch, the last
dimension of an N×P×d input, lies in its own ℓ2 ball).
"""

from __future__ import annotations

import torch

from core.attacks.shard import draw
from core.errors import ConfigError

NORMS = ("linf", "l2", "l2patch")
_TINY = 1e-12


def _view(t: torch.Tensor, norm: str) -> torch.Tensor:
    """Reshape so that the norm is taken over the last dimension."""
    if norm == "l2patch":
        if t.dim() != 3:
            raise ConfigError(f"the l2patch threat model needs N×P×d inputs, got shape {tuple(t.shape)}")
        return t
    return t.reshape(t.shape[0], 1, -1)


def _eps_view(eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Per-sample ε broadcast against the (N, groups, features) view."""
    return eps.reshape(-1, 1, 1).to(dtype=t.dtype, device=t.device)


def lp_norms(delta: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-sample ℓ2 and ℓ∞ norms of a perturbation."""
    flat = delta.detach().reshape(delta.shape[0], -1)
    return {"l2": flat.norm(p=2, dim=1), "linf": flat.abs().amax(dim=1)}


def threat_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-sample size of ``delta`` in the threat model's own norm (max over patches for l2patch)."""
    view = _view(delta.detach(), norm)
    if norm == "linf":
        return view.abs().amax(dim=(1, 2))
    return view.norm(p=2, dim=2).amax(dim=1)


def project(delta: torch.Tensor, eps: torch.Tensor, norm: str) -> torch.Tensor:
    """Project ``delta`` onto the ε-ball of ``norm`` (per sample, or per patch for l2patch)."""
    view = _view(delta, norm)
    eps_v = _eps_view(eps, view)
    if norm == "linf":
        out = torch.maximum(torch.minimum(view, eps_v), -eps_v)
    else:
        lengths = view.norm(p=2, dim=2, keepdim=True)
        out = view * torch.clamp(eps_v / (lengths + _TINY), max=1.0)
    return out.reshape(delta.shape)


def ascent_direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit norm: sign for ℓ∞, normalised gradient for ℓ2."""
    if norm == "linf":
        return grad.sign()
    view = _view(grad, norm)
    out = view / (view.norm(p=2, dim=2, keepdim=True) + _TINY)
    return out.reshape(grad.shape)


def random_in_ball(
    shape: torch.Size, eps: torch.Tensor, norm: str, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    """A uniform sample from the ε-ball (uniform in the box for ℓ∞; uniform in volume for ℓ2)."""
    # Draw on the generator's own device, then move: the same seed gives the same noise on CPU and GPU.
    gen_device = generator.device
    eps = eps.to(device)
    # Drawn through ``draw``: under torchrun each process gets its rows of the global batch's draw (shard.py).
    if norm == "linf":
        u = draw(lambda s: torch.rand(s, generator=generator, device=gen_device), shape).to(device) * 2 - 1
        return u * eps.reshape(-1, *([1] * (len(shape) - 1)))
    gauss = draw(lambda s: torch.randn(s, generator=generator, device=gen_device), shape).to(device)
    view = _view(gauss, norm)
    direction = view / (view.norm(p=2, dim=2, keepdim=True) + _TINY)
    dim = view.shape[2]
    radius = draw(lambda s: torch.rand(s, generator=generator, device=gen_device),
                  (view.shape[0], view.shape[1], 1)).to(device)
    return (direction * radius ** (1.0 / dim) * _eps_view(eps, view)).reshape(shape)
