"""Persisted evaluations: one per-sample table per (run, data subset, attack config, ε grid), computed once.

``evaluate(spec)`` looks the spec's id up in the registry first; only when it is missing (or its parquet file has
gone) does it run the attack, then it writes the table as parquet under ``ATLAS_HOME/evaluations/<run>/`` (an
atomic rename) and its summary into the registry's ``evaluations`` table. The dashboard, the CLI and background jobs
share it, so a table computed by a job is the one the page reads.

Minimal-norm attacks (DeepFool, FMN, C&W) run once with ε capped at the norm's limit; the table then carries a
``min_norm`` column (0 for points misclassified clean, inf where the attack failed) and robust accuracy at any ε is
read off it, so one run gives the whole robustness curve.
"""

from __future__ import annotations

import io
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.attacks import ATTACKS, Attack, make_attack
from core.data import DATASETS, Dataset, load_dataset
from core.errors import AtlasError, ConfigError, DataError
from core.evaluation.table import eps_column, per_sample_table
from core.models import checkpoint_paths, load_checkpoint, read_checkpoint_meta
from core.store import Registry
from core.training.config import MAX_EPS
from core.utils import atomic_write_bytes, config_hash

log = logging.getLogger(__name__)

MINIMAL_NORM_ATTACKS = ("deepfool", "fmn", "cw")
TABLE_FORMAT = 1


class EvaluationCancelled(AtlasError):
    """A caller's ``should_stop`` asked the evaluation to end; nothing was persisted."""


def _freeze_kwargs(kwargs: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(kwargs.items()))


@dataclass(frozen=True, kw_only=True)
class EvalSpec:
    """What an evaluation is: hashable (a cache key) and hashed into its id."""

    run_id: str
    dataset: str
    attack: str
    attack_kwargs: tuple[tuple[str, Any], ...] = ()
    eps_grid: tuple[float, ...] = ()
    split: str = "test"
    n: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.attack not in ATTACKS:
            raise ConfigError(f"unknown attack {self.attack!r}; choose from {', '.join(sorted(ATTACKS))}")
        if self.dataset not in DATASETS:
            raise DataError(f"unknown dataset {self.dataset!r}")
        if self.split not in ("train", "test"):
            raise ConfigError(f"split must be 'train' or 'test', got {self.split!r}")
        if self.n is not None and (isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1):
            raise ConfigError(f"n must be a positive integer, got {self.n!r}")
        if self.minimal_norm:
            object.__setattr__(self, "eps_grid", (float(MAX_EPS[self.norm]),))
        if not self.eps_grid:
            raise ConfigError("an evaluation needs at least one ε")
        for eps in self.eps_grid:
            if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not math.isfinite(eps) or eps < 0:
                raise ConfigError(f"every ε must be a finite number ≥ 0, got {eps!r}")
            if eps > MAX_EPS[self.norm]:
                raise ConfigError(f"ε = {eps:g} is beyond the {self.norm} limit {MAX_EPS[self.norm]:g}")
        object.__setattr__(self, "eps_grid", tuple(float(e) for e in self.eps_grid))

    @classmethod
    def make(cls, *, attack_kwargs: dict[str, Any] | None = None, **fields: Any) -> "EvalSpec":
        return cls(attack_kwargs=_freeze_kwargs(attack_kwargs or {}), **fields)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "EvalSpec":
        """Inverse of ``to_dict`` (the job queue stores specs as JSON)."""
        fields = {k: v for k, v in data.items() if k != "format"}
        try:
            return cls.make(attack_kwargs=fields.pop("attack_kwargs", {}),
                            eps_grid=tuple(fields.pop("eps_grid", ())), **fields)
        except TypeError as exc:
            raise ConfigError(f"malformed evaluation spec: {exc}") from exc

    @property
    def norm(self) -> str:
        """The threat model: as given, else the attack's own default (C&W is ℓ2-only)."""
        return dict(self.attack_kwargs).get("norm", ATTACKS[self.attack].config_class.norm)

    @property
    def minimal_norm(self) -> bool:
        return self.attack in MINIMAL_NORM_ATTACKS

    def build_attack(self) -> Attack:
        return make_attack(self.attack, **dict(self.attack_kwargs))

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["attack_kwargs"] = dict(self.attack_kwargs)
        out["eps_grid"] = list(self.eps_grid)
        out["format"] = TABLE_FORMAT
        return out

    @property
    def eval_id(self) -> str:
        """Hash of the spec and of the attack's resolved config, its defaults included: when a default changes (the
        quick ensemble's targets, say), stored tables computed with the old one are not taken for the new one."""
        return config_hash({**self.to_dict(), "attack_config": asdict(self.build_attack().config)}, length=16)


@dataclass
class Evaluation:
    spec: EvalSpec
    table: pd.DataFrame
    summary: dict[str, Any]
    cached: bool = field(default=False)


def load_run_model(registry: Registry, run_id: str, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """The final model of a registered run, in eval mode on ``device``."""
    run = registry.get_run(run_id)
    if not run["checkpoint_path"]:
        raise ConfigError(f"run {run_id} has no final checkpoint yet (status {run['status']})")
    model, meta = load_checkpoint(run["checkpoint_path"], map_location=device)
    return model.eval(), meta


def run_meta(registry: Registry, run_id: str) -> dict[str, Any]:
    """A run's checkpoint JSON (dataset parameters included), read without loading the weights."""
    run = registry.get_run(run_id)
    if not run["checkpoint_path"]:
        raise ConfigError(f"run {run_id} has no final checkpoint yet (status {run['status']})")
    return read_checkpoint_meta(checkpoint_paths(run["checkpoint_path"])[1])


def run_data(meta: dict[str, Any], dataset: str, split: str = "test", n: int | None = None) -> Dataset:
    """The data a model is evaluated on: its own dataset with its own parameters, or another dataset as given."""
    params = meta.get("dataset_params", {}) if dataset == meta.get("dataset") else {}
    data = load_dataset(dataset, split, **params)
    return data.subset(n) if n is not None else data


def add_min_norm(table: pd.DataFrame, spec: EvalSpec) -> pd.DataFrame:
    """The minimal perturbation norm per point, in the threat model's norm (0 if wrong clean, inf if not broken)."""
    col = eps_column(spec.eps_grid[0])
    norm_col = f"{'linf' if spec.norm == 'linf' else 'l2'}@{col}"
    fooled = table[f"pred_adv@{col}"] != table["y"]
    wrong = table["pred_clean"] != table["y"]
    min_norm = np.where(fooled, table[norm_col].to_numpy(), np.inf)
    table["min_norm"] = np.where(wrong, 0.0, min_norm).astype(np.float64)
    return table


def summarize_table(table: pd.DataFrame, spec: EvalSpec) -> dict[str, Any]:
    clean = (table["pred_clean"] == table["y"]).to_numpy()
    robust = {col: float((table[f"pred_adv@{col}"] == table["y"]).mean())
              for col in (eps_column(e) for e in spec.eps_grid)}
    out: dict[str, Any] = {"clean_acc": float(clean.mean()), "robust_acc": robust, "n": int(len(table))}
    if spec.minimal_norm:
        finite = table["min_norm"][np.isfinite(table["min_norm"]) & clean]
        out["median_min_norm"] = float(finite.median()) if len(finite) else None
        out["unbroken"] = int((~np.isfinite(table["min_norm"])).sum())
    return out


def table_path(registry: Registry, spec: EvalSpec) -> Path:
    return registry.home / "evaluations" / spec.run_id / f"{spec.eval_id}.parquet"


def weights_digest(registry: Registry, run_id: str) -> str:
    """SHA-256 of a run's final weights (from its checkpoint JSON): a stored evaluation is valid only for these."""
    return run_meta(registry, run_id)["sha256"]


def is_persisted(registry: Registry, spec: EvalSpec) -> bool:
    """Whether ``load_persisted`` would find the table (without reading it)."""
    return spec.eval_id in persisted_ids(registry, [spec])


def persisted_ids(registry: Registry, specs: Sequence[EvalSpec]) -> set[str]:
    """The eval ids among ``specs`` whose tables ``load_persisted`` would find: one query, one weights digest per
    run (the Robustness page asks for ~18 specs on every slider move; one by one that was ≈ 4 ms each)."""
    rows = registry.get_evaluations([s.eval_id for s in specs])
    digests: dict[str, str] = {}
    found = set()
    for spec in specs:
        row = rows.get(spec.eval_id)
        if row is None or not row["table_path"]:
            continue
        if spec.run_id not in digests:
            digests[spec.run_id] = weights_digest(registry, spec.run_id)
        if row["config"].get("weights_sha256") == digests[spec.run_id] and Path(row["table_path"]).is_file():
            found.add(spec.eval_id)
    return found


def load_persisted(registry: Registry, spec: EvalSpec) -> Evaluation | None:
    """The stored evaluation of ``spec``, or None when it was never computed, its file has gone, or the run's
    weights have changed since (a run id names a config; resuming or retraining it changes the weights)."""
    if not is_persisted(registry, spec):
        return None
    row = registry.get_evaluation(spec.eval_id)
    table = pd.read_parquet(row["table_path"])
    return Evaluation(spec=spec, table=table, summary=row["summary"], cached=True)


def evaluate(spec: EvalSpec, *, registry: Registry, model: nn.Module | None = None, data: Dataset | None = None,
             device: torch.device | str = "cpu", batch_size: int = 256,
             on_progress: Callable[[int, int], None] | None = None,
             should_stop: Callable[[], bool] | None = None) -> Evaluation:
    """The evaluation of ``spec``: read from the store when it exists, else computed, persisted and returned."""
    stored = load_persisted(registry, spec)
    if stored is not None:
        return stored
    if model is None:
        model, meta = load_run_model(registry, spec.run_id, device)
    else:
        meta = run_meta(registry, spec.run_id)
    if data is None:
        data = run_data(meta, spec.dataset, spec.split, spec.n)
    start = time.perf_counter()
    device = torch.device(device) if isinstance(device, str) else device

    def progress(done: int, total: int) -> None:
        if should_stop is not None and should_stop():
            raise EvaluationCancelled("evaluation cancelled")
        if on_progress is not None:
            on_progress(done, total)

    table = per_sample_table(model, data, spec.build_attack(), spec.eps_grid, seed=spec.seed,
                             batch_size=batch_size, device=device, on_progress=progress)
    if spec.minimal_norm:
        table = add_min_norm(table, spec)
    summary = summarize_table(table, spec)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    path = table_path(registry, spec)
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=False)
    atomic_write_bytes(path, buffer.getvalue())
    config = {**spec.to_dict(), "weights_sha256": weights_digest(registry, spec.run_id)}
    registry.add_evaluation(spec.eval_id, spec.run_id, config, summary, str(path))
    log.info("evaluation %s of %s: %s in %.2fs", spec.eval_id, spec.run_id, spec.attack, summary["seconds"])
    return Evaluation(spec=spec, table=table, summary=summary)


TRUST_POINTS = 150


def trust_config(run_id: str, dataset: str, *, eps: float, norm: str, n: int = TRUST_POINTS,
                 seed: int = 0) -> tuple[dict[str, Any], str]:
    """The stored config of a run's trust checks and its id (the registry row ``trust_checks_for`` reads)."""
    config = {"kind": "trust", "run_id": run_id, "dataset": dataset, "eps": float(eps), "norm": norm, "n": n,
              "seed": seed, "format": TABLE_FORMAT}
    return config, config_hash(config, length=16)


def stored_trust_checks(registry: Registry, run_id: str, dataset: str, *, eps: float, norm: str,
                        n: int = TRUST_POINTS, seed: int = 0) -> list[dict[str, Any]] | None:
    """The run's trust checks at ε when computed before on its current weights, else None (computes nothing)."""
    _, eval_id = trust_config(run_id, dataset, eps=eps, norm=norm, n=n, seed=seed)
    return _stored_checks(registry, eval_id, weights_digest(registry, run_id))


def _stored_checks(registry: Registry, eval_id: str, digest: str) -> list[dict[str, Any]] | None:
    row = registry.get_evaluation(eval_id)
    return row["summary"]["checks"] if row is not None and row["config"].get("weights_sha256") == digest else None


def trust_checks_for(registry: Registry, run_id: str, dataset: str, *, eps: float, norm: str,
                     n: int = TRUST_POINTS, seed: int = 0, device: torch.device | str = "cpu",
                     model: nn.Module | None = None) -> list[dict[str, Any]]:
    """The trust checks of a run at ε on the first ``n`` correctly labelled test points, stored like evaluations."""
    from core.evaluation.trust import run_trust_checks

    config, eval_id = trust_config(run_id, dataset, eps=eps, norm=norm, n=n, seed=seed)
    digest = weights_digest(registry, run_id)
    stored = _stored_checks(registry, eval_id, digest)
    if stored is not None:
        return stored
    if model is None:
        model, meta = load_run_model(registry, run_id, device)
    else:
        meta = run_meta(registry, run_id)
    data = run_data(meta, dataset, "test", n)
    checks = run_trust_checks(model, data.x.to(device), data.y.to(device), eps=float(eps), norm=norm,
                              bounds=data.bounds, seed=seed, device=device)
    rows = [asdict(c) for c in checks]
    registry.add_evaluation(eval_id, run_id, {**config, "weights_sha256": digest}, {"checks": rows}, None)
    return rows
