"""``python -m core train``: train or resume a run, with a progress bar and SIGTERM/SIGINT as a clean cancel."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.data import DATASETS
from core.errors import ConfigError
from core.training import TrainConfig, run_id_for, train
from core.utils import StopOnSignal


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    if args.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {args.dataset!r}; available: {', '.join(sorted(DATASETS))}")
    return TrainConfig(
        dataset=args.dataset, arch=args.arch, method=args.method, dataset_params=dict(args.param or []),
        arch_kwargs=dict(args.arch_kwarg or []), norm=args.norm, eps=args.eps, attack_steps=args.attack_steps,
        attack_step_size=args.attack_step_size, trades_beta=args.trades_beta, epochs=args.epochs,
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed, eval_n=args.eval_n,
        eval_steps=args.eval_steps, device=args.device, name=args.name, mart_beta=args.mart_beta,
        dale_noise=args.dale_noise, dale_noise_scale=args.dale_noise_scale, dale_rho=args.dale_rho,
        dale_nu=args.dale_nu, dale_dual_lr=args.dale_dual_lr, class_weighting=args.class_weighting,
        class_weights=tuple(args.class_weights), class_weight_strength=args.class_weight_strength,
    )


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
            bars[0].set_postfix(loss=f"{m['loss']:.3f}", clean=f"{m['clean_acc']:.3f}",
                                robust=f"{m.get('robust_acc', float('nan')):.3f}")
            bars[0].update(1)

    result = train(config, on_progress=on_progress, should_stop=stop)
    for bar in bars:
        bar.close()
    out = {"run_id": result.run_id, "status": result.status, "epochs_done": result.epochs_done,
           "checkpoint": str(result.checkpoint_path) if result.checkpoint_path else None,
           "metrics": {k: v for k, v in result.final_metrics.items() if k != "per_class_robust_acc"}}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        m = out["metrics"]
        print(f"run {result.run_id}: {result.status} after {result.epochs_done} epoch(s); "
              f"clean {m.get('clean_acc', float('nan')):.4f}, robust {m.get('robust_acc', float('nan')):.4f}; "
              f"checkpoint {out['checkpoint']}")
        if "warning" in m:
            print(f"warning: {m['warning']}")
    return 0 if result.status in ("completed", "cancelled") else 1
