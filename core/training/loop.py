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
from core.models import build_model, save_checkpoint
from core.store import Registry
from core.training.config import TrainConfig
from core.training.epoch import (ProgressFn, StopFn, detect_catastrophic_overfitting, evaluate_epoch,
                                 train_epoch)
from core.training.methods import METHODS
from core.training.state import last_epoch, load_epoch_state, save_epoch_state
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


def _checkpoint_meta(config: TrainConfig, run_id: str, metrics: dict[str, Any]) -> dict[str, Any]:
    return {"name": config.name or f"{config.dataset}-{config.arch}-{config.method}", "run_id": run_id,
            "dataset": config.dataset, "dataset_params": dict(config.dataset_params), "method": config.method,
            "norm": config.norm, "eps": config.eps, "seed": config.seed, "hparams": config.to_dict(),
            "metrics": metrics, "atlas_version": __version__}


def _ensure_run(registry: Registry, run_id: str, config: TrainConfig) -> dict[str, Any]:
    run = registry.find_run(run_id)
    if run is None:
        run = registry.create_run(run_id, name=config.name or f"{config.dataset}-{config.arch}-{config.method}",
                                  dataset=config.dataset, arch=config.arch, method=config.method,
                                  norm=config.norm, eps=config.eps, config=config.to_dict())
    return run


def train(config: TrainConfig, *, on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
          registry: Registry | None = None) -> RunResult:
    """Train (or resume) the run defined by ``config``; see the module docstring for what is written where."""
    registry = registry or Registry()
    run_id = run_id_for(config)
    run = _ensure_run(registry, run_id, config)
    run_dir = Path(run["run_dir"])
    if run["status"] == "completed":
        log.info("run %s is already complete", run_id)
        return RunResult(run_id, "completed", run["epochs_done"], run_dir, Path(run["checkpoint_path"]),
                         [e["metrics"] for e in registry.epochs(run_id)])
    registry.update_run(run_id, status="running", pid=os.getpid(), started_at=time.time(), error=None)
    try:
        return _train_run(config, registry, run_id, run_dir, on_progress, should_stop)
    except BaseException as exc:
        registry.update_run(run_id, status="failed" if isinstance(exc, Exception) else "interrupted",
                            pid=None, error=f"{type(exc).__name__}: {exc}")
        raise


def _train_run(config: TrainConfig, registry: Registry, run_id: str, run_dir: Path,
               on_progress: ProgressFn | None, should_stop: StopFn | None) -> RunResult:
    device = resolve_device(config.device)
    params = dict(config.dataset_params)
    train_data = load_dataset(config.dataset, "train", **params)
    test_data = load_dataset(config.dataset, "test", **params)
    held_out = held_out_subset(test_data, config.eval_n, config.seed)
    arch_kwargs = default_arch_kwargs(config, train_data)
    model = build_model(config.arch, seed=derive_seed(config.seed, "init"), **arch_kwargs).to(device)
    optimizer = make_optimizer(model, config)
    method = METHODS[config.method]
    attack = method.make_attack(config)
    ckpt_dir = run_dir / "checkpoints"
    start = last_epoch(ckpt_dir)
    if start:
        load_epoch_state(ckpt_dir, start, model, optimizer, device)
    registry.truncate_epochs(run_id, start)
    history = [e["metrics"] for e in registry.epochs(run_id)]
    for epoch in range(start + 1, config.epochs + 1):
        stats = train_epoch(model, optimizer, train_data, config, method, attack, epoch, device,
                            on_progress, should_stop)
        if stats.stopped:
            registry.update_run(run_id, status="cancelled", pid=None)
            ckpt = ckpt_dir / f"epoch_{start:04d}.safetensors" if history else None
            return RunResult(run_id, "cancelled", len(history), run_dir, ckpt, history)
        metrics = {"epoch": epoch, "loss": stats.loss, "train_acc": stats.train_acc,
                   "train_seconds": stats.seconds, "lr": optimizer.param_groups[0]["lr"]}
        metrics.update(evaluate_epoch(model, test_data, held_out, config, device, method.single_step))
        warning = detect_catastrophic_overfitting(history, metrics) if method.single_step else None
        if warning:
            metrics["warning"] = warning
            log.warning("epoch %d: %s", epoch, warning)
        save_epoch_state(ckpt_dir, epoch, model, optimizer, _checkpoint_meta(config, run_id, metrics), {})
        registry.add_epoch(run_id, epoch, metrics)
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(metrics, sort_keys=True) + "\n")
        history.append(metrics)
        start = epoch
        if on_progress is not None:
            on_progress({"kind": "epoch", "epoch": epoch, "epochs": config.epochs, "metrics": metrics})
    final = save_checkpoint(model, _checkpoint_meta(config, run_id, history[-1]), run_dir / "model")
    atomic_write_text(run_dir / "done", f"{time.time()}\n")
    registry.update_run(run_id, status="completed", pid=None, finished_at=time.time(),
                        final_metrics=history[-1], checkpoint_path=str(final))
    return RunResult(run_id, "completed", len(history), run_dir, final, history)
