"""The per-sample evaluation table and its summaries.

One table per (model, data subset, attack config, ε grid): a row per point with the true label, the clean
prediction, and for every ε the adversarial prediction and the perturbation's norms. Curves, per-class charts and
summaries are views of it. Points already misclassified clean are not attacked (they count as not robust).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from core.attacks import Attack
from core.data import Dataset
from core.distributed import SINGLE, DistContext
from core.errors import ConfigError
from core.utils import make_generator


def eps_column(eps: float) -> str:
    """Column suffix for one ε: the shortest repr that round-trips, so distinct ε never share a column."""
    return repr(float(eps))


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    was_training = model.training
    model.eval()
    preds = [model(x[i:i + batch_size].to(device)).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    model.train(was_training)
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long)


def per_sample_table(model: nn.Module, data: Dataset, attack: Attack, eps_grid: Sequence[float], *,
                     seed: int = 0, batch_size: int = 256, device: torch.device | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     dist: DistContext = SINGLE) -> pd.DataFrame:
    """Attack every correctly classified point at every ε of the grid; return the per-sample table.

    ``on_progress(done, total)`` is called after every batch, counting attacked points over the whole grid.
    Every batch draws its randomness from its own generator (seed, ε, batch number), so under torchrun the
    batches can be shared out over the ranks (batch b on rank b mod world size) and the merged table, which every
    rank gets, equals the single-process one exactly.
    """
    if len({eps_column(e) for e in eps_grid}) != len(eps_grid):
        raise ConfigError(f"the ε grid has repeated values: {list(eps_grid)}")
    device = device or next(model.parameters()).device
    pred_clean = predict(model, data.x, device, batch_size)
    table = pd.DataFrame({"index": np.arange(len(data)), "y": data.y.numpy(), "pred_clean": pred_clean.numpy()})
    todo = torch.nonzero(pred_clean == data.y).flatten()
    mine = [b for b in range(0, len(todo), batch_size) if (b // batch_size) % dist.world_size == dist.rank]
    done, total = 0, sum(len(todo[b:b + batch_size]) for b in mine) * len(eps_grid)
    if on_progress is not None:  # the total before the first batch: only correctly classified points are attacked
        on_progress(0, total)
    gen_device = str(device) if device.type == "cuda" else "cpu"
    for eps in eps_grid:
        col = eps_column(eps)
        adv = pred_clean.clone()
        l2 = torch.zeros(len(data))
        linf = torch.zeros(len(data))
        for start in mine:
            idx = todo[start:start + batch_size]
            # Batch 0 keeps the key of the one generator used before batches had their own: results on up to
            # one batch of points are unchanged.
            batch_key = (start // batch_size,) if start else ()
            gen = make_generator(seed, "eval", col, *batch_key, device=gen_device)
            result = attack(model, data.x[idx].to(device), data.y[idx].to(device), eps, bounds=data.bounds,
                            generator=gen)
            adv[idx] = result.logits_adv.argmax(1).cpu()
            l2[idx], linf[idx] = result.norms["l2"].cpu(), result.norms["linf"].cpu()
            done += len(idx)
            if on_progress is not None:
                on_progress(done, total)
        if dist.enabled:
            adv, l2, linf = _merge_shards(dist, todo, batch_size, adv, l2, linf)
        table[f"pred_adv@{col}"] = adv.numpy()
        table[f"l2@{col}"] = l2.numpy()
        table[f"linf@{col}"] = linf.numpy()
    return table


def _merge_shards(dist: DistContext, todo: torch.Tensor, batch_size: int, *columns: torch.Tensor
                  ) -> tuple[torch.Tensor, ...]:
    """Every rank's attacked rows gathered into full columns (rows no rank attacked keep their clean values)."""
    shards = dist.gather([c.numpy() for c in columns])
    merged = [c.clone() for c in columns]
    for rank, arrays in enumerate(shards):
        rows = torch.cat([todo[b:b + batch_size] for b in range(0, len(todo), batch_size)
                          if (b // batch_size) % dist.world_size == rank] or [todo[:0]])
        for out, array in zip(merged, arrays):
            out[rows] = torch.from_numpy(array)[rows]
    return tuple(merged)


def summarize(table: pd.DataFrame, eps: float, classes: Sequence[str] | None = None) -> dict[str, Any]:
    """Clean and robust accuracy at ``eps`` overall and per class."""
    col = f"pred_adv@{eps_column(eps)}"
    if col not in table:
        raise KeyError(f"ε = {eps:g} is not in this table's grid")
    clean = table["pred_clean"] == table["y"]
    robust = table[col] == table["y"]
    per_class = {}
    for c, group in table.groupby("y"):
        name = str(classes[int(c)]) if classes is not None else str(c)
        per_class[name] = {"clean_acc": float(clean[group.index].mean()),
                           "robust_acc": float(robust[group.index].mean()), "n": int(len(group))}
    return {"clean_acc": float(clean.mean()) if len(table) else 0.0,
            "robust_acc": float(robust.mean()) if len(table) else 0.0,
            "n": int(len(table)), "per_class": per_class}
