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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from core import __version__
from core.data import Dataset, load_dataset
from core.distributed import SINGLE, DistContext, StepCarrier, lost_peer, lost_peer_text
from core.errors import ConfigError, RegistryError, TrainingDiverged
from core.evaluation.headline import headline_metrics, headline_points
from core.models import ARCHS, build_model, save_checkpoint
from core.store import Registry
from core.training.classwise import check_class_weights, weights_for_epoch
from core.training.config import TrainConfig, norm_problem
from core.training.epoch import (ProgressFn, StopFn, chance_warning, detect_catastrophic_overfitting,
                                 evaluate_epoch, train_epoch)
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
    final: dict[str, Any] | None = None  # the registry's final metrics: the last epoch's, headline figures on top

    @property
    def final_metrics(self) -> dict[str, Any]:
        return self.final if self.final is not None else self.history[-1] if self.history else {}


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


# How the shipped models spell architectures and methods in their names ("digits SmallCNN · PGD-AT ε=0.1"); a
# plugin's architecture or method keeps its registered name.
ARCH_DISPLAY = {"smallcnn": "SmallCNN", "lenet": "LeNet", "mlp": "MLP", "patchnet": "PatchNet",
                "preact_resnet18": "PreAct ResNet-18", "wideresnet": "WideResNet"}
METHOD_DISPLAY = {"erm": "ERM", "fgsm-rs": "FGSM-RS", "n-fgsm": "N-FGSM", "pgd-at": "PGD-AT", "trades": "TRADES",
                  "mart": "MART", "dale": "DALE", "dale-kl": "DALE-KL"}


def default_name(config: TrainConfig, run_id: str) -> str:
    """A name in the shipped models' style that also tells runs apart: architecture, method, ε (not for ERM),
    class weighting (when on), epochs, seed and a short id."""
    eps = "" if config.method == "erm" else f" ε={config.eps:g}"
    arch, method = ARCH_DISPLAY.get(config.arch, config.arch), METHOD_DISPLAY.get(config.method, config.method)
    weighting = {"fixed": " · fixed class weights",
                 "adaptive": f" · adaptive class weights {config.class_weight_strength:g}"}.get(config.class_weighting,
                                                                                              "")
    return (f"{config.dataset} {arch} · {method}{eps}{weighting} · {config.epochs} ep · seed {config.seed} · "
            f"{run_id[:4]}")


def _checkpoint_meta(config: TrainConfig, run_id: str, metrics: dict[str, Any], registry: Registry) -> dict[str, Any]:
    # The run's name is the registry's: a resumed run keeps its first name (a name typed for the resume is not a
    # rename), and a rename since shows in the next checkpoint.
    return {"name": registry.get_run(run_id)["name"], "run_id": run_id,
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


def _prepare(config: TrainConfig, device: torch.device | None = None) -> _Setup:
    """Load data and build the model: every bad input fails here, before the run is registered."""
    device = device or resolve_device(config.device)
    params = dict(config.dataset_params)
    train_data = load_dataset(config.dataset, "train", **params)
    test_data = load_dataset(config.dataset, "test", **params)
    if (problem := norm_problem(config.dataset, tuple(train_data.input_shape), config.norm)) is not None:
        raise ConfigError(problem)
    if config.arch not in ARCHS:
        raise ConfigError(f"unknown architecture {config.arch!r}; known: {', '.join(sorted(ARCHS))}")
    try:
        model = build_model(config.arch, seed=derive_seed(config.seed, "init"),
                            **default_arch_kwargs(config, train_data))
        with torch.no_grad():
            model.eval()(train_data.x[:2])
    except Exception as exc:  # noqa: BLE001  (a plugin's constructor or forward may raise anything)
        raise ConfigError(f"architecture {config.arch!r} does not fit {config.dataset} inputs of shape "
                          f"{train_data.input_shape}: {exc}") from exc
    if config.class_weighting == "fixed":
        check_class_weights(config.class_weights, train_data.num_classes)
    held_out = held_out_subset(test_data, config.eval_n, config.seed)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return _Setup(device, place_data(train_data, device), test_data, held_out, model)


# Keep the training set on the GPU when it takes at most this share of the free memory (no copy per batch).
ON_DEVICE_SHARE = 0.25


def place_data(data: Dataset, device: torch.device) -> Dataset:
    """On a GPU: the whole training set in GPU memory when it fits easily, else in pinned host memory so batch
    copies overlap with compute. On a CPU: unchanged."""
    if device.type != "cuda":
        return data
    free, _ = torch.cuda.mem_get_info(device)
    size = data.x.element_size() * data.x.nelement()
    if size <= ON_DEVICE_SHARE * free:
        return replace(data, x=data.x.to(device), y=data.y.to(device))
    return replace(data, x=data.x.pin_memory(), y=data.y.pin_memory())


def _result_of(registry: Registry, run: dict[str, Any]) -> RunResult:
    ckpt = Path(run["checkpoint_path"]) if run["checkpoint_path"] else None
    return RunResult(run["id"], run["status"], run["epochs_done"], Path(run["run_dir"]), ckpt,
                     [e["metrics"] for e in registry.epochs(run["id"])], run["final_metrics"] or None)


def train(config: TrainConfig, *, on_progress: ProgressFn | None = None, should_stop: StopFn | None = None,
          registry: Registry | None = None, dist: DistContext = SINGLE,
          device: torch.device | None = None) -> RunResult:
    """Train (or resume) the run defined by ``config``; see the module docstring for what is written where.

    Under torchrun (``dist`` from :func:`core.distributed.init_distributed`, ``device`` this rank's device) every
    rank calls this; rank 0 alone reads and writes the registry and the run folder and reports progress."""
    dist.check_batch(config.batch_size)
    registry = (registry or Registry()) if dist.is_main else None
    run_id = run_id_for(config)

    def finished() -> RunResult | None:
        from core.jobs.reuse import diverged, trained_run_problem

        existing = registry.find_run(run_id)
        if existing is not None and diverged(existing):
            raise TrainingDiverged(trained_run_problem(existing))
        return _result_of(registry, existing) if existing is not None and existing["status"] == "completed" else None

    done = dist.on_main(finished)
    if done is not None:
        return done
    setup = _prepare(config, device)

    def claim() -> tuple[dict[str, Any], list[dict[str, Any]], int]:
        run = registry.claim_run(run_id, os.getpid(), name=config.name or default_name(config, run_id),
                                 dataset=config.dataset, arch=config.arch, method=config.method,
                                 norm=config.norm, eps=config.eps, config=config.to_dict())
        if run["status"] == "completed":
            return run, [], 0
        start = last_epoch(Path(run["run_dir"]) / "checkpoints")
        registry.truncate_epochs(run_id, start)
        history = [e["metrics"] for e in registry.epochs(run_id)]
        if len(history) != start:
            registry.update_run(run_id, status="failed", pid=None, error="registry and checkpoints disagree")
            raise RegistryError(f"run {run_id}: the registry holds {len(history)} epochs but the checkpoints "
                                f"{start}; delete the run folder {run['run_dir']} to start over")
        return run, history, start

    run, history, start = dist.on_main(claim)
    if run["status"] == "completed":
        return _result_of(registry, run) if dist.is_main else RunResult(run_id, "completed", run["epochs_done"],
                                                                         Path(run["run_dir"]), None)
    try:
        return _train_run(config, setup, registry, run_id, Path(run["run_dir"]), history, start, on_progress,
                          should_stop, dist)
    except BaseException as exc:
        if dist.is_main:
            # Another rank dying is an interruption of this run, not a fault of it, as a Ctrl-C is: the same
            # status and a readable reason, whichever rank died (rank 0 itself dying leaves "interrupted" too).
            peer_gone = dist.enabled and lost_peer(exc)
            registry.update_run(run_id, status="failed" if isinstance(exc, Exception) and not peer_gone
                                else "interrupted", pid=None,
                                error=lost_peer_text(exc) if peer_gone else f"{type(exc).__name__}: {exc}")
        raise


def _write_metrics_file(run_dir: Path, history: list[dict[str, Any]]) -> None:
    atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(m, sort_keys=True) + "\n" for m in history))


def changing_buffers(model: torch.nn.Module) -> bool:
    """Whether ``model`` has buffers that training may change (BatchNorm's running statistics, a plugin's own), so
    DDP must broadcast rank 0's before every forward pass. The input normalisation's mean and std are constants, the
    same on every rank: broadcasting them cost a collective per step (≈ 0.8 ms of a 7 ms ERM step on 2 CPU ranks)."""
    from core.models.layers import Normalize

    constant = {id(b) for m in model.modules() if isinstance(m, Normalize) for b in m.buffers(recurse=False)}
    return any(id(b) not in constant for b in model.buffers())


def _wrap(model: torch.nn.Module, config: TrainConfig, dist: DistContext, device: torch.device) -> torch.nn.Module:
    """The module the training step calls: DDP under torchrun, compiled when asked."""
    wrapped = model
    if dist.enabled:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                          forward_sync_buffers=changing_buffers(model))
        if not config.compile:
            # The step's loss and stop flag ride in the gradients' all-reduce (core.distributed.StepCarrier).
            carrier = StepCarrier(dist.world_size)
            wrapped.register_comm_hook(None, carrier.hook)
            wrapped.step_carrier = carrier
    if config.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def _train_run(config: TrainConfig, setup: _Setup, registry: Registry | None, run_id: str, run_dir: Path,
               history: list[dict[str, Any]], start: int, on_progress: ProgressFn | None,
               should_stop: StopFn | None, dist: DistContext) -> RunResult:
    model, device = setup.model, setup.device
    optimizer = make_optimizer(model, config)
    method = METHODS[config.method]
    attack = method.make_attack(config)
    ckpt_dir = run_dir / "checkpoints"
    if start:
        load_epoch_state(ckpt_dir, start, model, optimizer, device)
    train_model = _wrap(model, config, dist, device)
    main = dist.is_main
    # ν and the class weights continue from the last finished epoch's metrics, so a resumed run goes on as before.
    state = MethodState(nu=history[-1].get("nu", config.dale_nu) if history else config.dale_nu)
    classes = [str(c) for c in setup.train_data.classes]
    for epoch in range(start + 1, config.epochs + 1):
        weights = weights_for_epoch(config, classes, history[-1] if history else None)
        state.class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
        state.reset_epoch()
        stats = train_epoch(model, optimizer, setup.train_data, config, method, attack, epoch, device,
                            on_progress, should_stop, state, dist=dist, train_model=train_model)
        if stats.stopped:
            if main:
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
        if dist.enabled:
            metrics["world_size"] = dist.world_size
        # Rank 0 evaluates and commits the epoch while the others wait; all go on with its metrics.
        metrics = dist.on_main(lambda: _finish_epoch(config, setup, optimizer, registry, run_id, run_dir, method,
                                                     history, metrics, epoch))
        history.append(metrics)
        start = epoch
        if on_progress is not None and main:
            on_progress({"kind": "epoch", "epoch": epoch, "epochs": config.epochs, "metrics": metrics})

    def finish() -> tuple[Path, dict[str, Any]]:
        # The figures the hub compares models by are the headline protocol's (core/evaluation/headline.py), the
        # same as a shipped or imported model's; the last epoch's held-out check stays in the epoch history.
        metrics = {**history[-1], **headline_metrics(model, setup.test_data, config.norm, config.eps, device)}
        metrics = _with_chance_warning(config, setup, history, metrics)
        final = save_checkpoint(model, _checkpoint_meta(config, run_id, metrics, registry), run_dir / "model")
        atomic_write_text(run_dir / "done", f"{time.time()}\n")
        registry.update_run(run_id, status="completed", pid=None, finished_at=time.time(),
                            final_metrics=metrics, checkpoint_path=str(final))
        return final, metrics

    checkpoint, final = dist.on_main(finish)
    return RunResult(run_id, "completed", len(history), run_dir, checkpoint, history, final)


def _with_chance_warning(config: TrainConfig, setup: _Setup, history: list[dict[str, Any]],
                         final: dict[str, Any]) -> dict[str, Any]:
    """``final`` with ``at_chance`` and the warning of :func:`chance_warning` when the run ended at chance level
    (before the last epoch's own warning, if it had one: the bigger problem first)."""
    steps = -(-len(setup.train_data) // config.batch_size) * config.epochs
    warning = chance_warning(config, history, final, headline_points(setup.test_data).y, setup.test_data.num_classes,
                             steps)
    if warning is None:
        return final
    log.warning("%s", warning)
    earlier = final.get("warning")
    return {**final, "at_chance": True,
            "warning": warning + (f" Also, in the last epoch: {earlier}." if earlier else "")}


def _finish_epoch(config: TrainConfig, setup: _Setup, optimizer: torch.optim.Optimizer, registry: Registry,
                  run_id: str, run_dir: Path, method: Any, history: list[dict[str, Any]], metrics: dict[str, Any],
                  epoch: int) -> dict[str, Any]:
    """Evaluate the epoch, then commit it: files, registry row, metrics file, then last.json. A kill anywhere
    before the last step resumes from the previous epoch and recomputes this one; truncate_epochs drops its early
    row."""
    metrics = {**metrics, **evaluate_epoch(setup.model, setup.test_data, setup.held_out, config, setup.device,
                                           method.single_step)}
    warning = detect_catastrophic_overfitting(history, metrics) if method.single_step else None
    if warning:
        metrics["warning"] = warning
        log.warning("epoch %d: %s", epoch, warning)
    ckpt_dir = run_dir / "checkpoints"
    save_epoch_state(ckpt_dir, epoch, setup.model, optimizer, _checkpoint_meta(config, run_id, metrics, registry))
    registry.add_epoch(run_id, epoch, metrics)
    _write_metrics_file(run_dir, [*history, metrics])
    publish_epoch(ckpt_dir, epoch)
    return metrics
