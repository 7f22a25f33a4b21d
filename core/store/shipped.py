"""Shipped default models (assets/models) registered read-only in the run registry, with their shipped evaluations
(assets/evaluations, written by ``python -m core build-defaults``; see core/evaluation/shipped.py)."""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

from core.errors import CheckpointError
from core.store.registry import Registry
from core.utils import REPO_ROOT, assets_models_dir

log = logging.getLogger(__name__)
SHIPPED_PREFIX = "shipped-"
REQUIRED = {"arch": str, "arch_kwargs": dict, "format": str}
EVALUATIONS_DIR = REPO_ROOT / "assets" / "evaluations"
ROW_KEYS = {"id": str, "run_id": str, "config": dict, "summary": dict}


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


def register_shipped(registry: Registry, folder: Path | None = None, *, evaluations: bool = True) -> list[str]:
    """Register (or refresh) every checkpoint in ``folder``; return the run ids. Bad files are skipped loudly.
    With ``evaluations`` (and the shipped folder), the shipped evaluations of those models are added too."""
    folder = folder or assets_models_dir()
    ids, digests = [], {}
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
        digests[run_id] = meta.get("sha256")
    if evaluations and folder == assets_models_dir():
        register_shipped_evaluations(registry, digests)
    return ids


def chosen_shipped(registry: Registry, only: list[str] | None) -> dict[str, dict]:
    """{checkpoint stem: run} of the shipped models registered in ``registry``, those in ``only`` (or all); an unknown
    stem in ``only`` is a ConfigError naming the choices. For the exports of ``python -m core build-defaults``."""
    from core.errors import ConfigError

    shipped = {r["id"].removeprefix(SHIPPED_PREFIX): r for r in registry.list_runs()
               if r["id"].startswith(SHIPPED_PREFIX)}
    unknown = sorted(set(only or ()) - set(shipped))
    if unknown:
        raise ConfigError(f"{', '.join(unknown)}: no such shipped model; choose from {', '.join(sorted(shipped))}")
    return {name: run for name, run in sorted(shipped.items()) if only is None or name in only}


def register_shipped_evaluations(registry: Registry, digests: dict[str, str | None],
                                 folder: Path | None = None) -> int:
    """Add the shipped evaluations (``<folder>/<run id>/<eval id>.json`` [+ ``.parquet``]) that the registry lacks
    and that were computed on the weights the shipped model has now (``digests``: run id → SHA-256); return how
    many were added. Rows of older weights, of unknown runs or with a missing table are skipped, so the page
    computes those itself; a malformed file is skipped loudly. Plain JSON, no unpickling: parquet is read only
    when a page asks for the table."""
    folder = folder or EVALUATIONS_DIR
    # One query per shipped run and one transaction for all new rows: this runs whenever a registry is opened.
    existing = {row["id"]: row for run_id in digests for row in registry.evaluations(run_id)}
    new_rows = []
    for path in sorted(folder.glob("*/*.json")):
        try:
            row = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.error("skipping shipped evaluation %s: %s", path.name, exc)
            continue
        if not isinstance(row, dict):
            row = {}
        bad = [key for key, kind in ROW_KEYS.items() if not isinstance(row.get(key), kind)]
        if bad:
            log.error("skipping shipped evaluation %s: %s missing or of the wrong type", path.name, ", ".join(bad))
            continue
        run_id, eval_id = row["run_id"], row["id"]
        if path.parent.name != run_id or path.stem != eval_id:
            log.error("skipping shipped evaluation %s: it names run %s, evaluation %s", path, run_id, eval_id)
            continue
        digest = digests.get(run_id)
        if digest is None or row["config"].get("weights_sha256") != digest:
            continue  # another model's, or computed on weights this model no longer has
        table = path.with_suffix(".parquet")
        wants_table = row["config"].get("kind") != "trust"
        if wants_table and not table.is_file():
            continue
        have = existing.get(eval_id)
        if have is not None and have["config"].get("weights_sha256") == digest and (
                not wants_table or (have["table_path"] and Path(have["table_path"]).is_file())):
            continue
        new_rows.append((eval_id, run_id, row["config"], row["summary"], str(table) if wants_table else None))
    if new_rows:
        registry.add_evaluations(new_rows)
    return len(new_rows)
