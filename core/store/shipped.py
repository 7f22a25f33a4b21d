"""Shipped default models (assets/models) registered read-only in the run registry."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from core.errors import CheckpointError
from core.store.registry import Registry
from core.utils import assets_models_dir

log = logging.getLogger(__name__)
SHIPPED_PREFIX = "shipped-"
REQUIRED = {"arch": str, "arch_kwargs": dict, "format": str}


def created_timestamp(meta: dict) -> float | None:
    """The checkpoint's own creation time (ISO text in its JSON) as a timestamp, when it has one."""
    try:
        return datetime.fromisoformat(str(meta["created_at"])).timestamp()
    except (KeyError, ValueError):
        return None


def read_shipped_meta(path: Path) -> dict:
    """The JSON of a shipped checkpoint, checked for the keys the registry needs. Plain JSON on purpose: listing
    models must not import torch; the full validation runs when a model is loaded."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path.name} is not readable JSON: {exc}") from exc
    for key, kind in REQUIRED.items():
        if not isinstance(meta.get(key), kind):
            raise CheckpointError(f"{path.name} lacks {key!r} ({kind.__name__})")
    return meta


def register_shipped(registry: Registry, folder: Path | None = None) -> list[str]:
    """Register (or refresh) every checkpoint in ``folder``; return the run ids. Bad files are skipped loudly."""
    folder = folder or assets_models_dir()
    ids = []
    for meta_path in sorted(folder.glob("*.json")):
        weights = meta_path.with_suffix(".safetensors")
        if not weights.exists():
            continue
        try:
            meta = read_shipped_meta(meta_path)
        except CheckpointError as exc:
            log.error("skipping shipped model %s: %s", meta_path.name, exc)
            continue
        run_id = SHIPPED_PREFIX + meta_path.stem
        fields = dict(name=meta.get("name", meta_path.stem), dataset=meta.get("dataset", "?"), arch=meta["arch"],
                      method=meta.get("method", "?"), norm=meta.get("norm"), eps=meta.get("eps"),
                      config=meta.get("hparams", {}))
        existing = registry.find_run(run_id)
        if existing is None:
            registry.create_run(run_id, or_ignore=True, status="shipped", source="shipped", readonly=True,
                                created_at=created_timestamp(meta),
                                checkpoint_path=str(weights), final_metrics=meta.get("metrics", {}),
                                run_dir=str(folder), **fields)
        elif existing["checkpoint_path"] != str(weights) or existing["final_metrics"] != meta.get("metrics", {}):
            registry.update_run(run_id, checkpoint_path=str(weights), final_metrics=meta.get("metrics", {}),
                                config=fields["config"])
        ids.append(run_id)
    return ids
