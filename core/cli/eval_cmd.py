"""``python -m core eval``: clean and robust accuracy of a checkpoint (or a registered run) under one attack."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from core.attacks import (APGD, FGSM, FMN, PGD, Attack, CarliniWagnerL2, DeepFool, FullEnsemble, QuickEnsemble,
                          Square, TemperaturePGD)
from core.data import DATASETS, Dataset, load_dataset
from core.distributed import DistContext
from core.errors import CheckpointError, ConfigError, DataError
from core.evaluation import eps_column, per_sample_table, summarize
from core.models import load_checkpoint
from core.training.config import MAX_EPS

if TYPE_CHECKING:
    import pandas as pd


def check_checkpoint_argument(text: str) -> None:
    """Refuse a --checkpoint that names no checkpoint before anything is loaded, naming the file the user gave: a
    pickle (.pt, .pth, .pkl, .ckpt …), with how to convert it as ``runs import`` and the hub say, or another file
    that is not NAME.safetensors (the loader would look for "notes.txt.safetensors" and call that missing). NAME,
    NAME.safetensors and NAME.json all stand for the checkpoint NAME.safetensors with NAME.json beside it."""
    from core.models.checkpoint import checkpoint_paths
    from core.store.imports import PICKLE_SUFFIXES, weights_file_problem

    given = Path(text)
    if given.is_dir():
        raise CheckpointError(f"{given} is a folder, not a checkpoint: give NAME.safetensors (with NAME.json beside "
                              "it)")
    weights, _ = checkpoint_paths(given)
    problem = weights_file_problem(given)
    if problem is None or given.suffix == ".json" or weights.is_file():
        return  # the loader says what is wrong with NAME.safetensors or NAME.json, if anything
    if given.suffix.lower() in PICKLE_SUFFIXES or given.is_file():
        raise CheckpointError(problem)
    if given.suffix:
        raise CheckpointError(f"no checkpoint at {given}: neither {given} nor {weights} exists")


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


# Iterations when --steps is not given: the CLI's historical 20 for PGD-like attacks, the papers' 100 otherwise.
DEFAULT_STEPS = {"pgd": 20, "tpgd": 20, "apgd": 20, "quick": 50, "deepfool": 50, "cw": 100, "fmn": 100,
                 "full": 100}
DEFAULT_QUERIES = {"square": 1000, "full": 5000}
# Attacks defined for one norm only: without --norm they use it instead of the checkpoint's.
ONLY_NORM = {"cw": "l2", "square": "linf"}
TARGETED = ("pgd", "tpgd")
# The attacks each optional flag means something to; given to any other, it is refused rather than ignored.
FLAG_ATTACKS = {"steps": tuple(DEFAULT_STEPS), "queries": tuple(DEFAULT_QUERIES), "step_size": TARGETED,
                "restarts": TARGETED, "temperature": ("tpgd",), "target": TARGETED}


def build_attack(args: argparse.Namespace) -> Attack:
    """The attack a CLI name stands for, with the flags that apply to it (and --precision for all)."""
    attack = _named_attack(args)
    if args.precision != "fp32":
        attack.config = replace(attack.config, precision=args.precision)
    return attack


def _named_attack(args: argparse.Namespace) -> Attack:
    name, norm = args.attack, args.norm
    steps = args.steps or DEFAULT_STEPS.get(name, 1)
    queries = args.queries or DEFAULT_QUERIES.get(name, 1)
    if name == "fgsm":
        return FGSM(norm=norm)
    if name in TARGETED:
        pgd_args = {"norm": norm, "steps": steps, "step_size": args.step_size, "restarts": args.restarts or 1,
                    "target": args.target}
        return PGD(**pgd_args) if name == "pgd" else TemperaturePGD(**pgd_args, temperature=args.temperature or 1.0)
    if name == "apgd":
        return APGD(norm=norm, steps=steps)
    if name == "deepfool":
        return DeepFool(norm=norm, steps=steps)
    if name == "cw":
        return CarliniWagnerL2(norm=norm, steps=steps)
    if name == "fmn":
        return FMN(norm=norm, steps=steps)
    if name == "square":
        return Square(norm=norm, queries=queries)
    if name == "full":
        if args.queries is not None and norm != "linf":
            raise ConfigError(f"--queries sets Square's budget, and the full ensemble runs Square for linf only, not "
                              f"{norm}")
        return FullEnsemble(norm=norm, steps=steps, square_queries=queries)
    return QuickEnsemble(norm=norm, steps=steps)


def drop_target_class(data: Dataset, target: int) -> tuple[Dataset, int]:
    """The points a targeted attack can aim from (label ≠ target) and how many were left out."""
    if target >= data.num_classes:
        raise ConfigError(f"target class {target} is outside the {data.num_classes} classes of {data.name} "
                          f"(0–{data.num_classes - 1})")
    keep = data.y != target
    return data.subset(indices=keep), int((~keep).sum())


def resolve_threat(args: argparse.Namespace, meta: dict, own: bool) -> None:
    """Fill in --norm and --eps: a single-norm attack's own norm, else the checkpoint's threat model (as the
    hub reports it), else linf; the checkpoint's ε only where the norm is its own (an ℓ∞ radius is no ℓ2 one)."""
    own_norm = meta.get("norm") if own and meta.get("norm") in ("linf", "l2", "l2patch") else None
    if args.norm is None:
        args.norm = ONLY_NORM.get(args.attack, own_norm or "linf")
    if args.eps is None:
        own_eps = meta.get("eps") if args.norm == own_norm else None
        args.eps = float(own_eps) if isinstance(own_eps, (int, float)) else 0.1
    if args.eps > MAX_EPS[args.norm]:
        raise ConfigError(f"eps {args.eps:g} is beyond the {args.norm} limit {MAX_EPS[args.norm]:g} of the [0,1] input "
                          "scale")


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


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flags that cannot work before anything is loaded (a wrong norm is known without the checkpoint)."""
    for flag, attacks in FLAG_ATTACKS.items():
        if getattr(args, flag) is not None and args.attack not in attacks:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to {', '.join(attacks)} only, not {args.attack}")
    if args.norm is not None:
        build_attack(args)


def run(args: argparse.Namespace) -> int:
    check_flags(args)
    if args.checkpoint:
        check_checkpoint_argument(args.checkpoint)
    from core.distributed import init_distributed, shutdown

    dist, device = init_distributed(args.device)
    try:
        return _run(args, dist, device)
    finally:
        shutdown()


def _run(args: argparse.Namespace, dist: DistContext, device: torch.device) -> int:
    """Evaluate; under torchrun the attacked batches are shared out and rank 0 reports the merged table."""
    path = _checkpoint_path(args) if dist.is_main else None
    path = dist.broadcast(path)
    try:
        model, meta = load_checkpoint(path)
    except CheckpointError as exc:
        from core.store.imports import with_convert_hint

        raise CheckpointError(with_convert_hint(str(exc))) from exc
    model.to(device)
    dataset = args.dataset or meta.get("dataset")
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; available: {', '.join(sorted(DATASETS))}")
    params = meta.get("dataset_params", {}) if dataset == meta.get("dataset") else {}
    data = load_dataset(dataset, args.split, **params)
    if args.n is not None:
        data = data.subset(args.n)
    check_fits(model, meta, data)
    dropped = 0
    if args.target is not None:
        data, dropped = drop_target_class(data, args.target)
    resolve_threat(args, meta, own=dataset == meta.get("dataset"))
    attack = build_attack(args)
    bar = None
    if not args.quiet and not args.json and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=len(data), unit="pt", desc=f"{args.attack} ε={args.eps:g}", file=sys.stderr)

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    start = time.perf_counter()
    table = per_sample_table(model, data, attack, [args.eps], seed=args.seed, batch_size=args.batch_size,
                             device=device, on_progress=progress, dist=dist)
    if bar is not None:
        bar.close()
    if not dist.is_main:
        return 0
    summary = summarize(table, args.eps, data.classes)
    out = {"clean_acc": summary["clean_acc"], "robust_acc": summary["robust_acc"], "n": summary["n"],
           "attack": args.attack, "eps": args.eps, "norm": args.norm,
           "steps": getattr(attack.config, "steps", 1), "seed": args.seed, "dataset": dataset,
           "split": args.split, "checkpoint": str(path), "seconds": round(time.perf_counter() - start, 3),
           "config": attack.config.to_dict(), "target": args.target, "dropped": dropped,
           "per_class_robust_acc": {k: v["robust_acc"] for k, v in summary["per_class"].items()},
           "world_size": dist.world_size, "precision": args.precision}
    if args.target is not None:
        # robust_acc counts any misclassification; this is the share of points the attack sent to the target.
        out["target_rate"] = float((table[f"pred_adv@{eps_column(args.eps)}"] == args.target).mean())
    if args.table:
        out["table"] = write_table(table, Path(args.table))
    if args.trust:
        out["trust"] = trust(model, data, args, device)
    report(args, out)
    return 0


def write_table(table: pd.DataFrame, path: Path) -> str:
    """The per-sample table as CSV or parquet, by the file's suffix (written atomically)."""
    from core.utils import atomic_write_bytes

    if path.suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--table must end in .csv or .parquet, got {path.name!r}")
    if not path.parent.is_dir():
        raise ConfigError(f"--table: the folder {path.parent} does not exist")
    data = table.to_csv(index=False).encode() if path.suffix == ".csv" else table.to_parquet(index=False)
    atomic_write_bytes(path, data)
    return str(path)


def trust(model: torch.nn.Module, data: Dataset, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """The gradient-masking checks on the first 150 points, as shown on the Robustness page."""
    from core.evaluation.trust import run_trust_checks

    if args.norm not in ("linf", "l2"):
        raise ConfigError(f"--trust needs the linf or l2 threat model, not {args.norm}")
    subset = data.subset(150)
    checks = run_trust_checks(model, subset.x.to(device), subset.y.to(device), eps=args.eps, norm=args.norm,
                              bounds=data.bounds, seed=args.seed, device=device, precision=args.precision)
    return [{"key": c.key, "status": c.status, "title": c.title, "finding": c.finding} for c in checks]


def report(args: argparse.Namespace, out: dict) -> None:
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return
    if args.target is not None:
        print(f"--target {args.target}: left out {out['dropped']} points of that class (a targeted attack needs "
              f"another class); {out['target_rate']:.4f} of the rest now predicted as {args.target}")
    print(f"{out['dataset']}/{args.split} n={out['n']}: clean {out['clean_acc']:.4f}, "
          f"{args.attack.upper()} ε={args.eps:g} ({args.norm}) robust {out['robust_acc']:.4f}")
    for check in out.get("trust", []):
        print(f"  [{check['status']:>7}] {check['title']}: {check['finding']}")
