"""A latent map: clean and adversarial features of a sample set at one layer, projected to 2-D for a whole ε grid.

The attack runs once for the whole grid (the sample set repeated per ε, one batched call with a per-sample ε); the
projection is fitted once on the clean features and every ε's adversarial features are placed into the same map,
so a page can scrub through ε by indexing. The result is persisted per (run weights, layer, sample set, attack,
ε grid, projection, seed) under ``ATLAS_HOME/latent/<run>/<id>.npz`` (plain arrays; loaded without pickle).
Example::

    spec = LatentSpec(run_id=run, dataset="digits", eps_grid=(0.05, 0.1, 0.2), projection="umap")
    latent = latent_map(spec, registry=Registry())
    xy = latent.positions(2)            # N×2 adversarial positions at ε = 0.2 (index 0 is clean)
"""

from __future__ import annotations

import io
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.attacks import make_attack
from core.data import Dataset
from core.errors import ConfigError
from core.latent import metrics
from core.latent.hooks import PENULTIMATE, describe_layer, extract_features
from core.latent.projection import LABELS, METHODS, fit_projector, tsne_joint, tsne_max_clean_points
from core.training.config import MAX_EPS
from core.utils import REPO_ROOT, atomic_write_bytes, config_hash, make_generator

log = logging.getLogger(__name__)

ATTACKS = ("pgd", "fgsm")
# Maps of the shipped models at the Latent page's defaults (``python -m core build-defaults``): the page's first
# view needs no attack and no UMAP. Found by the same file name as under ATLAS_HOME, the weights' digest included.
SHIPPED_LATENT_DIR = REPO_ROOT / "assets" / "latent"
PAGE_POINTS = 450  # the page's default number of points
MAX_FEATURE_VALUES = 60_000_000  # adversarial features held at once: E × N × D floats (~240 MB)


def _check_tsne_size(n: int, eps_count: int) -> None:
    """Refuse a t-SNE map too large for one fit before anything is attacked (a map used to be attacked for half a
    minute and then drawn as PCA instead)."""
    most = tsne_max_clean_points(eps_count)
    if n > most:
        raise ConfigError(f"t-SNE embeds each clean point with its {eps_count} adversarial twins in one fit, so it "
                          f"maps at most {most} points at {eps_count} ε; got {n}. Use fewer points or ε values, "
                          "or UMAP.")


@dataclass(frozen=True)
class LatentSpec:
    """What to map (hashable; its id names the stored file together with the run's weights)."""

    run_id: str
    dataset: str
    eps_grid: tuple[float, ...]
    split: str = "test"
    n: int = 450
    layer: str = PENULTIMATE
    attack: str = "pgd"
    norm: str = "linf"
    steps: int = 10
    projection: str = "umap"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {self.split!r}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 3:
            raise ConfigError(f"the sample size must be an integer ≥ 3, got {self.n!r}")
        if self.attack not in ATTACKS:
            raise ConfigError(f"attack must be one of {', '.join(ATTACKS)}, got {self.attack!r}")
        if self.norm not in ("linf", "l2"):
            raise ConfigError(f"norm must be 'linf' or 'l2', got {self.norm!r}")
        if self.projection not in METHODS:
            raise ConfigError(f"projection must be one of {', '.join(METHODS)}, got {self.projection!r}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError(f"steps must be a positive integer, got {self.steps!r}")
        grid = self.eps_grid
        if not grid or not all(isinstance(e, (int, float)) and math.isfinite(e) for e in grid):
            raise ConfigError(f"the ε grid must be a non-empty list of finite numbers, got {grid!r}")
        if min(grid) <= 0 or max(grid) > MAX_EPS[self.norm] or list(grid) != sorted(set(grid)):
            raise ConfigError(f"ε values must be increasing, distinct, in (0, {MAX_EPS[self.norm]:g}] for "
                              f"{self.norm}; got {grid!r}")
        if self.projection == "tsne":
            _check_tsne_size(self.n, len(grid))

    def latent_id(self, weights_sha256: str) -> str:
        return config_hash({**asdict(self), "weights_sha256": weights_sha256, "version": 1})


@dataclass(frozen=True)
class LatentMap:
    """Arrays for the page. Positions: index 0 is clean, index i ≥ 1 is ε = eps_grid[i-1]."""

    eps_grid: np.ndarray       # E
    indices: np.ndarray        # N (indices into the split)
    y: np.ndarray              # N
    pred_clean: np.ndarray     # N
    pred_adv: np.ndarray       # E × N
    clean_xy: np.ndarray       # N × 2
    adv_xy: np.ndarray         # E × N × 2
    scores: dict[str, np.ndarray]  # knn / silhouette / centroid measures per ε (and clean), drift E × K × K
    info: dict[str, Any] = field(default_factory=dict)  # method, note, layer label, seconds, feature dim

    def positions(self, index: int) -> np.ndarray:
        return self.clean_xy if index == 0 else self.adv_xy[index - 1]

    def predictions(self, index: int) -> np.ndarray:
        return self.pred_clean if index == 0 else self.pred_adv[index - 1]


def _predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.cat([model(x[i:i + batch_size].to(device)).argmax(1).cpu()
                              for i in range(0, len(x), batch_size)])
    finally:
        model.train(was_training)


def _attack_grid(model: nn.Module, data: Dataset, spec: LatentSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv E·N × …, adversarial predictions E·N) from one batched attack call over the whole ε grid."""
    kwargs: dict[str, Any] = {"norm": spec.norm}
    if spec.attack == "pgd":
        kwargs["steps"] = spec.steps
    attack = make_attack(spec.attack, **kwargs)
    grid = len(spec.eps_grid)
    device = next(model.parameters()).device
    xs = data.x.repeat(grid, *([1] * (data.x.dim() - 1))).to(device)
    ys = data.y.repeat(grid).to(device)
    eps = torch.tensor(spec.eps_grid, dtype=torch.float32).repeat_interleave(len(data.y)).to(device)
    result = attack(model, xs, ys, eps, bounds=data.bounds,
                    generator=make_generator(spec.seed, "latent", spec.attack, spec.norm))
    return result.x_adv.cpu(), result.logits_adv.argmax(1).cpu()


# The attacked points of the latest maps, kept in memory: another projection or layer of the same points (what a
# user tries next) reuses them instead of attacking again. Keyed by everything the attack depends on.
_ATTACKED: OrderedDict[tuple, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
_ATTACKED_LOCK = threading.Lock()
ATTACKED_KEEP, ATTACKED_MAX_BYTES = 4, 64 * 2**20


def _attacked(model: nn.Module, data: Dataset, spec: LatentSpec, weights: str) -> tuple[torch.Tensor, torch.Tensor]:
    key = (weights, spec.dataset, spec.split, spec.n, spec.eps_grid, spec.attack, spec.norm, spec.steps, spec.seed)
    with _ATTACKED_LOCK:
        if key in _ATTACKED:
            _ATTACKED.move_to_end(key)
            return _ATTACKED[key]
    out = _attack_grid(model, data, spec)
    if out[0].element_size() * out[0].nelement() <= ATTACKED_MAX_BYTES:
        with _ATTACKED_LOCK:
            _ATTACKED[key] = out
            while len(_ATTACKED) > ATTACKED_KEEP:
                _ATTACKED.popitem(last=False)
    return out


def compute_map(model: nn.Module, data: Dataset, spec: LatentSpec, *, weights: str | None = None) -> LatentMap:
    """Features, attack, projection and measures for ``data`` (already cut to the sample set). With ``weights`` (the
    checkpoint's SHA-256) the attacked points are shared with other maps of the same points and attack."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    clean_f = extract_features(model, data.x, spec.layer).numpy()
    pred_clean = _predict(model, data.x).numpy()
    grid, n = len(spec.eps_grid), len(data.y)
    if clean_f.shape[1] * n * grid > MAX_FEATURE_VALUES:
        raise ConfigError(f"layer {spec.layer} has {clean_f.shape[1]} features per point: {n} points × {grid} ε "
                          "would not fit in memory. Choose a later layer, fewer points or fewer ε values.")
    if spec.projection == "tsne":
        _check_tsne_size(n, grid)
    timings["features"] = time.perf_counter() - start
    start = time.perf_counter()
    x_adv, pred_adv = _attack_grid(model, data, spec) if weights is None else _attacked(model, data, spec, weights)
    timings["attack"] = time.perf_counter() - start
    adv_f = extract_features(model, x_adv, spec.layer).numpy().reshape(grid, n, -1)
    y = data.y.numpy()
    method, note = spec.projection, ""
    start = time.perf_counter()
    if method == "tsne":
        clean_xy, adv_xy = tsne_joint(clean_f, list(adv_f), seed=spec.seed)
        timings["fit"] = time.perf_counter() - start
    else:
        projector, clean_xy, note = fit_projector(method, clean_f, seed=spec.seed)
        method = "pca" if note else method
        timings["fit"] = time.perf_counter() - start
        start = time.perf_counter()
        adv_xy = projector.transform(adv_f.reshape(grid * n, -1)).reshape(grid, n, 2)
        timings["transform"] = time.perf_counter() - start
    start = time.perf_counter()
    scores = _scores(clean_f, adv_f, y, len(data.classes))
    timings["measures"] = time.perf_counter() - start
    info = {"method": method, "method_label": LABELS[method], "note": note, "layer": spec.layer,
            "layer_label": describe_layer(model, spec.layer), "feature_dim": int(clean_f.shape[1]),
            "seconds": timings}
    return LatentMap(eps_grid=np.asarray(spec.eps_grid, dtype=np.float64), indices=np.arange(n), y=y,
                     pred_clean=pred_clean, pred_adv=pred_adv.numpy().reshape(grid, n), clean_xy=clean_xy,
                     adv_xy=adv_xy, scores=scores, info=info)


def _scores(clean_f: np.ndarray, adv_f: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
    drift = [metrics.centroid_drift(clean_f, a, y, num_classes) for a in adv_f]
    return {
        "knn_clean": np.float64(metrics.knn_accuracy(clean_f, y, num_classes=num_classes)),
        "silhouette_clean": np.float64(metrics.silhouette(clean_f, y)),
        "knn_adv": np.array([metrics.knn_accuracy(clean_f, y, a, num_classes=num_classes) for a in adv_f]),
        "silhouette_adv": np.array([metrics.silhouette(a, y) for a in adv_f]),
        "true_ratio": np.array([d["true_ratio"] for d in drift]),
        "nearest_true": np.array([d["nearest_true"] for d in drift]),
        "drift": np.stack([d["drift"] for d in drift]),
    }


# persistence ---------------------------------------------------------------------------------------------------
ARRAYS = ("eps_grid", "indices", "y", "pred_clean", "pred_adv", "clean_xy", "adv_xy")


def eps_grid(top: float, model_eps: float | None, points: int = 8) -> tuple[tuple[float, ...], int]:
    """The attack's ε grid (at most ``points`` budgets in round steps up to ``top``, as the Robustness page's:
    0.05, 0.1, …, 0.3 rather than 0.0375, 0.075, …, 0.2625) and the index of the slider's first ε in it.

    The model's own ε (as the other pages open at) takes the place of the nearest grid point and is where the
    slider opens; without one in (0, top], the slider opens at the fourth budget."""
    from core.evaluation.bundle import curve_grid

    grid = np.asarray(curve_grid(top, points), dtype=float)
    points = len(grid)
    if not model_eps or not 0 < model_eps <= top:
        return tuple(float(e) for e in grid), min(3, points - 1)
    nearest = int(np.argmin(np.abs(grid - model_eps)))
    grid[nearest] = round(float(model_eps), 4)
    return tuple(float(e) for e in grid), nearest


def page_spec(run: dict[str, Any], primary: dict[str, Any], input_shape: tuple[int, ...], split_size: int,
              points: int = PAGE_POINTS) -> LatentSpec:
    """The map the Latent page draws first for ``run`` with ``primary`` as the primary model (whose norm and ε set
    the grid): the penultimate layer, PGD-10 in the primary's norm, UMAP, the first ``points`` test points."""
    from core.evaluation.bundle import eps_range

    norm = primary["norm"] if primary["norm"] in ("linf", "l2") else "linf"
    own_eps = primary["eps"] if primary["norm"] == norm else None
    grid, _ = eps_grid(eps_range(norm, input_shape, own_eps), own_eps)
    return LatentSpec(run_id=run["id"], dataset=run["dataset"], eps_grid=grid, n=min(points, split_size), norm=norm)


def latent_path(home: Path, spec: LatentSpec, weights_sha256: str) -> Path:
    return Path(home) / "latent" / spec.run_id / f"{spec.latent_id(weights_sha256)}.npz"


def save_map(path: Path, latent: LatentMap) -> None:
    buffer = io.BytesIO()
    arrays = {name: getattr(latent, name) for name in ARRAYS}
    arrays.update({f"score_{k}": np.asarray(v) for k, v in latent.scores.items()})
    np.savez(buffer, info=np.array(json.dumps(latent.info)), **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_map(path: Path) -> LatentMap:
    with np.load(path, allow_pickle=False) as blob:
        arrays = {name: blob[name] for name in ARRAYS}
        scores = {k[len("score_"):]: blob[k] for k in blob.files if k.startswith("score_")}
        info = json.loads(str(blob["info"]))
    return LatentMap(**arrays, scores=scores, info={**info, "cached": True})


def latent_map(spec: LatentSpec, *, registry: Any, model: nn.Module | None = None,
               device: str = "cpu", shipped: bool = True) -> LatentMap:
    """The stored map of ``spec`` if the run's weights are unchanged since (under ATLAS_HOME, else with
    ``shipped`` in assets/latent), else computed and stored."""
    from core.evaluation.suite import load_run_model, run_data, run_meta

    meta = run_meta(registry, spec.run_id)
    path = latent_path(registry.home, spec, meta["sha256"])
    if path.is_file():
        return load_map(path)
    if shipped and (SHIPPED_LATENT_DIR / spec.run_id / path.name).is_file():
        return load_map(SHIPPED_LATENT_DIR / spec.run_id / path.name)
    if model is None:
        model, meta = load_run_model(registry, spec.run_id, device)
    data = run_data(meta, spec.dataset, spec.split)
    if spec.n > len(data):
        raise ConfigError(f"the {spec.split} split of {spec.dataset} has {len(data)} points; asked for {spec.n}")
    latent = compute_map(model, data.subset(spec.n), spec, weights=meta["sha256"])
    save_map(path, latent)
    log.info("latent map %s: %s", path.name, latent.info["seconds"])
    return latent
