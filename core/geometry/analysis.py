"""The heavy geometry analyses, persisted: DeepFool margins, DCT-subspace margins, universal perturbations.

Each analysis module (margins.py, dct.py, universal.py) declares an :class:`Analysis`: a frozen spec (validated,
hashable, with a ``kind``), a result dataclass of plain numpy arrays plus an ``info`` dict, and a pure compute
function ``(model, data, spec, *, on_progress, should_stop)``. :func:`analysis` looks the result up under
``ATLAS_HOME/geometry/<run>/<kind>-<id>.npz``, the id hashing the spec with the run's weights SHA-256, and computes
and stores it only when it is missing, so a page and a background job (kind "geometry") share one result. Files
are written atomically and read with ``allow_pickle=False``. Example::

    spec = spec_from_dict({"kind": "dct", "run_id": "shipped-digits-smallcnn-erm", "dataset": "digits"})
    result = analysis(spec, registry=Registry(), on_progress=lambda f, text: print(f, text))
"""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import nn

from core.data import DATASETS, Dataset
from core.errors import AtlasError, ConfigError, DataError
from core.utils import atomic_write_bytes, config_hash

log = logging.getLogger(__name__)

Progress = Callable[[float, str], None]
ShouldStop = Callable[[], bool]
RESULT_FORMAT = 1
MODULES = {"margins": "core.geometry.margins", "dct": "core.geometry.dct", "uap": "core.geometry.universal"}


class AnalysisCancelled(AtlasError):
    """``should_stop`` asked the analysis to end; nothing was persisted."""


@dataclass(frozen=True)
class Analysis:
    """One kind of persisted geometry analysis (declared at the bottom of its module as ``ANALYSIS``)."""

    kind: str
    spec: type
    result: type
    compute: Callable[..., Any]
    max_n: int


@dataclass(frozen=True)
class AnalysisResult:
    """Base of the result dataclasses: every field but ``info`` is a numpy array; ``info`` is JSON-able."""

    def save(self, path: Path) -> None:
        arrays = {f.name: np.asarray(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "info"}
        buffer = io.BytesIO()
        np.savez(buffer, info=np.array(json.dumps(self.info)), format=np.array(RESULT_FORMAT), **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: Path) -> "AnalysisResult":
        with np.load(path, allow_pickle=False) as blob:
            if int(blob["format"]) != RESULT_FORMAT:
                raise DataError(f"{path.name}: geometry result format {int(blob['format'])} is not "
                                f"{RESULT_FORMAT}; delete it to recompute")
            names = [f.name for f in dataclasses.fields(cls) if f.name != "info"]
            arrays = {name: blob[name] for name in names}
            info = json.loads(str(blob["info"]))
        return cls(**arrays, info={**info, "cached": True})


def analyses() -> dict[str, Analysis]:
    """kind → Analysis (imported on first use: the modules import this one)."""
    return {kind: importlib.import_module(module).ANALYSIS for kind, module in MODULES.items()}


def spec_from_dict(config: dict[str, Any]) -> Any:
    """A spec from its dict (as job arguments carry it); ``kind`` picks the analysis."""
    config = dict(config)
    kind = config.pop("kind", None)
    if kind not in MODULES:
        raise ConfigError(f"unknown geometry analysis {kind!r}; choose from {', '.join(MODULES)}")
    spec_cls = analyses()[kind].spec
    known = {f.name for f in dataclasses.fields(spec_cls)}
    if set(config) - known:
        raise ConfigError(f"unknown {kind} settings: {', '.join(sorted(set(config) - known))}")
    return spec_cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.items()})


def check_common(spec: Any) -> None:
    """Validation shared by every spec: run, dataset, split, sample size, seed."""
    if not isinstance(spec.run_id, str) or not spec.run_id:
        raise ConfigError(f"run_id must be a non-empty string, got {spec.run_id!r}")
    if spec.dataset not in DATASETS:
        raise DataError(f"unknown dataset {spec.dataset!r}")
    if spec.split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {spec.split!r}")
    if isinstance(spec.n, bool) or not isinstance(spec.n, int) or spec.n < 1:
        raise ConfigError(f"the sample size n must be a positive integer, got {spec.n!r}")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int):
        raise ConfigError(f"seed must be an integer, got {spec.seed!r}")


def check_finite(name: str, value: object, *, low: float, high: float | None = None) -> None:
    """A number > ``low`` (and ≤ ``high``), finite: refuses NaN, inf, booleans and strings by name."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if value <= low or (high is not None and value > high):
        raise ConfigError(f"{name} must be in ({low:g}, {high:g}], got {value!r}" if high is not None
                          else f"{name} must be > {low:g}, got {value!r}")


def quantiles(values: np.ndarray) -> tuple[float, float, float]:
    """(q25, median, q75) with linear interpolation, where +inf (not converged) counts as the largest value: a
    quantile that lands on or next to an inf is inf. NaN for an empty array."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    if len(v) == 0:
        return (math.nan, math.nan, math.nan)
    out = []
    for q in (0.25, 0.5, 0.75):
        pos = q * (len(v) - 1)
        lo, hi = math.floor(pos), math.ceil(pos)
        frac = pos - lo
        if frac == 0 or v[lo] == v[hi]:
            out.append(float(v[lo]))
        elif math.isinf(v[hi]):
            out.append(math.inf)
        else:
            out.append(float(v[lo] + frac * (v[hi] - v[lo])))
    return (out[0], out[1], out[2])


def sample_data(data: Dataset, n: int, max_n: int, kind: str) -> tuple[Dataset, list[str]]:
    """The first ``n`` points of the split, capped at the analysis's limit and the split's size, with notes."""
    notes = []
    take = n
    if take > max_n:
        notes.append(f"asked for {n} points; the {kind} analysis is capped at {max_n}")
        take = max_n
    if take > len(data):
        notes.append(f"asked for {take} points; the {data.split} split of {data.name} has {len(data)}")
        take = len(data)
    return data.subset(take), notes


def cancel_check(on_progress: Progress | None, should_stop: ShouldStop | None, done: float, rows: float,
                 total: float, steps: int, label: str) -> Callable[[int, int], None]:
    """An ``on_iteration`` callback for DeepFool over ``rows`` of ``total`` units: reports the fraction done
    (``done`` units before this call) and raises :class:`AnalysisCancelled` when ``should_stop`` says so."""

    def tick(iteration: int, active: int) -> None:
        if should_stop is not None and should_stop():
            raise AnalysisCancelled(f"{label} cancelled at iteration {iteration}")
        if on_progress is not None:
            fraction = (done + rows * iteration / steps) / max(total, 1)
            on_progress(min(fraction, 1.0), f"{label}: iteration {iteration}/{steps}, {active} points left")

    return tick


def analysis_id(spec: Any, weights_sha256: str) -> str:
    return config_hash({**spec.to_dict(), "weights_sha256": weights_sha256, "version": RESULT_FORMAT})


def result_path(home: Path, spec: Any, weights_sha256: str) -> Path:
    return Path(home) / "geometry" / spec.run_id / f"{spec.kind}-{analysis_id(spec, weights_sha256)}.npz"


def analysis(spec: Any, *, registry: Any, model: nn.Module | None = None, device: str = "cpu",
             on_progress: Progress | None = None, should_stop: ShouldStop | None = None) -> Any:
    """The stored result of ``spec`` if the run's weights are unchanged since, else computed and stored.

    ``model`` (optional) is the run's already-loaded model; it must be the run's final weights. Sizes beyond the
    analysis's limits are capped and the note is in ``result.info["notes"]``.
    """
    from core.evaluation.suite import load_run_model, run_data, run_meta

    kind = analyses()[spec.kind]
    meta = run_meta(registry, spec.run_id)
    path = result_path(registry.home, spec, meta["sha256"])
    if path.is_file():
        return kind.result.load(path)
    if model is None:
        model, meta = load_run_model(registry, spec.run_id, device)
    data, notes = sample_data(run_data(meta, spec.dataset, spec.split), spec.n, kind.max_n, spec.kind)
    extra: dict[str, Dataset] = {}
    if getattr(spec, "holdout_n", 0):
        other = "test" if spec.split == "train" else "train"
        extra["holdout"], more = sample_data(run_data(meta, spec.dataset, other), spec.holdout_n, kind.max_n,
                                             spec.kind)
        notes += [f"hold-out: {note}" for note in more]
    result = kind.compute(model, data, spec, on_progress=on_progress, should_stop=should_stop, **extra)
    result.info["notes"] = notes + list(result.info.get("notes", []))
    result.info["spec"] = spec.to_dict()
    result.save(path)
    log.info("geometry %s for %s: %s", spec.kind, spec.run_id, path.name)
    return result


def stored_analysis(spec: Any, *, registry: Any) -> Any | None:
    """The stored result of ``spec`` for the run's current weights, or None when it has not been computed."""
    from core.evaluation.suite import run_meta

    path = result_path(registry.home, spec, run_meta(registry, spec.run_id)["sha256"])
    return analyses()[spec.kind].result.load(path) if path.is_file() else None
