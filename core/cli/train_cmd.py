"""``python -m core train``: train or resume a run, with a progress bar and SIGTERM/SIGINT as a clean cancel."""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from core.data import DATASETS
from core.errors import ConfigError, RegistryError
from core.training import TrainConfig, run_id_for, train
from core.utils import StopOnSignal


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    return dict(
        dataset=args.dataset, arch=args.arch, method=args.method, dataset_params=dict(args.param or []),
        arch_kwargs=dict(args.arch_kwarg or []), norm=args.norm, eps=args.eps, attack_steps=args.attack_steps,
        attack_step_size=args.attack_step_size, trades_beta=args.trades_beta, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, eval_n=args.eval_n,
        eval_steps=args.eval_steps, device=args.device, name=args.name, mart_beta=args.mart_beta,
        dale_noise=args.dale_noise, dale_noise_scale=args.dale_noise_scale, dale_rho=args.dale_rho,
        dale_nu=args.dale_nu, dale_dual_lr=args.dale_dual_lr, class_weighting=args.class_weighting,
        class_weights=tuple(args.class_weights), class_weight_strength=args.class_weight_strength,
        amp=args.amp, channels_last=args.channels_last, compile=args.compile,
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.config:
        return _config_file(Path(args.config))
    fields = _fields(args)
    if args.recipe:
        from core.cli.parser import build_parser
        from core.training.recipes import recipe

        # A recipe fills in every value the user left at its default; flags they gave win.
        defaults = _fields(build_parser().parse_args(["train"]))
        fields.update({k: v for k, v in recipe(args.recipe).items() if fields.get(k) == defaults.get(k)})
    if fields["dataset"] not in DATASETS:
        raise ConfigError(f"unknown dataset {fields['dataset']!r}; available: {', '.join(sorted(DATASETS))}")
    return TrainConfig(**fields)


def lost_rank(exc: Exception, config: TrainConfig) -> RegistryError:
    """A collective failed because another process of the torchrun job died: say so in one line, and how to go
    on (the last finished epoch is on disk)."""
    from core.distributed import lost_peer_text

    return RegistryError(f"{lost_peer_text(exc)}; run {run_id_for(config)} keeps its last finished epoch: run the "
                         "same command again to resume it")


def _config_file(path: Path) -> TrainConfig:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--config {path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a JSON object of training options")
    return TrainConfig.from_dict(data)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    from core.training.preflight import preflight

    preflight(config)
    stop = StopOnSignal()
    bars: list[Any] = []

    def on_progress(event: dict[str, Any]) -> None:
        # The bar appears with the first progress, so errors found while setting up stay a clean one-liner.
        if args.quiet or args.json:
            return
        if not bars:
            from tqdm import tqdm

            bars.append(tqdm(total=config.epochs, unit="epoch", desc=f"train {run_id_for(config)}", file=sys.stderr))
        if event["kind"] == "epoch":
            m = event["metrics"]
            shown = {"loss": f"{m['loss']:.3f}", "clean": f"{m['clean_acc']:.3f}"}
            if "robust_acc" in m:
                shown["robust"] = f"{m['robust_acc']:.3f}"
            bars[0].set_postfix(**shown)
            bars[0].update(1)

    from core.distributed import init_distributed, lost_peer, shutdown

    dist, device = init_distributed(config.device)
    try:
        result = train(config, on_progress=on_progress, should_stop=stop, dist=dist, device=device)
        # No rank tears the group down while another is still inside a collective with it.
        dist.barrier()
    except RuntimeError as exc:
        if dist.enabled and lost_peer(exc):
            # The finished frames hold the DDP wrapper and with it the group: clear them so shutdown() frees it.
            traceback.clear_frames(exc.__traceback__)
            raise lost_rank(exc, config) from exc
        raise
    finally:
        shutdown()
    for bar in bars:
        bar.close()
    if not dist.is_main:
        return 0 if result.status in ("completed", "cancelled") else 1
    out = {"run_id": result.run_id, "status": result.status, "epochs_done": result.epochs_done,
           "checkpoint": str(result.checkpoint_path) if result.checkpoint_path else None,
           "metrics": {k: v for k, v in result.final_metrics.items() if k != "per_class_robust_acc"}}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(summary(result.run_id, result.status, result.epochs_done, out["metrics"], out["checkpoint"], config))
        if "warning" in out["metrics"]:
            print(f"warning: {out['metrics']['warning']}")
    if result.status == "cancelled" and stop.signum is not None and not dist.enabled:
        # A stopped run is kept and resumable, yet the command did not do what it was asked: 130 after Ctrl-C, as
        # shells expect, so `train && eval` does not go on. (Under torchrun the launcher's own status says it.)
        return 128 + stop.signum
    return 0 if result.status in ("completed", "cancelled") else 1


def summary(run_id: str, status: str, epochs: int, metrics: dict[str, Any], checkpoint: str | None,
            config: TrainConfig) -> str:
    """The one line ``train`` prints at the end, without NaN or None: what is not measured says why."""
    if epochs == 0:
        return f"run {run_id}: {status} before its first epoch finished; nothing was saved"
    clean, robust = metrics.get("clean_acc"), metrics.get("robust_acc")
    parts = [f"clean {clean:.4f}" if isinstance(clean, float) and clean == clean else "clean not measured"]
    if isinstance(robust, float) and robust == robust:
        parts.append(f"robust {robust:.4f}")
    else:
        parts.append("no robust accuracy (ε = 0)" if config.eps == 0 else
                     "no robust accuracy (--eval-n 0)" if config.eval_n == 0 else "robust not measured")
    where = f"checkpoint {checkpoint}" if checkpoint else "no checkpoint"
    return f"run {run_id}: {status} after {epochs} epoch(s); {', '.join(parts)}; {where}"
