"""Importing a user's checkpoint (safetensors + JSON) into the registry, and deleting a run with its files.

An import is validated in a temporary folder by the same loader that refuses pickles, truncated files,
mismatched architectures and NaN weights; only a checkpoint that loads is moved into ATLAS_HOME/imports and
registered. Nothing is written to the registry when it is refused.
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
            text = str(exc).replace(str(staged.with_suffix(".json")), "the .json file")
            raise CheckpointError(text.replace(str(staged), "the .safetensors file")) from exc
        _check_meta(meta)
        if registry.find_run(run_id) is not None:
            raise CheckpointError(f"this checkpoint is already imported as run {run_id}")
        folder = registry.home / "imports" / run_id
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp, folder)
    metrics = meta.get("metrics", {}) if isinstance(meta.get("metrics"), dict) else {}
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
