"""``python -m core runs|data|plugins|build-defaults``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Any

from core.errors import ConfigError


def _fmt(value: Any, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def _short(text: str, width: int) -> str:
    """At most ``width`` characters, cut in the middle: runs trained here end in what tells them apart (seed, id),
    and two of them cut at the end read the same ("digits SmallCNN · ERM · 1 ep · …")."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 3
    return text[:width - 1 - tail] + "…" + text[len(text) - tail:]


# The mark on an unfinished run's figures: its last epoch's check, not the final (headline) measurement.
EPOCH_MARK = "*"


def _accuracies(registry: Any, run: dict[str, Any]) -> tuple[str, str]:
    """Clean and robust accuracy: the final ones, or an unfinished run's last finished epoch's, marked."""
    metrics, mark = run["final_metrics"], ""
    if "clean_acc" not in metrics and run["epochs_done"]:
        metrics, mark = registry.epochs(run["id"])[-1]["metrics"], EPOCH_MARK
    return (_fmt(metrics.get("clean_acc")) + (mark if "clean_acc" in metrics else ""),
            _fmt(metrics.get("robust_acc")) + (mark if "robust_acc" in metrics else ""))


def _status(run: dict[str, Any]) -> str:
    """The status, with the epochs done for a run that has not finished (the figures are that epoch's)."""
    epochs = (run.get("config") or {}).get("epochs")
    if run["status"] in ("completed", "shipped", "imported") or not epochs:
        return run["status"]
    return f"{run['status']} {run['epochs_done']}/{epochs}"


def _runs(args: argparse.Namespace) -> int:
    from core.store import Registry
    from core.store.shipped import register_shipped

    registry = Registry()
    register_shipped(registry)
    action = args.action or "list"
    if action == "list":
        runs = registry.list_runs(dataset=getattr(args, "dataset", None))
        if getattr(args, "json", False):
            print(json.dumps(runs, sort_keys=True, default=str))
            return 0
        # Columns as wide as their longest value: run ids and plugin architecture names have no fixed length.
        rows = [(r["id"], _short(r["name"] or "", 56), r["dataset"], r["arch"], r["method"], _fmt(r["eps"], "{:.3g}"),
                 *_accuracies(registry, r), _status(r),
                 datetime.fromtimestamp(r["created_at"], timezone.utc).strftime("%Y-%m-%d %H:%M")) for r in runs]
        header = ("id", "name", "dataset", "arch", "method", "eps", "clean", "robust", "status", "created")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        right = {5, 6, 7}
        for row in [header, *rows]:
            print(" ".join(cell.rjust(w) if i in right else cell.ljust(w)
                           for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        if any(cell.endswith(EPOCH_MARK) for row in rows for cell in row[6:8]):
            print(f"{EPOCH_MARK} an unfinished run's last epoch's check (PGD on its held-out points, the eval_n of its "
                  "config), not the final PGD-20 test measurement of the other rows")
        return 0
    if action == "show":
        run = registry.get_run(args.run_id)
        run["epochs"] = [e["metrics"] for e in registry.epochs(args.run_id)]
        print(json.dumps(run, indent=None if args.json else 2, sort_keys=True, default=str))
        return 0
    if action == "rename":
        registry.rename_run(args.run_id, args.name)
        print(f"renamed {args.run_id} to {args.name!r}")
        return 0
    if action == "import":
        return _import(args, registry)
    from core.store.imports import delete_run_files

    run = registry.get_run(args.run_id)
    # Its rows, then its folder: runs/<id> for a trained run, imports/<id> for an imported one.
    delete_run_files(registry, args.run_id)
    print(f"deleted run {args.run_id} ({run['name']})")
    return 0


def _import(args: argparse.Namespace, registry: Any) -> int:
    from core.store.imports import import_checkpoint_file, same_weights
    from core.utils import resolve_device

    device = str(resolve_device(args.device))  # a bad --device is refused before the files are read
    if not args.json and sys.stderr.isatty():  # a script's stderr gets only the one-line error, if any
        what = "checking it against its dataset" if args.no_measure else f"measuring it on the test split ({device})"
        print(f"importing {args.weights}: validating the files, then {what} …", file=sys.stderr, flush=True)
    run = import_checkpoint_file(registry, args.weights, args.meta, name=args.name, measure=not args.no_measure,
                                 device=device)
    if args.json:
        print(json.dumps(run, sort_keys=True, default=str))
        return 0
    m = run["final_metrics"]
    print(f"imported “{run['name']}” as run {run['id']} (dataset {run['dataset']}, arch {run['arch']}, "
          f"method {run['method']}); it now shows in the Model hub")
    if args.name and run["name"] != args.name.strip():
        print(f"note: another {run['dataset']} model is already called {args.name.strip()!r}, so this one is called "
              f"{run['name']!r}; `python -m core runs rename {run['id']} NAME` names it otherwise")
    for twin in same_weights(registry, run):
        print(f"note: these are the very weights of “{twin['name']}” ({twin['source']} run {twin['id']}): the two "
              "runs are one model")
    if "robust_acc" in m and not m.get("reported"):
        print(f"clean {m['clean_acc']:.3f}  robust {m['robust_acc']:.3f}  ({m['attack'].upper()} at ε={m['eps']:g} "
              f"({run['norm'] or 'linf'}) on {m['n']} test points, as every model in the hub)")
    elif "clean_acc" in m and not m.get("reported"):
        print(f"clean {m['clean_acc']:.3f}  (on {m['n']} test points; the .json file's ε is 0 or absent: no PGD "
              "check)")
    elif m:
        why = ("--no-measure" if args.no_measure else "the .json file names no dataset" if not run.get("dataset")
               else "the dataset's files are not here")
        print(f"clean {_fmt(m.get('clean_acc'))}  robust {_fmt(m.get('robust_acc'))}  (as reported by the .json "
              f"file; not measured: {why})")
    else:
        print("no accuracy: the .json file reports none and the model was not measured")
    return 0


def _data(args: argparse.Namespace) -> int:
    from core.data import DATASETS, download_dataset, verify_dataset

    if args.action == "list":
        rows = [{"name": s.name, "kind": s.kind, "input_shape": list(s.input_shape), "classes": s.num_classes,
                 "needs_files": s.needs_files, "description": s.description} for s in DATASETS.values()]
        if args.json:
            print(json.dumps(rows))
        else:
            for r in rows:
                shape = "×".join(map(str, r["input_shape"]))
                print(f"{r['name']:<14} {r['kind']:<7} {shape:<9} {r['classes']:>3} classes  "
                      f"{'files' if r['needs_files'] else 'built-in':<8} {r['description']}")
        return 0
    if args.name not in DATASETS:
        raise ConfigError(f"unknown dataset {args.name!r}; available: {', '.join(sorted(DATASETS))}")
    if args.action == "download":
        folder = download_dataset(args.name)
        print(json.dumps({"dataset": args.name, "folder": str(folder)}) if args.json
              else f"{args.name}: files in {folder}")
        return 0
    report = verify_dataset(args.name)
    print(json.dumps(report, indent=None if args.json else 2, sort_keys=True, default=str))
    return 0 if report.get("ok", report.get("loads", False)) else 1


def _plugins(args: argparse.Namespace) -> int:
    # The listing says everything the import-time warnings would, so keep them from printing it twice.
    logging.getLogger("core.models.plugins").setLevel(logging.ERROR)
    from core.models.plugins import ENV_VAR, load_plugins

    reports = load_plugins()
    if args.json:
        print(json.dumps([r.as_dict() for r in reports], sort_keys=True))
    elif not reports:
        print(f"no plugins: set {ENV_VAR} to .py files or module names, separated by ':' or ','")
    for r in [] if args.json else reports:
        if r.error:
            print(f"FAILED   {r.entry}\n         {r.error}")
        else:
            print(f"{'warning' if r.warning else 'ok':<8} {r.entry} → {', '.join(r.archs) or '(none)'}  [{r.source}]")
            if r.warning:
                print(f"         {r.warning}")
    return 1 if any(not r.ok for r in reports) else 0


def _build_defaults(args: argparse.Namespace) -> int:
    from pathlib import Path

    from core.defaults import build_defaults, remeasure_defaults

    if args.metrics_only:
        measured = remeasure_defaults(only=args.only, folder=Path(args.out) if args.out else None)
        if args.json:
            print(json.dumps(measured, sort_keys=True))
        for name, m in measured.items() if not args.json else ():
            print(f"{name:<24} clean {m['clean_acc']:.3f}  robust {m['robust_acc']:.3f}  ({m['n']} test points)")
        return 0

    def announce(name: str) -> None:
        if not args.json:
            print(f"building {name} …", file=sys.stderr, flush=True)

    from core.evaluation.shipped import export_shipped_evaluations

    out = {} if args.evaluations_only else build_defaults(only=args.only, folder=Path(args.out) if args.out else None,
                                                           on_start=announce)
    evaluations, maps = {}, {}
    if args.out is None:  # the shipped evaluations and latent maps belong to the models in assets/models
        from core.latent.shipped import export_shipped_latent_maps

        evaluations = export_shipped_evaluations(only=args.only, on_start=lambda r: announce(f"evaluations of {r}"))
        maps = export_shipped_latent_maps(only=args.only, on_start=lambda r: announce(f"latent map of {r}"))
    if args.json:
        print(json.dumps({**out, "evaluations": evaluations, "latent_maps": maps}, sort_keys=True))
    else:
        for name, info in out.items():
            print(f"{name:<24} clean {info['clean_acc']:.3f}  robust {info['robust_acc']:.3f}  "
                  f"{info['bytes'] / 1024:.0f} KiB  {info['seconds']:.1f} s")
        for run_id, rows in evaluations.items():
            print(f"{run_id:<40} {rows} evaluations → assets/evaluations/{run_id}/")
        for run_id, name in maps.items():
            print(f"{run_id:<40} latent map → assets/latent/{run_id}/{name}")
        unshipped = set(args.only or ()) - {r.removeprefix("shipped-") for r in evaluations} if args.out is None else ()
        for name in sorted(unshipped):
            print(f"{name:<40} no evaluations to ship (the Robustness page does not show this model)")
    return 0


def run(args: argparse.Namespace) -> int:
    return {"runs": _runs, "data": _data, "plugins": _plugins, "build-defaults": _build_defaults}[args.command](args)
