"""Universal adversarial perturbation (UAP): one v that fools the model on most images.

Paper: Moosavi-Dezfooli, Fawzi, Fawzi, Frossard, "Universal adversarial perturbations", CVPR 2017,
https://arxiv.org/abs/1610.08401, as in the authors' code (METHODS.md §1f): passes over the shuffled images; for
an image with f(x+v) = f(x), Δv = DeepFool(x+v) (ℓ2, at most 10 iterations, overshoot 0.02), accepted only if it
converged; v ← Proj_{‖·‖p ≤ ξ}(v + Δv); stop once the fooling rate (share of images whose prediction changes,
whatever the label) reaches 1 − δ (δ = 0.2) or after ``max_passes``. The paper's explanation (its §4) is also
computed: singular values of the stacked normalised DeepFool normals r(x)/‖r(x)‖ of the images decay much faster
than those of random Gaussian vectors of the same shape (the normals share a low-dimensional subspace).

Deviation from the authors, for speed: images go in chunks of ``batch_size``. The images of a chunk that v does
not fool yet are attacked together (one batched DeepFool) at the v of the chunk's start, then their converged Δv
are applied one by one, each followed by the projection — exactly the authors' loop when ``batch_size=1``; with
larger chunks a later Δv of the chunk was computed at a slightly stale v. On small inputs (8×8 digits) the
fooling rate does not rise monotonically from pass to pass, with chunks or without (the projection keeps pulling
v around), so the result's v is the one of the pass with the highest fooling rate (``info["best_pass"]``), not
necessarily the last; ``fooling_rate`` lists every pass. Inputs are clipped to the data bounds
(f is evaluated at clip(x + v)), as everywhere in the product. Example::

    spec = UAPSpec(run_id="shipped-digits-smallcnn-erm", dataset="digits", norm="l2", xi=1.5)
    uap = universal_perturbation(spec, registry=Registry())
    uap.v, uap.fooling_rate, uap.adv_label_counts, uap.singular_normals, uap.singular_random
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from core.attacks.base import check_int, check_positive, eval_mode
from core.attacks.deepfool import deepfool_run
from core.attacks.gradient import clip_to
from core.attacks.norms import project, threat_norm
from core.data import Dataset
from core.errors import ConfigError
from core.geometry.analysis import (Analysis, AnalysisCancelled, AnalysisResult, Progress, ShouldStop, analysis,
                                    check_common, check_finite)
from core.training.config import MAX_EPS
from core.utils import make_generator

MAX_N = 2000
MAX_PASSES = 20
MAX_BATCH = 256
NORMAL_STEPS = 50
PREDICT_BATCH = 1024


@dataclass(frozen=True, kw_only=True)
class UAPSpec:
    """What to compute (hashable; its id, with the run's weights, names the stored result). ``holdout_n`` points of
    the other split measure how well v transfers to unseen images (0: none)."""

    kind: ClassVar[str] = "uap"

    run_id: str
    dataset: str
    split: str = "train"
    n: int = 500
    norm: str = "l2"
    xi: float = 1.5
    delta: float = 0.2
    max_passes: int = 5
    df_steps: int = 10
    overshoot: float = 0.02
    candidates: int = 10
    batch_size: int = 16
    holdout_n: int = 450
    seed: int = 0

    def __post_init__(self) -> None:
        check_common(self)
        if self.norm not in ("l2", "linf"):
            raise ConfigError(f"a universal perturbation is bounded in 'l2' or 'linf', got {self.norm!r}")
        check_finite("ξ (xi)", self.xi, low=0.0, high=MAX_EPS[self.norm])
        check_finite("δ (delta)", self.delta, low=0.0, high=1.0)
        for name in ("max_passes", "df_steps", "batch_size"):
            check_int(name, getattr(self, name))
        check_int("candidates", self.candidates, low=2)
        check_int("holdout_n", self.holdout_n, low=0)
        check_positive("overshoot", self.overshoot, allow_zero=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class UAPResult(AnalysisResult):
    """``v`` (input shape; the best pass's); ``fooling_rate`` and ``accepted`` (DeepFool updates kept) per pass;
    label counts of f(x) and f(x+v) over the images (the dominant labels); singular values of the normalised
    DeepFool normals and of random Gaussian vectors of the same shape, both sorted descending; hold-out fooling
    rate (NaN if none)."""

    v: np.ndarray
    fooling_rate: np.ndarray
    accepted: np.ndarray
    clean_label_counts: np.ndarray
    adv_label_counts: np.ndarray
    singular_normals: np.ndarray
    singular_random: np.ndarray
    fooling_rate_holdout: np.ndarray   # scalar
    info: dict[str, Any] = field(default_factory=dict)


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with eval_mode(model), torch.no_grad():
        return torch.cat([model(x[i:i + PREDICT_BATCH]).argmax(1) for i in range(0, len(x), PREDICT_BATCH)])


def fooling_rate(model: nn.Module, x: torch.Tensor, v: torch.Tensor, bounds: tuple[float, float] | None,
                 pred: torch.Tensor | None = None) -> float:
    """Share of ``x`` whose prediction at clip(x + v) differs from the clean one."""
    pred = _predict(model, x) if pred is None else pred
    return float((_predict(model, clip_to(x + v, bounds)) != pred).float().mean())


def _pass(model: nn.Module, x: torch.Tensor, pred: torch.Tensor, v: torch.Tensor, spec: UAPSpec, batch: int,
          bounds: tuple[float, float] | None, order: torch.Tensor, tick: Any) -> tuple[torch.Tensor, int]:
    """One pass over ``x`` in ``order``: returns the new v and how many DeepFool updates were accepted."""
    xi = torch.tensor([spec.xi], device=x.device)
    accepted = 0
    for lo in range(0, len(order), batch):
        tick(lo / len(order))
        chunk = order[lo:lo + batch]
        x_pert = clip_to(x[chunk] + v, bounds)
        with eval_mode(model), torch.no_grad():
            unfooled = model(x_pert).argmax(1) == pred[chunk]
        if not unfooled.any():
            continue
        run = deepfool_run(model, x_pert[unfooled], norm="l2", steps=spec.df_steps, overshoot=spec.overshoot,
                           candidates=spec.candidates, bounds=bounds)
        for r in run.r[run.converged]:
            v = project((v + r).unsqueeze(0), xi, spec.norm)[0]
            accepted += 1
    return v, accepted


def singular_values(model: nn.Module, x: torch.Tensor, spec: UAPSpec,
                    bounds: tuple[float, float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Singular values of the stacked r(x)/‖r(x)‖ (converged ℓ2 DeepFool, 50 iterations) and of as many
    normalised Gaussian vectors (seeded), both in float64."""
    run = deepfool_run(model, x, norm="l2", steps=NORMAL_STEPS, overshoot=spec.overshoot,
                       candidates=spec.candidates, bounds=bounds)
    r = run.r[run.converged].flatten(1).double().cpu()
    r = r[r.norm(dim=1) > 0]
    normals = r / r.norm(dim=1, keepdim=True)
    gen = make_generator(spec.seed, "uap-random-normals")
    noise = torch.randn(normals.shape, generator=gen, dtype=torch.float64)
    noise = noise / noise.norm(dim=1, keepdim=True)
    if len(normals) == 0:
        return np.zeros(0), np.zeros(0)
    return torch.linalg.svdvals(normals).numpy(), torch.linalg.svdvals(noise).numpy()


def compute_uap(model: nn.Module, data: Dataset, spec: UAPSpec, *, on_progress: Progress | None = None,
                should_stop: ShouldStop | None = None, holdout: Dataset | None = None) -> UAPResult:
    """The UAP of ``data`` (already the sample), its per-pass fooling rates and the normals' singular values."""
    start_t = time.perf_counter()
    notes: list[str] = []
    passes, batch = spec.max_passes, spec.batch_size
    if passes > MAX_PASSES:
        notes.append(f"asked for {passes} passes; capped at {MAX_PASSES}")
        passes = MAX_PASSES
    if batch > MAX_BATCH:
        notes.append(f"asked for chunks of {batch} images; capped at {MAX_BATCH}")
        batch = MAX_BATCH
    device = next(model.parameters()).device
    x = data.x.to(device)
    pred = _predict(model, x)
    v = torch.zeros_like(x[0])
    best_v = v
    gen = make_generator(spec.seed, "uap-order")
    rates, accepted = [], []
    for p in range(passes):
        def tick(fraction: float, p: int = p) -> None:
            if should_stop is not None and should_stop():
                raise AnalysisCancelled(f"universal perturbation cancelled in pass {p + 1}")
            if on_progress is not None:
                on_progress((p + fraction) / passes,
                            f"pass {p + 1}/{passes}: {rates[-1] if rates else 0.0:.0%} fooled after last pass")

        order = torch.randperm(len(x), generator=gen).to(device)
        v, kept = _pass(model, x, pred, v, spec, batch, data.bounds, order, tick)
        rates.append(fooling_rate(model, x, v, data.bounds, pred))
        accepted.append(kept)
        if rates[-1] > max(rates[:-1], default=-1.0):
            best_v = v.clone()
        if rates[-1] >= 1 - spec.delta:
            break
    best_pass = int(np.argmax(rates))
    v = best_v
    adv = _predict(model, clip_to(x + v, data.bounds))
    k = data.num_classes
    sv_normals, sv_random = singular_values(model, x, spec, data.bounds)
    holdout_rate = math.nan
    if holdout is not None and len(holdout):
        holdout_rate = fooling_rate(model, holdout.x.to(device), v, holdout.bounds)
    adv_counts = torch.bincount(adv.cpu(), minlength=k).numpy()
    info = {"norm": spec.norm, "xi": spec.xi, "passes": len(rates), "best_pass": best_pass + 1,
            "reached_target": rates[-1] >= 1 - spec.delta,
            "norm_v": float(threat_norm(v.unsqueeze(0), spec.norm)[0]), "dominant_label": int(adv_counts.argmax()),
            "dominant_share": float(adv_counts.max() / max(len(x), 1)), "n": len(x),
            "n_holdout": 0 if holdout is None else len(holdout), "notes": notes,
            "seconds": time.perf_counter() - start_t}
    return UAPResult(v=v.cpu().numpy(), fooling_rate=np.array(rates), accepted=np.array(accepted),
                     clean_label_counts=torch.bincount(pred.cpu(), minlength=k).numpy(), adv_label_counts=adv_counts,
                     singular_normals=sv_normals, singular_random=sv_random,
                     fooling_rate_holdout=np.array(holdout_rate), info=info)


def universal_perturbation(spec: UAPSpec, *, registry: Any, model: nn.Module | None = None, device: str = "cpu",
                           on_progress: Progress | None = None, should_stop: ShouldStop | None = None) -> UAPResult:
    """The stored result of ``spec`` if the run's weights are unchanged since, else computed and stored."""
    return analysis(spec, registry=registry, model=model, device=device, on_progress=on_progress,
                    should_stop=should_stop)


ANALYSIS = Analysis(kind=UAPSpec.kind, spec=UAPSpec, result=UAPResult, compute=compute_uap, max_n=MAX_N)
