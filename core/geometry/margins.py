"""DeepFool margin distributions, per class and overall, and ρ_adv.

Papers: Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to fool deep neural networks",
CVPR 2016, https://arxiv.org/abs/1511.04599 (ρ_adv = mean ‖r(x)‖ / ‖x‖); Ortiz-Jimenez et al., "Optimism in the
Face of Adversity", Proc. IEEE 2021, https://arxiv.org/abs/2010.09624 (METHODS.md §1a: margins as a probe of the
boundary's geometry). The margin of a point is the norm of its DeepFool perturbation away from its *clean
prediction* (ℓ2 DeepFool for the ℓ2 margin, ℓ∞ DeepFool for the ℓ∞ margin), clipped to the data bounds as in the
evaluation suite. Points DeepFool does not flip within its iterations get margin +inf and ``converged`` False;
they are counted per class, never mixed into the statistics as finite numbers. Distributions and ρ_adv are over
correctly classified points (a misclassified point is already on the wrong side of its boundary). Example::

    result = deepfool_margins(MarginSpec(run_id="shipped-digits-smallcnn-pgd-at", dataset="digits"),
                              registry=Registry())
    result.summary("l2")        # per class: n, converged, q25, median, q75, mean; last row "all"
    result.rho_adv("l2")
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from torch import nn

from core.attacks.base import check_int, check_positive
from core.attacks.deepfool import deepfool_run
from core.data import Dataset
from core.errors import ConfigError
from core.geometry.analysis import (Analysis, AnalysisResult, Progress, ShouldStop, analysis, cancel_check,
                                    check_common, quantiles)

MAX_N = 2000
BATCH = 512
MARGIN_NORMS = ("l2", "linf")


@dataclass(frozen=True, kw_only=True)
class MarginSpec:
    """What to measure (hashable; its id, with the run's weights, names the stored result)."""

    kind: ClassVar[str] = "margins"

    run_id: str
    dataset: str
    split: str = "test"
    n: int = 450
    norms: tuple[str, ...] = MARGIN_NORMS
    steps: int = 50
    overshoot: float = 0.02
    candidates: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_common(self)
        if not isinstance(self.norms, tuple) or not self.norms or any(m not in MARGIN_NORMS for m in self.norms):
            raise ConfigError(f"norms must be a non-empty subset of {', '.join(MARGIN_NORMS)}, got {self.norms!r}")
        if len(set(self.norms)) != len(self.norms):
            raise ConfigError(f"norms are repeated: {self.norms!r}")
        check_int("steps", self.steps)
        check_int("candidates", self.candidates, low=2)
        check_positive("overshoot", self.overshoot, allow_zero=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class MarginResult(AnalysisResult):
    """Per point (N). ``margin_<norm>``: DeepFool perturbation size in that norm, +inf where not converged;
    ``x_<norm>``: the clean input's norm (for ρ_adv). Norms not in the spec are all-NaN arrays."""

    indices: np.ndarray
    y: np.ndarray
    pred: np.ndarray
    num_classes: np.ndarray     # scalar
    x_l2: np.ndarray
    x_linf: np.ndarray
    margin_l2: np.ndarray
    margin_linf: np.ndarray
    converged_l2: np.ndarray
    converged_linf: np.ndarray
    iterations_l2: np.ndarray
    iterations_linf: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> np.ndarray:
        return self.pred == self.y

    def _norm(self, norm: str) -> tuple[np.ndarray, np.ndarray]:
        if norm not in MARGIN_NORMS or norm not in self.info.get("norms", MARGIN_NORMS):
            raise ConfigError(f"this result has margins for {', '.join(self.info.get('norms', []))}, not {norm!r}")
        return getattr(self, f"margin_{norm}"), getattr(self, f"converged_{norm}")

    def rho_adv(self, norm: str = "l2") -> float:
        """ρ_adv = mean ‖r‖/‖x‖ over the correctly classified points that converged (NaN if none)."""
        margin, converged = self._norm(norm)
        keep = self.correct & converged & (getattr(self, f"x_{norm}") > 0)
        return float(np.mean(margin[keep] / getattr(self, f"x_{norm}")[keep])) if keep.any() else float("nan")

    def summary(self, norm: str = "l2") -> pd.DataFrame:
        """Per true class and overall ("all"): correct points, how many converged, quartiles of the margin (inf
        where more than a quarter/half/… did not converge) and the mean over the converged ones."""
        margin, converged = self._norm(norm)
        rows = []
        groups = [(str(c), self.correct & (self.y == c)) for c in range(int(self.num_classes))]
        for label, keep in groups + [("all", self.correct)]:
            q25, median, q75 = quantiles(margin[keep])
            finite = margin[keep & converged]
            rows.append({"class": label, "n": int(keep.sum()), "converged": int((keep & converged).sum()),
                         "not_converged": int((keep & ~converged).sum()), "q25": q25, "median": median,
                         "q75": q75, "mean": float(finite.mean()) if len(finite) else float("nan")})
        return pd.DataFrame(rows).set_index("class")


def compute_margins(model: nn.Module, data: Dataset, spec: MarginSpec, *, on_progress: Progress | None = None,
                    should_stop: ShouldStop | None = None) -> MarginResult:
    """DeepFool in every norm of the spec on ``data`` (already the sample), in batches of ``BATCH`` points."""
    start_t = time.perf_counter()
    device = next(model.parameters()).device
    n = len(data)
    flat = data.x.flatten(1)
    arrays: dict[str, np.ndarray] = {"x_l2": flat.norm(dim=1).double().numpy(),
                                     "x_linf": flat.abs().amax(dim=1).double().numpy()}
    pred = np.zeros(n, dtype=np.int64)
    total = n * len(spec.norms)
    for norm in MARGIN_NORMS:
        if norm not in spec.norms:
            arrays.update({f"margin_{norm}": np.full(n, np.nan), f"converged_{norm}": np.zeros(n, dtype=bool),
                           f"iterations_{norm}": np.zeros(n, dtype=np.int64)})
            continue
        margin, ok, iters = np.full(n, np.inf), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        for lo in range(0, n, BATCH):
            hi = min(lo + BATCH, n)
            done = spec.norms.index(norm) * n + lo
            tick = cancel_check(on_progress, should_stop, done, hi - lo, total, spec.steps, f"DeepFool {norm}")
            run = deepfool_run(model, data.x[lo:hi].to(device), norm=norm, steps=spec.steps,
                               overshoot=spec.overshoot, candidates=spec.candidates, bounds=data.bounds,
                               on_iteration=tick)
            size = run.r.flatten(1).norm(dim=1) if norm == "l2" else run.r.flatten(1).abs().amax(dim=1)
            conv = run.converged.cpu().numpy()
            margin[lo:hi] = np.where(conv, size.cpu().double().numpy(), np.inf)
            ok[lo:hi], iters[lo:hi] = conv, run.iterations.cpu().numpy()
            pred[lo:hi] = run.pred.cpu().numpy()
        arrays.update({f"margin_{norm}": margin, f"converged_{norm}": ok, f"iterations_{norm}": iters})
    result = MarginResult(indices=np.arange(n), y=data.y.numpy(), pred=pred,
                          num_classes=np.array(data.num_classes), **arrays,
                          info={"norms": list(spec.norms), "seconds": time.perf_counter() - start_t})
    for norm in spec.norms:
        overall = result.summary(norm).loc["all"]
        result.info[f"rho_adv_{norm}"] = result.rho_adv(norm)
        result.info[f"median_{norm}"] = float(overall["median"])
        result.info[f"not_converged_{norm}"] = int(overall["not_converged"])
    result.info["n_correct"] = int(result.correct.sum())
    return result


def deepfool_margins(spec: MarginSpec, *, registry: Any, model: nn.Module | None = None, device: str = "cpu",
                     on_progress: Progress | None = None, should_stop: ShouldStop | None = None) -> MarginResult:
    """The stored result of ``spec`` if the run's weights are unchanged since, else computed and stored."""
    return analysis(spec, registry=registry, model=model, device=device, on_progress=on_progress,
                    should_stop=should_stop)


ANALYSIS = Analysis(kind=MarginSpec.kind, spec=MarginSpec, result=MarginResult, compute=compute_margins,
                    max_n=MAX_N)
