"""Importing a user's checkpoint (safetensors + JSON) into the registry, and deleting a run with its files.

An import is validated in a temporary folder by the same loader that refuses pickles, truncated files,
mismatched architectures and NaN weights, then checked against its dataset (input shape, number of classes) and
measured as a trained run is (the .json file's own accuracy is kept as ``reported_*``); only a checkpoint that
passes is moved into ATLAS_HOME/imports and registered. Nothing is written to the registry when it is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

from core.errors import CheckpointError
from core.store.registry import Registry
from core.store.shipped import created_timestamp

MAX_IMPORT_BYTES = 50 * 1024 * 1024


def import_checkpoint(registry: Registry, weights: bytes, meta_json: bytes, *, name: str | None = None,
                      max_bytes: int = MAX_IMPORT_BYTES) -> dict[str, Any]:
    """Validate and register an uploaded checkpoint; return its run row. Raises CheckpointError, saying why."""
    if len(weights) > max_bytes:
        raise CheckpointError(f"the weights file is {len(weights) / 2**20:.1f} MiB; the limit is "
                              f"{max_bytes / 2**20:.0f} MiB")
    if len(meta_json) > 1024 * 1024:
        raise CheckpointError("the JSON metadata file is larger than 1 MiB; it is not a checkpoint's metadata")
    from core.models import load_checkpoint

    digest = hashlib.sha256(weights).hexdigest()[:12]
    run_id = f"import-{digest}"
    with tempfile.TemporaryDirectory(dir=registry.home, prefix=".import-") as tmp:
        staged = Path(tmp) / "model.safetensors"
        staged.write_bytes(weights)
        staged.with_suffix(".json").write_bytes(meta_json)
        try:
            model, meta = load_checkpoint(staged, max_bytes=max_bytes)
        except CheckpointError as exc:
            # Name the user's files, not our temporary copies.
            json_file = str(staged.with_suffix(".json"))
            text = str(exc).replace(f"checkpoint metadata {json_file}", "the .json file")
            text = text.replace(json_file, "the .json file")
            raise CheckpointError(text.replace(str(staged), "the .safetensors file")) from exc
        _check_meta(meta)
        existing = registry.find_run(run_id)
        if existing is not None:
            raise CheckpointError(
                f"these weights are already imported as “{existing['name']}” (run {run_id}) for dataset "
                f"{existing['dataset']}; to import them again with other metadata, pick dataset "
                f"{existing['dataset']} in the sidebar and delete that model here first")
        metrics = _measured_or_reported(model, meta)
        folder = registry.home / "imports" / run_id
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp, folder)
    dataset = str(meta.get("dataset", "unknown"))
    # Names are how models are picked: a clash (e.g. re-importing a shipped model's weights) gets a suffix.
    wanted = (name or meta.get("name") or f"imported {meta['arch']}").strip()[:110]
    return registry.create_run(
        run_id, name=registry.unique_name(dataset, wanted), dataset=dataset, arch=meta["arch"],
        method=str(meta.get("method", "unknown")),
        norm=meta.get("norm"), eps=_float_or_none(meta.get("eps")), config=meta.get("hparams", {}) or {},
        status="imported", source="imported", checkpoint_path=str(folder / "model.safetensors"),
        created_at=created_timestamp(meta),
        final_metrics=metrics, run_dir=str(folder))


def _measured_or_reported(model: Any, meta: dict[str, Any]) -> dict[str, Any]:
    """The model's accuracy as the Atlas measures a trained run's (clean on the test split, PGD-10 on 256 held-out
    test points at the model's ε), after checking it fits the dataset. When the dataset's files are not here the
    JSON's own figures are kept, marked ``reported``; a model that does not fit the dataset is refused either way."""
    from core.data import DATASETS, load_dataset, missing_files

    reported = meta.get("metrics", {}) if isinstance(meta.get("metrics"), dict) else {}
    name = meta.get("dataset")
    if name is None:
        return {**reported, "reported": True} if reported else {}
    spec = DATASETS[name]
    params = meta.get("dataset_params") or (meta.get("hparams") or {}).get("dataset_params") or {}
    if not isinstance(params, dict):
        raise CheckpointError(f"the .json file's \"dataset_params\" must be a JSON object, got {params!r}")
    test = None if missing_files(name) else load_dataset(name, "test", **params)
    shape = tuple(test.x.shape[1:]) if test is not None else tuple(spec.input_shape)
    classes = len(test.classes) if test is not None else spec.num_classes
    _check_fits(model, name, shape, classes)
    if test is None:
        return {**reported, "reported": True} if reported else {}
    return _measure(model, meta, test, reported)


def _check_fits(model: Any, dataset: str, shape: tuple[int, ...], classes: int) -> None:
    import torch

    size = "×".join(str(s) for s in shape)
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, *shape))
    except (ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the model does not take {dataset}'s inputs ({size}): {exc}; check the .json file's "
                              "\"dataset\" and \"arch_kwargs\"") from exc
    if tuple(logits.shape) != (2, classes):
        raise CheckpointError(f"the model gives {logits.shape[-1]} outputs per input, but {dataset} has {classes} "
                              "classes; check the .json file's \"dataset\" and \"arch_kwargs\"")


def _measure(model: Any, meta: dict[str, Any], test: Any, reported: dict[str, Any]) -> dict[str, Any]:
    import torch

    from core.attacks import PGD
    from core.training.config import TrainConfig
    from core.training.epoch import accuracy, robust_flags
    from core.training.loop import held_out_subset

    cpu = torch.device("cpu")
    defaults = TrainConfig()
    metrics: dict[str, Any] = {"clean_acc": accuracy(model, test, cpu)}
    eps, norm = _float_or_none(meta.get("eps")), meta.get("norm") or "linf"
    if eps:
        held_out = held_out_subset(test, defaults.eval_n, defaults.seed)
        flags = robust_flags(model, held_out, PGD(norm=norm, steps=defaults.eval_steps), eps, cpu, defaults.seed)
        metrics.update(robust_acc=float(flags.float().mean()), attack=f"PGD-{defaults.eval_steps}", eps=eps)
        metrics["per_class_robust_acc"] = {str(name): float(flags[held_out.y == c].float().mean())
                                           for c, name in enumerate(held_out.classes) if (held_out.y == c).any()}
    metrics.update({f"reported_{k}": v for k, v in reported.items() if k in ("clean_acc", "robust_acc")})
    return metrics


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_meta(meta: dict[str, Any]) -> None:
    from core.attacks.norms import NORMS
    from core.data import DATASETS

    dataset = meta.get("dataset")
    if dataset is not None and dataset not in DATASETS:
        raise CheckpointError(f"the checkpoint names dataset {dataset!r}, which the Atlas does not know; "
                              f"known: {', '.join(sorted(DATASETS))}")
    eps = meta.get("eps")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps)
                            or eps < 0):
        raise CheckpointError(f"the .json file's \"eps\" (the training ε) is {eps!r}; it must be a finite number "
                              "≥ 0, or null for a model trained without attacks")
    norm = meta.get("norm")
    if norm is not None and norm not in NORMS:
        raise CheckpointError(f"the .json file's \"norm\" is {norm!r}; choose from {', '.join(NORMS)} or null")
    json.dumps(meta)


def delete_run_files(registry: Registry, run_id: str) -> None:
    """Delete a trained or imported run: its registry rows, then its folder. Shipped runs are refused."""
    run = registry.get_run(run_id)
    registry.delete_run(run_id)
    folder = Path(run["run_dir"]) if run["run_dir"] else None
    if folder is not None and folder.exists() and registry.home in folder.resolve().parents:
        shutil.rmtree(folder)
    for kind in ("evaluations", "latent"):
        stored = registry.home / kind / run_id
        if stored.exists():
            shutil.rmtree(stored)
