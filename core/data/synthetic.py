"""Datasets that need no files: sklearn's bundled 8×8 digits and five toy 2-D sets.

Every random draw comes from a numpy Generator seeded by :func:`core.utils.derive_seed`, so the same
(name, split, params) always gives the same tensors and nothing touches global RNG state.

Toy sets are generated in their natural coordinates, then mapped into [0, 1]² by a fixed affine map per dataset
(the same for both splits and every seed), chosen so that points with the default noise sit inside
[0.05, 0.95]; whatever lands outside is clipped, because attacks assume inputs in [0, 1].
"""

from __future__ import annotations

import functools
import logging
import math
from typing import Callable

import numpy as np
from core.lazy import torch

from core.data.registry import LoadedData, check_range, register_dataset
from core.utils import derive_seed

log = logging.getLogger(__name__)

DIGITS_TEST_FRACTION = 0.25
DIGITS_SPLIT_SEED = derive_seed("digits-split")


@functools.lru_cache(maxsize=1)
def _digits_split() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Images in [0, 1], labels, and the sorted train/test indices of a fixed stratified split."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    rng = np.random.default_rng(DIGITS_SPLIT_SEED)
    test_parts = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        n_test = int(round(DIGITS_TEST_FRACTION * len(members)))
        test_parts.append(rng.permutation(members)[:n_test])
    test_idx = np.sort(np.concatenate(test_parts))
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    for arr in (images, labels, test_idx, train_idx):
        arr.setflags(write=False)  # cached: callers must copy, never mutate
    return images, labels, train_idx, test_idx


@register_dataset(
    "digits", kind="image", input_shape=(1, 8, 8), classes=tuple(str(i) for i in range(10)),
    description="sklearn's 1,797 handwritten 8×8 digits (bundled, no download); fixed stratified 75/25 split",
)
def _load_digits(split: str) -> LoadedData:
    images, labels, train_idx, test_idx = _digits_split()
    idx = train_idx if split == "train" else test_idx
    return LoadedData(torch.from_numpy(images[idx].copy()), torch.from_numpy(labels[idx].copy()))


def _balanced_labels(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """Labels with class sizes differing by at most one, in random order."""
    return rng.permutation(np.arange(n) % num_classes).astype(np.int64)


def _moons(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = _balanced_labels(rng, n, 2)
    t = rng.uniform(0.0, math.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    points = np.where(y[:, None] == 0, upper, lower)
    return points + noise * rng.standard_normal((n, 2)), y


def _circles(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = _balanced_labels(rng, n, 2)
    t = rng.uniform(0.0, 2 * math.pi, n)
    radius = np.where(y == 0, 1.0, 0.5)
    points = radius[:, None] * np.stack([np.cos(t), np.sin(t)], axis=1)
    return points + noise * rng.standard_normal((n, 2)), y


def _spirals(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = _balanced_labels(rng, n, 2)
    # sqrt spreads points evenly along the arm instead of crowding the centre.
    t = np.sqrt(rng.uniform(0.0, 1.0, n))
    angle = 3.0 * math.pi * t + math.pi * y
    points = t[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    return points + noise * rng.standard_normal((n, 2)), y


def _xor(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    quadrant = rng.permutation(np.arange(n) % 4)
    signs = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]])
    y = (quadrant >= 2).astype(np.int64)  # class 1 = the two quadrants where the coordinates' signs differ
    return 0.5 * signs[quadrant] + noise * rng.standard_normal((n, 2)), y


def _blob_centres(centers: int) -> np.ndarray:
    angle = math.pi / 2 + 2 * math.pi * np.arange(centers) / centers
    return np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _blobs(rng: np.random.Generator, n: int, noise: float, centers: int = 3) -> tuple[np.ndarray, np.ndarray]:
    y = _balanced_labels(rng, n, centers)
    return _blob_centres(centers)[y] + noise * rng.standard_normal((n, 2)), y


Generator = Callable[..., tuple[np.ndarray, np.ndarray]]

# name -> (generator, default noise, scale, class names, one-line description). The affine map is
# 0.5 + scale * (point - centre); scale = 0.45 / (largest radius + 3 default noise std), so ~all points fit.
_TOY: dict[str, tuple[Generator, float, float, tuple[float, float], tuple[str, ...], str]] = {
    "moons": (_moons, 0.1, 0.25, (0.5, 0.25), ("upper moon", "lower moon"),
              "two interleaving half circles"),
    "circles": (_circles, 0.05, 0.38, (0.0, 0.0), ("outer", "inner"),
                "a circle inside a circle of twice its radius"),
    "spirals": (_spirals, 0.04, 0.38, (0.0, 0.0), ("arm 0", "arm 1"),
                "two intertwined spiral arms, 1.5 turns each"),
    "xor": (_xor, 0.12, 0.45, (0.0, 0.0), ("same sign", "opposite sign"),
            "four gaussian quadrants; diagonal quadrants share a class"),
    "blobs": (_blobs, 0.15, 0.3, (0.0, 0.0), ("0", "1", "2"),
              "isotropic gaussian blobs on a circle (centers=3 by default)"),
}

MAX_BLOB_CENTERS = 10


def _make_toy_loader(name: str) -> Callable[..., LoadedData]:
    generate, _, scale, centre, _, _ = _TOY[name]

    def load(split: str, n: int, noise: float, seed: int, **extra: int) -> LoadedData:
        check_range(name, "n", n, low=1)
        check_range(name, "noise", noise, low=0.0)
        if "centers" in extra:
            check_range(name, "centers", extra["centers"], low=2, high=MAX_BLOB_CENTERS)
        rng = np.random.default_rng(derive_seed("toy", name, seed, split))
        points, y = generate(rng, n, noise, **extra)
        x = np.clip(0.5 + scale * (points - np.asarray(centre)), 0.0, 1.0).astype(np.float32)
        classes = tuple(str(i) for i in range(extra["centers"])) if "centers" in extra else None
        return LoadedData(torch.from_numpy(x), torch.from_numpy(y), classes)

    load.__name__ = f"_load_{name}"
    return load


def _register_toy_sets() -> None:
    for name, (_, noise, _, _, classes, description) in _TOY.items():
        defaults: dict[str, float | int] = {"n": 1000, "noise": noise, "seed": 0}
        if name == "blobs":
            defaults["centers"] = 3
        register_dataset(
            name, kind="toy", input_shape=(2,), classes=classes, defaults=defaults,
            description=f"toy 2-D: {description}; params n, noise (default {noise}), seed",
        )(_make_toy_loader(name))


_register_toy_sets()
