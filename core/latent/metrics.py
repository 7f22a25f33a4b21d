"""Numbers beside the latent map, all computed in the layer's feature space (never in the 2-D picture).

* k-NN accuracy: clean — leave-one-out vote of the k nearest other clean points; adversarial — vote of the k
  nearest clean points around each adversarial feature. How well the layer still sorts points by their true class.
* silhouette (true labels as clusters), clean and adversarial; in [-1, 1], higher = tighter, better separated.
* distance to class centroids (of the clean features): an adversarial point's distance to its true class's
  centroid, relative to the clean points' mean distance to their own; and the "drift" matrix: true class → the
  class whose centroid the adversarial point lands nearest.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

K_NEIGHBORS = 5


def _dist(a: np.ndarray, b: np.ndarray) -> torch.Tensor:
    return torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double())


def _vote(neighbour_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    counts = torch.nn.functional.one_hot(neighbour_labels, num_classes).sum(1)
    return counts.argmax(1)


def knn_accuracy(clean: np.ndarray, y: np.ndarray, query: np.ndarray | None = None, *, k: int = K_NEIGHBORS,
                 num_classes: int | None = None) -> float:
    """k-NN accuracy against the true labels ``y``: leave-one-out on ``clean`` when ``query`` is None, else of
    the query points (one per clean point, same labels) voted by their k nearest clean points."""
    labels = torch.from_numpy(np.asarray(y, dtype=np.int64))
    classes = int(num_classes or labels.max() + 1)
    own = query is None
    d = _dist(clean, clean if own else query).T if not own else _dist(clean, clean)
    if own:
        d.fill_diagonal_(float("inf"))
    k = max(1, min(k, len(clean) - int(own)))
    idx = d.topk(k, dim=1, largest=False).indices
    return float((_vote(labels[idx], classes) == labels).double().mean())


def silhouette(features: np.ndarray, y: np.ndarray) -> float:
    """Mean silhouette with the true classes as clusters (NaN when fewer than 2 classes have 2+ points)."""
    labels = np.asarray(y)
    values, counts = np.unique(labels, return_counts=True)
    if len(values) < 2 or len(labels) <= len(values):
        return float("nan")
    d = _dist(features, features).numpy()
    onehot = labels[:, None] == values[None, :]
    sums = d @ onehot
    own = onehot.argmax(1)
    size = counts[own]
    a = np.where(size > 1, sums[np.arange(len(labels)), own] / np.maximum(size - 1, 1), 0.0)
    mean_other = np.where(onehot, np.inf, sums / counts[None, :])
    b = mean_other.min(axis=1)
    s = np.where(size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
    return float(s.mean())


def centroids(features: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Class means of ``features`` (NaN rows for classes without points)."""
    out = np.full((num_classes, features.shape[1]), np.nan, dtype=np.float64)
    for c in range(num_classes):
        members = features[y == c]
        if len(members):
            out[c] = members.mean(axis=0)
    return out


def centroid_drift(clean: np.ndarray, adversarial: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Distances of adversarial features to the clean class centroids.

    Returns ``true_ratio`` (mean distance of adversarial points to their true class's centroid ÷ the clean points'
    mean distance to theirs), ``nearest_true`` (share of adversarial points still nearest their own centroid) and
    ``drift`` (num_classes × num_classes counts: true class → nearest centroid's class).
    """
    y = np.asarray(y, dtype=np.int64)
    cents = centroids(clean, y, num_classes)
    present = ~np.isnan(cents).any(axis=1)
    cents_t = torch.from_numpy(np.where(present[:, None], cents, 0.0))

    def to_centroids(f: np.ndarray) -> torch.Tensor:
        d = torch.cdist(torch.from_numpy(f).double(), cents_t)
        d[:, torch.from_numpy(~present)] = float("inf")
        return d

    d_clean, d_adv = to_centroids(clean), to_centroids(adversarial)
    rows = torch.arange(len(y))
    yt = torch.from_numpy(y)
    clean_own = d_clean[rows, yt].mean()
    nearest = d_adv.argmin(1).numpy()
    drift = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(drift, (y, nearest), 1)
    return {"true_ratio": float(d_adv[rows, yt].mean() / max(float(clean_own), 1e-12)),
            "nearest_true": float((nearest == y).mean()), "drift": drift}
