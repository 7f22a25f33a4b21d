"""``train(config, *, on_progress, should_stop) -> RunResult``: the one training loop behind every method.

The run id is the hash of the config's identity, its folder is ``ATLAS_HOME/runs/<id>``: checkpoints every
epoch, ``metrics.jsonl`` (one JSON line an epoch), ``model.safetensors/.json`` and a ``done`` marker at the end.
Calling ``train`` again with the same config resumes from the last complete epoch.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from core import __version__
from core.data import Dataset, load_dataset
from core.errors import ConfigError, RegistryError
from core.models import ARCHS, build_model, save_checkpoint
from core.store import Registry
from core.training.classwise import check_class_weights, weights_for_epoch
from core.training.config import TrainConfig
from core.training.epoch import (ProgressFn, StopFn, detect_catastrophic_overfitting, evaluate_epoch,
                                 train_epoch)
from core.training.methods import METHODS, MethodState
from core.training.state import last_epoch, load_epoch_state, publish_epoch, save_epoch_state
from core.utils import atomic_write_text, config_hash, derive_seed, make_generator, resolve_device

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_id: str
    status: str
    epochs_done: int
    run_dir: Path
    checkpoint_path: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def final_metrics(self) -> dict[str, Any]:
        return self.history[-1] if self.history else {}


def run_id_for(config: TrainConfig) -> str:
    return config_hash(config.identity())


def default_arch_kwargs(config: TrainConfig, train: Dataset) -> dict[str, Any]:
    """Fill in the architecture's shape arguments from the dataset unless the user gave them."""
    kwargs = dict(config.arch_kwargs)
    shape = train.input_shape
    if config.arch == "mlp":
        kwargs.setdefault("in_features", shape[0])
    elif config.arch in ("smallcnn", "lenet", "preact_resnet18", "wideresnet"):
        kwargs.setdefault("in_channels", shape[0])
        if config.arch == "smallcnn":
            kwargs.setdefault("image_size", shape[-1])
    if config.arch == "patchnet":
        kwargs.setdefault("k", train.num_classes)
        kwargs.setdefault("d", shape[-1])
    else:
        kwargs.setdefault("num_classes", train.num_classes)
    return kwargs


def held_out_subset(test: Dataset, n: int, seed: int) -> Dataset:
    """A fixed, seeded subset of the test split for the per-epoch robustness check."""
    if n >= len(test):
        return test
    perm = torch.randperm(len(test), generator=make_generator(seed, "held-out"))
    return test.subset(indices=perm[:n].sort().values)


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, nesterov=config.momentum > 0)


def default_name(config: TrainConfig, run_id: str) -> str:
    """A name that tells runs apart: method, ε (not for ERM), epochs, seed and a short id."""
    eps = "" if config.method == "erm" else f" ε={config.eps:g}"
    return (f"{config.dataset} {config.arch} · {config.method}{eps} · {config.epochs} ep · seed {config.seed}"
            f" · {run_id[:4]}")


def _checkpoint_meta(config: TrainConfig, run_id: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"name": config.name or default_name(config, run_id), "run_id": run_id,
            "dataset": config.dataset, "dataset_params": dict(config.dataset_params), "method": config.method,
            "norm": config.norm, "eps": config.eps, "seed": config.seed, "hparams": config.to_dict(),
            "metrics": metrics, "atlas_version": __version__}


@dataclass
class _Setup:
    device: torch.device
    train_data: Dataset
    test_data: Dataset
    held_out: Dataset
    model: torch.nn.Module


def _prepare(config: TrainConfig) -> _Setup:
    """Load data and build the model: every bad input fails here, before the run is registered."""
    device = resolve_device(config.device)
    params = dict(config.dataset_params)
    train_data = load_dataset(config.dataset, "train", **params)
    test_data = load_dataset(config.dataset, "test", **params)
    if config.norm == "l2patch" and len(train_data.input_shape) != 2:
        raise ConfigError(f"the l2patch threat model needs patch data (N×P×d); {config.dataset} has inputs of "
                          f"shape {train_data.input_shape}")
    if config.arch not in ARCHS:
        raise ConfigError(f"unknown architecture {config.arch!r}; known: {', '.join(sorted(ARCHS))}")
    try:
        model = build_model(config.arch, seed=derive_seed(config.seed, "init"),
                            **default_arch_kwargs(config, train_data))
        with torch.no_grad():
            model.eval()(train_data.x[:2])
    except (ConfigError, RuntimeError) as exc:
        raise ConfigError(f"architecture {config.arch!r} does not fit {config.dataset} inputs of shape "
                          f"{train_data.input_shape}: {exc}") from exc
    if config.class_weighting == "fixed":
        check_class_weights(config.class_weights, train_data.num_classes)
    held_out = held_out_subset(test_data, config.eval_n, config.seed)
    return _Setup(device, train_data, test_data, held_out, model.to(device))


def _result_of(registry: Registry, run: dict[str, Any]) -> RunResult:
    ckpt = Path(run["checkpoint_path"]) if run["checkpoint_path"] else None
    return RunResult(run["id"], run["status"], run["epochs_done"], Path(run["run_dir"]), ckpt,
                     [e["metrics"] for e in registry.epochs(run["id"])])


def train(config: TrainConfig, *, on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
          registry: Registry | None = None) -> RunResult:
    """Train (or resume) the run defined by ``config``; see the module docstring for what is written where."""
    registry = registry or Registry()
    run_id = run_id_for(config)
    existing = registry.find_run(run_id)
    if existing is not None and existing["status"] == "completed":
        return _result_of(registry, existing)
    setup = _prepare(config)
    run = registry.claim_run(run_id, os.getpid(), name=config.name or default_name(config, run_id),
                             dataset=config.dataset, arch=config.arch, method=config.method, norm=config.norm,
                             eps=config.eps, config=config.to_dict())
    if run["status"] == "completed":
        return _result_of(registry, run)
    try:
        return _train_run(config, setup, registry, run_id, Path(run["run_dir"]), on_progress, should_stop)
    except BaseException as exc:
        registry.update_run(run_id, status="failed" if isinstance(exc, Exception) else "interrupted",
                            pid=None, error=f"{type(exc).__name__}: {exc}")
        raise


def _write_metrics_file(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(m, sort_keys=True) + "\n" for m in history))


def _train_run(config: TrainConfig, setup: _Setup, registry: Registry, run_id: str, run_dir: Path,
               on_progress: ProgressFn | None, should_stop: StopFn | None) -> RunResult:
    model, device = setup.model, setup.device
    optimizer = make_optimizer(model, config)
    method = METHODS[config.method]
    attack = method.make_attack(config)
    ckpt_dir = run_dir / "checkpoints"
    start = last_epoch(ckpt_dir)
    if start:
        load_epoch_state(ckpt_dir, start, model, optimizer, device)
    registry.truncate_epochs(run_id, start)
    history = [e["metrics"] for e in registry.epochs(run_id)]
    if len(history) != start:
        raise RegistryError(f"run {run_id}: the registry holds {len(history)} epochs but the checkpoints {start}; "
                            f"delete the run folder {run_dir} to start over")
    # ν and the class weights continue from the last finished epoch's metrics, so a resumed run goes on as before.
    state = MethodState(nu=history[-1].get("nu", config.dale_nu) if history else config.dale_nu)
    classes = [str(c) for c in setup.train_data.classes]
    for epoch in range(start + 1, config.epochs + 1):
        weights = weights_for_epoch(config, classes, history[-1] if history else None)
        state.class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
        state.reset_epoch()
        stats = train_epoch(model, optimizer, setup.train_data, config, method, attack, epoch, device,
                            on_progress, should_stop, state)
        if stats.stopped:
            registry.update_run(run_id, status="cancelled", pid=None)
            ckpt = ckpt_dir / f"epoch_{start:04d}.safetensors" if start else None
            return RunResult(run_id, "cancelled", start, run_dir, ckpt, history)
        metrics = {"epoch": epoch, "loss": stats.loss, "train_acc": stats.train_acc,
                   "train_seconds": stats.seconds, "lr": optimizer.param_groups[0]["lr"], **state.means()}
        if method.uses_nu:
            metrics["nu"] = state.nu
        if weights is not None:
            metrics["class_weights"] = dict(zip(classes, weights))
        train_robust = state.train_robust_per_class()
        if train_robust is not None:
            metrics["train_robust_per_class"] = dict(zip(classes, train_robust))
        metrics.update(evaluate_epoch(model, setup.test_data, setup.held_out, config, device, method.single_step))
        warning = detect_catastrophic_overfitting(history, metrics) if method.single_step else None
        if warning:
            metrics["warning"] = warning
            log.warning("epoch %d: %s", epoch, warning)
        # Commit order: files, registry row, metrics file, then last.json. A kill anywhere before the last step
        # resumes from the previous epoch and recomputes this one; truncate_epochs drops its early row.
        save_epoch_state(ckpt_dir, epoch, model, optimizer, _checkpoint_meta(config, run_id, metrics))
        registry.add_epoch(run_id, epoch, metrics)
        history.append(metrics)
        _write_metrics_file(run_dir, history)
        publish_epoch(ckpt_dir, epoch)
        start = epoch
        if on_progress is not None:
            on_progress({"kind": "epoch", "epoch": epoch, "epochs": config.epochs, "metrics": metrics})
    final = save_checkpoint(model, _checkpoint_meta(config, run_id, history[-1]), run_dir / "model")
    atomic_write_text(run_dir / "done", f"{time.time()}\n")
    registry.update_run(run_id, status="completed", pid=None, finished_at=time.time(),
                        final_metrics=history[-1], checkpoint_path=str(final))
    return RunResult(run_id, "completed", len(history), run_dir, final, history)
