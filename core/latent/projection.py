"""2-D projections of layer features: UMAP (fit on clean points, adversarial points placed by ``transform``), PCA
(instant) and t-SNE (no new points: clean and adversarial features are embedded together in one fit).

UMAP runs on exact Euclidean distances computed by torch and handed over as a precomputed metric: for the few
thousand points of this page that is exact, deterministic for a seed, and far faster than umap-learn's own
small-data path (one Python call per pair of points). Its numba code compiles once per process (~15-20 s on a
small CPU); :func:`warm_up` does that in the background when the dashboard starts, and ``NUMBA_CACHE_DIR`` (set
by ``core``) keeps what can be cached under ATLAS_HOME. Example::

    projector, clean_xy, note = fit_projector("umap", clean_feats, seed=0)
    adv_xy = projector.transform(adv_feats)
"""

from __future__ import annotations

import logging
import time
import warnings
from typing import Protocol

import numpy as np
import torch

from core.errors import ConfigError

log = logging.getLogger(__name__)

METHODS = ("umap", "pca", "tsne")
LABELS = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE"}
N_NEIGHBORS = 15
MIN_DIST = 0.1
N_EPOCHS = 200
# t-SNE embeds every clean point with its adversarial twin at each ε in one fit: this bounds that fit's size and
# time (1,800 points took 5.3 s in bench/RESULTS.md; a fit near this cap took 1–2 minutes on 2 busy cores, not
# benchmarked). tsne_max_clean_points turns it into a cap on clean points, which LatentSpec checks before any
# attack runs.
TSNE_MAX_POINTS = 6000
# 250 early-exaggeration iterations + 250 more instead of scikit-learn's 1000: on 1,800 points (bench_tsne's),
# 1.6× faster for 10-NN trustworthiness 0.9951 against 0.9955 (bench/bench_tsne.py, bench/RESULTS.md).
TSNE_ITERATIONS = 500


class Projector(Protocol):
    def transform(self, features: np.ndarray) -> np.ndarray: ...


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return torch.cdist(torch.from_numpy(a).double(), torch.from_numpy(b).double()).float().numpy()


class PCAProjector:
    """The top two principal axes of the clean features (signs fixed so a seed is not even needed)."""

    def __init__(self, clean: np.ndarray) -> None:
        self.mean = clean.mean(axis=0, keepdims=True)
        _, _, vt = np.linalg.svd(clean - self.mean, full_matrices=False)
        axes = vt[:2]
        if len(axes) < 2:
            axes = np.vstack([axes, np.zeros((2 - len(axes), clean.shape[1]), dtype=axes.dtype)])
        flip = np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])
        self.axes = axes * np.where(flip == 0, 1.0, flip)[:, None]

    def transform(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) @ self.axes.T).astype(np.float32)


class UMAPProjector:
    """umap-learn on precomputed exact distances; new points are placed with the fitted model's ``transform``."""

    def __init__(self, clean: np.ndarray, *, seed: int, n_neighbors: int = N_NEIGHBORS,
                 min_dist: float = MIN_DIST, n_epochs: int = N_EPOCHS) -> None:
        import umap

        self.clean = clean
        self.model = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, n_epochs=n_epochs, metric="precomputed",
                               random_state=seed, transform_seed=seed)
        with warnings.catch_warnings():
            # "precomputed metric: inverse_transform unavailable" and "random_state disables parallelism": known.
            warnings.simplefilter("ignore", UserWarning)
            self.embedding = self.model.fit_transform(_distances(clean, clean)).astype(np.float32)

    def transform(self, features: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return self.model.transform(_distances(features, self.clean)).astype(np.float32)


def fit_projector(method: str, clean: np.ndarray, *, seed: int = 0) -> tuple[Projector, np.ndarray, str]:
    """(projector, clean N×2, note). Falls back to PCA, saying why in ``note``, when UMAP has too few points."""
    if method not in ("umap", "pca"):
        raise ConfigError(f"projection must be one of umap, pca (t-SNE embeds jointly: use tsne_joint), "
                          f"got {method!r}")
    _check_features(clean)
    if method == "umap" and len(clean) <= N_NEIGHBORS + 1:
        note = (f"UMAP needs more than {N_NEIGHBORS + 1} points for its {N_NEIGHBORS} neighbours; "
                f"got {len(clean)}, so this map is PCA.")
        method = "pca"
    else:
        note = ""
    if method == "pca":
        projector = PCAProjector(clean)
        return projector, projector.transform(clean), note
    projector_u = UMAPProjector(clean, seed=seed)
    return projector_u, projector_u.embedding, note


def tsne_max_clean_points(eps_count: int) -> int:
    """The most clean points a t-SNE map over ``eps_count`` ε can hold: each comes with ``eps_count`` adversarial
    twins, and :func:`tsne_joint` embeds all of them in one fit of at most ``TSNE_MAX_POINTS``."""
    if eps_count < 1:
        raise ConfigError(f"a t-SNE map needs at least one ε, got {eps_count}")
    return TSNE_MAX_POINTS // (1 + eps_count)


def tsne_joint(clean: np.ndarray, adversarial: list[np.ndarray], *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """t-SNE of the clean and every ε's adversarial features in one fit: (clean N×2, adversarial E×N×2)."""
    from sklearn.manifold import TSNE

    _check_features(clean)
    stacked = np.concatenate([clean, *adversarial])
    if len(stacked) > TSNE_MAX_POINTS:
        raise ConfigError(f"t-SNE embeds all {len(stacked)} clean and adversarial points in one fit; the limit is "
                          f"{TSNE_MAX_POINTS}. Use fewer points or ε values, or UMAP.")
    perplexity = float(min(30.0, max(2.0, (len(stacked) - 1) / 3)))
    xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
              max_iter=TSNE_ITERATIONS).fit_transform(stacked)
    xy = xy.astype(np.float32)
    n = len(clean)
    return xy[:n], xy[n:].reshape(len(adversarial), n, 2)


def _check_features(features: np.ndarray) -> None:
    if features.ndim != 2 or len(features) < 3:
        raise ConfigError(f"a projection needs at least 3 points with features, got shape {features.shape}")
    if not np.isfinite(features).all():
        raise ConfigError("the features contain NaN or infinite values: the model's activations overflowed")


def warm_up(seed: int = 0) -> float:
    """Compile UMAP's numba code in this process (fit + transform on a small random set); returns seconds."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    clean = rng.normal(size=(120, 16)).astype(np.float32)
    projector = UMAPProjector(clean, seed=seed, n_epochs=20)
    projector.transform(clean[:10] + 0.01)
    seconds = time.perf_counter() - start
    log.info("UMAP warmed up in %.1f s", seconds)
    return seconds
