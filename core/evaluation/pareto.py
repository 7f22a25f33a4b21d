"""The clean-vs-robust accuracy trade-off: which runs are Pareto-optimal."""

from __future__ import annotations

import numpy as np


def pareto_mask(clean: np.ndarray, robust: np.ndarray) -> np.ndarray:
    """True for points no other point beats on both axes (≥ on both and > on one)."""
    clean, robust = np.asarray(clean, dtype=float), np.asarray(robust, dtype=float)
    mask = np.ones(len(clean), dtype=bool)
    for i in range(len(clean)):
        dominated = (clean >= clean[i]) & (robust >= robust[i]) & ((clean > clean[i]) | (robust > robust[i]))
        mask[i] = not dominated.any()
    return mask


def pareto_front(clean: np.ndarray, robust: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The front's points sorted by clean accuracy (to draw as a staircase line)."""
    mask = pareto_mask(clean, robust)
    order = np.argsort(np.asarray(clean, dtype=float)[mask])
    return np.asarray(clean, dtype=float)[mask][order], np.asarray(robust, dtype=float)[mask][order]
