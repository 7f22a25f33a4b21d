"""Li & Li patch-structured data (arXiv 2410.08503; METHODS.md §3).

An input is P patches in R^d. With k classes there are 2k orthonormal feature vectors: robust u_1..u_k and
non-robust v_1..v_k. For label y, a sample's robust patches J_R carry alpha·u_y + ξ_p, its non-robust patches
J_NR carry beta·v_y + ξ_p and every other patch is pure noise ξ_p, where ξ ~ N(0, σ_n²(I − F Fᵀ)) and F = [u | v].
J_R and J_NR are drawn at random per sample and are disjoint. The features depend only on (k, d, seed), so
train and test share them; :func:`patch_features` gives them to the theory code.

The defaults are the ones METHODS.md §3 found to reproduce the paper's claim (AT learns u, ST learns v).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

from core.lazy import torch

from core.data.registry import LoadedData, check_range, register_dataset
from core.errors import ConfigError
from core.utils import make_generator

log = logging.getLogger(__name__)

PATCH_DEFAULTS: dict[str, int | float] = {
    "k": 4, "d": 64, "P": 64, "n_robust": 1, "alpha": 1.2, "n_nonrobust": 60, "beta": 0.34,
    "sigma_n": 0.03, "n_train": 200, "n_test": 300, "seed": 0,
}

ROLE_NOISE, ROLE_ROBUST, ROLE_NONROBUST = 0, 1, 2


class PatchSample(NamedTuple):
    """Generated patch data: ``x`` N×P×d, ``y`` N, ``roles`` N×P (0 noise, 1 robust, 2 non-robust)."""

    x: torch.Tensor
    y: torch.Tensor
    roles: torch.Tensor


def _check_feature_shape(k: int, d: int) -> None:
    check_range("patches", "k", k, low=2)
    if 2 * k > d:
        raise ConfigError(f"patches need 2k <= d orthonormal features, got k={k}, d={d}")


def _feature_matrix(k: int, d: int, seed: int) -> torch.Tensor:
    """d×2k matrix with orthonormal columns [u_1..u_k, v_1..v_k], float64."""
    _check_feature_shape(k, d)
    gaussian = torch.randn(d, 2 * k, generator=make_generator(seed, "features"), dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    # QR is unique only up to column signs; fixing diag(R) > 0 makes the features a function of the seed alone.
    return q * torch.where(torch.diagonal(r) < 0, -1.0, 1.0)


def patch_features(k: int = 4, d: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The robust features ``u`` (k×d) and non-robust features ``v`` (k×d), float32, all 2k orthonormal.

    They are the ones :func:`load_dataset("patches", k=k, d=d, seed=seed) <core.data.load_dataset>` uses.
    """
    features = _feature_matrix(k, d, seed).T.to(torch.float32)
    return features[:k].contiguous(), features[k:].contiguous()


def _sample_roles(gen: torch.Generator, n: int, P: int, n_robust: int, n_nonrobust: int) -> torch.Tensor:
    """Per sample, a random disjoint choice of robust and non-robust patch indices, as an N×P role map."""
    order = torch.rand(n, P, generator=gen).argsort(dim=1)
    rank_roles = torch.full((P,), ROLE_NOISE, dtype=torch.int64)
    rank_roles[:n_robust] = ROLE_ROBUST
    rank_roles[n_robust:n_robust + n_nonrobust] = ROLE_NONROBUST
    roles = torch.empty(n, P, dtype=torch.int64)
    roles.scatter_(1, order, rank_roles.expand(n, P))
    return roles


def generate_patches(
    n: int, *, k: int = 4, d: int = 64, P: int = 64, n_robust: int = 1, alpha: float = 1.2,
    n_nonrobust: int = 60, beta: float = 0.34, sigma_n: float = 0.03, seed: int = 0, stream: str = "train",
) -> PatchSample:
    """Draw ``n`` samples of the patch model; ``stream`` names an independent random stream (the split).

    Returns the data with its per-patch roles, which the loader drops but tests and pictures can use.
    """
    _validate(k=k, d=d, P=P, n_robust=n_robust, n_nonrobust=n_nonrobust, alpha=alpha, beta=beta,
              sigma_n=sigma_n, n=n)
    features = _feature_matrix(k, d, seed)
    u, v = features[:, :k].T, features[:, k:].T
    gen = make_generator(seed, "patches", stream)
    y = torch.randint(0, k, (n,), generator=gen)
    roles = _sample_roles(gen, n, P, n_robust, n_nonrobust)
    gaussian = torch.randn(n, P, d, generator=gen, dtype=torch.float64)
    noise = sigma_n * (gaussian - (gaussian @ features) @ features.T)
    signal = ((roles == ROLE_ROBUST).unsqueeze(-1) * (alpha * u[y]).unsqueeze(1)
              + (roles == ROLE_NONROBUST).unsqueeze(-1) * (beta * v[y]).unsqueeze(1))
    return PatchSample((signal + noise).to(torch.float32), y, roles)


def _validate(*, k: int, d: int, P: int, n_robust: int, n_nonrobust: int, alpha: float, beta: float,
              sigma_n: float, n: int) -> None:
    _check_feature_shape(k, d)
    for key, value in (("P", P), ("n", n)):
        check_range("patches", key, value, low=1)
    for key, value in (("n_robust", n_robust), ("n_nonrobust", n_nonrobust), ("alpha", alpha),
                       ("beta", beta), ("sigma_n", sigma_n)):
        check_range("patches", key, value, low=0)
    if n_robust + n_nonrobust > P:
        raise ConfigError(f"patches: n_robust + n_nonrobust = {n_robust + n_nonrobust} exceeds P = {P} patches")


@register_dataset(
    "patches", kind="theory", input_shape=(PATCH_DEFAULTS["P"], PATCH_DEFAULTS["d"]),
    classes=tuple(str(j) for j in range(PATCH_DEFAULTS["k"])), defaults=PATCH_DEFAULTS, bounds=None,
    description="Li & Li patch data: sparse robust features u_y (alpha) and dense non-robust v_y (beta) "
                "among P patches in R^d, noise off the feature span",
)
def _load_patches(split: str, *, n_train: int, n_test: int, **params: int | float) -> LoadedData:
    for key, value in (("n_train", n_train), ("n_test", n_test)):
        check_range("patches", key, value, low=1)
    n = n_train if split == "train" else n_test
    sample = generate_patches(n, stream=split, **params)
    classes = tuple(str(j) for j in range(int(params["k"])))
    return LoadedData(sample.x, sample.y, classes)
