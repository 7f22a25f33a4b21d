"""``python -m core eval``: clean and robust accuracy of a checkpoint (or a registered run) under one attack."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from core.attacks import APGD, FGSM, PGD, Attack, DeepFool, QuickEnsemble, TemperaturePGD
from core.data import DATASETS, Dataset, load_dataset
from core.errors import ConfigError, DataError
from core.evaluation import per_sample_table, summarize
from core.models import load_checkpoint
from core.training.config import MAX_EPS
from core.utils import resolve_device


def _checkpoint_path(args: argparse.Namespace) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    from core.store import Registry
    from core.store.shipped import register_shipped

    registry = Registry()
    register_shipped(registry)
    run = registry.get_run(args.run)
    if not run["checkpoint_path"]:
        raise ConfigError(f"run {args.run} has no final checkpoint yet (status {run['status']})")
    return Path(run["checkpoint_path"])


def build_attack(args: argparse.Namespace) -> Attack:
    """The attack a CLI name stands for, with the flags that apply to it."""
    if args.attack == "fgsm":
        return FGSM(norm=args.norm)
    if args.attack == "pgd":
        return PGD(norm=args.norm, steps=args.steps, step_size=args.step_size, restarts=args.restarts)
    if args.attack == "tpgd":
        return TemperaturePGD(norm=args.norm, steps=args.steps, step_size=args.step_size, restarts=args.restarts,
                              temperature=args.temperature)
    if args.attack == "apgd":
        return APGD(norm=args.norm, steps=args.steps)
    if args.attack == "deepfool":
        return DeepFool(norm=args.norm)
    return QuickEnsemble(norm=args.norm, steps=args.steps)


def check_fits(model: torch.nn.Module, meta: dict, data: Dataset) -> None:
    """A clear error when the data do not fit the model (another dataset's shape or number of classes)."""
    classes = getattr(model, "num_classes", None)
    if classes is not None and classes != data.num_classes:
        raise ConfigError(f"the model predicts {classes} classes but {data.name} has {data.num_classes}")
    try:
        with torch.no_grad():
            model(data.x[:1].to(next(model.parameters()).device))
    except RuntimeError as exc:
        raise ConfigError(f"the model (trained on {meta.get('dataset')}) does not accept {data.name} inputs of "
                          f"shape {data.input_shape}") from exc


def run(args: argparse.Namespace) -> int:
    path = _checkpoint_path(args)
    device = resolve_device(args.device)
    model, meta = load_checkpoint(path)
    model.to(device)
    dataset = args.dataset or meta.get("dataset")
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(DATASETS))}")
    params = meta.get("dataset_params", {}) if dataset == meta.get("dataset") else {}
    data = load_dataset(dataset, args.split, **params)
    if args.n is not None:
        data = data.subset(args.n)
    check_fits(model, meta, data)
    # Unless told otherwise, evaluate a model in its own threat model (as the hub reports it).
    own = dataset == meta.get("dataset")
    if args.eps is None:
        args.eps = float(meta["eps"]) if own and isinstance(meta.get("eps"), (int, float)) else 0.1
    if args.norm is None:
        args.norm = meta["norm"] if own and meta.get("norm") in ("linf", "l2", "l2patch") else "linf"
    if args.eps > MAX_EPS[args.norm]:
        raise ConfigError(f"eps {args.eps:g} is beyond the {args.norm} limit {MAX_EPS[args.norm]:g} of the [0,1] input "
                          "scale")
    attack = build_attack(args)
    bar = None
    if not args.quiet and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=len(data), unit="pt", desc=f"{args.attack} ε={args.eps:g}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    start = time.perf_counter()
    table = per_sample_table(model, data, attack, [args.eps], seed=args.seed, batch_size=args.batch_size,
                             device=device, on_progress=progress)
    if bar is not None:
        bar.close()
    summary = summarize(table, args.eps, data.classes)
    out = {"clean_acc": summary["clean_acc"], "robust_acc": summary["robust_acc"], "n": summary["n"],
           "attack": args.attack, "eps": args.eps, "norm": args.norm,
           "steps": 1 if args.attack == "fgsm" else args.steps, "seed": args.seed, "dataset": dataset,
           "split": args.split, "checkpoint": str(path), "seconds": round(time.perf_counter() - start, 3),
           "per_class_robust_acc": {k: v["robust_acc"] for k, v in summary["per_class"].items()}}
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        print(f"{dataset}/{args.split} n={out['n']}: clean {out['clean_acc']:.4f}, "
              f"{args.attack.upper()} ε={args.eps:g} ({args.norm}) robust {out['robust_acc']:.4f}")
    return 0
