"""Per-epoch training state on disk: model checkpoint + optimizer state, both safetensors + JSON.

Files are written atomically and published by rewriting ``last.json`` last, so a process killed at any instant
leaves either the previous complete epoch or the new one, never a mix.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from core.errors import CheckpointError
from core.models import load_checkpoint, save_checkpoint
from core.utils import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)
KEEP_EPOCHS = 2


def _optimizer_to_files(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in state["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        idx, key = name.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    for idx, entry in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(entry)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_epoch_state(folder: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     meta: dict[str, Any]) -> Path:
    """Write epoch ``epoch``'s model and optimizer files. They count only once :func:`publish_epoch` names them."""
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = save_checkpoint(model, meta, folder / f"epoch_{epoch:04d}")
    tensors, opt_meta = _optimizer_to_files(optimizer)
    atomic_write_bytes(folder / f"optim_{epoch:04d}.safetensors", st_save(tensors))
    atomic_write_json(folder / f"optim_{epoch:04d}.json", {**opt_meta, "epoch": epoch})
    return ckpt


def publish_epoch(folder: Path, epoch: int) -> None:
    """Point last.json at ``epoch`` (the commit point of an epoch), then drop all but the newest epochs."""
    atomic_write_json(folder / "last.json", {"epoch": epoch, "checkpoint": f"epoch_{epoch:04d}.safetensors"})
    for old in sorted(folder.glob("epoch_*.safetensors"))[:-KEEP_EPOCHS]:
        stem = old.stem.split("_")[1]
        for path in (old, old.with_suffix(".json"), folder / f"optim_{stem}.safetensors", folder / f"optim_{stem}.json"):
            path.unlink(missing_ok=True)


def last_epoch(folder: Path) -> int:
    """The last fully written epoch in ``folder`` (0 when there is none)."""
    pointer = folder / "last.json"
    if not pointer.exists():
        return 0
    return int(json.loads(pointer.read_text())["epoch"])


def load_epoch_state(folder: Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                     device: torch.device) -> dict[str, Any]:
    """Restore model weights and optimizer state of ``epoch``; return the extra JSON saved with it."""
    saved, _ = load_checkpoint(folder / f"epoch_{epoch:04d}.safetensors")
    model.load_state_dict(saved.state_dict())
    opt_path = folder / f"optim_{epoch:04d}.safetensors"
    try:
        tensors = st_load(opt_path.read_bytes())
        opt_meta = json.loads((folder / f"optim_{epoch:04d}.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"optimizer state of epoch {epoch} in {folder} is unreadable: {exc}") from exc
    optimizer.load_state_dict(_optimizer_from_files({k: v.to(device) for k, v in tensors.items()}, opt_meta))
    log.info("resumed from epoch %d in %s", epoch, folder)
    return opt_meta
