"""The two-layer smoothed-ReLU patch network of Li & Li, "Adversarial training can provably improve robustness:
theoretical analysis of feature learning process under structured data" (arXiv 2410.08503).

    F_j(X) = Σ_{r≤m} Σ_{p≤P} σ̃(⟨w_{j,r}, x_p⟩),   X = (x_1, …, x_P) ∈ R^{P×d},   j = 1 … k

Only the first layer is trained (the second is fixed to ones), so the whole state is the k×m×d tensor ``weight``.
Inputs are the raw patches of :mod:`core.theory` — no [0, 1] assumption and no normalisation (``normalize`` is an
identity kept only so every model has one).
"""

from __future__ import annotations

import torch
from torch import nn

from core.models.layers import SmoothedReLU
from core.models.registry import register_arch, require_float, require_int

__all__ = ["PatchNet"]


@register_arch("patchnet")
class PatchNet(nn.Module):
    """Li & Li's network: k classes × m neurons, each applied to every one of the P patches of dimension d.

    Args:
        k: number of classes (= logits).
        d: patch dimension.
        m: neurons per class.
        q: power of the smoothed ReLU (the paper needs q ≥ 3).
        rho: width ϱ of the polynomial part of the smoothed ReLU.
        sigma0: standard deviation of the Gaussian initialisation, w ~ N(0, σ₀² I).
        init_seed: seed of the local generator used for the initialisation (the global RNG is never touched).

    Shapes: ``forward`` N×P×d → N×k logits; ``patch_activations`` N×P×d → N×k×m×P; ``features`` → N×(k·m).
    """

    feature_layers = ("activation",)

    def __init__(
        self,
        k: int = 4,
        d: int = 64,
        m: int = 4,
        q: float = 3,
        rho: float = 0.5,
        sigma0: float = 0.05,
        init_seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = self.k = require_int("k", k, minimum=2)
        self.d = require_int("d", d)
        self.m = require_int("m", m)
        q = require_float("q", q, minimum=1.0)
        rho = require_float("rho", rho, inclusive=False)
        sigma0 = require_float("sigma0", sigma0)
        init_seed = require_int("init_seed", init_seed, minimum=0)
        generator = torch.Generator(device="cpu")
        generator.manual_seed(init_seed)
        # Drawn on CPU from the local generator so the initial weights depend on init_seed only (not on the
        # device or the global RNG); the tensor follows model.to(device) afterwards.
        init = torch.randn(self.k, self.m, self.d, generator=generator, device="cpu") * sigma0
        self.normalize = nn.Identity()
        self.weight = nn.Parameter(init)
        self.activation = SmoothedReLU(q, rho)

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[-1] != self.d:
            raise ValueError(f"patchnet expects inputs of shape N×P×{self.d}, got {tuple(x.shape)}")

    def patch_activations(self, x: torch.Tensor) -> torch.Tensor:
        """⟨w_{j,r}, x_p⟩ for every class j, neuron r and patch p: N×k×m×P (before the smoothed ReLU)."""
        self._check_input(x)
        return torch.einsum("npd,kmd->nkmp", x, self.weight.to(x.dtype))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Σ_p σ̃(⟨w_{j,r}, x_p⟩) per neuron, flattened to N×(k·m) (class-major)."""
        return self.activation(self.patch_activations(x)).sum(dim=-1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).view(x.shape[0], self.k, self.m).sum(dim=-1)
