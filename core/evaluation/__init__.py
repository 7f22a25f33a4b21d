"""Evaluation: everything is derived from one per-sample table (see table.py).

Exports resolve lazily so that the light parts (the Pareto front) do not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"pareto_front": "pareto", "pareto_mask": "pareto", "eps_column": "table", "per_sample_table": "table",
            "predict": "table", "summarize": "table"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'core.evaluation' has no attribute {name!r}")
    return getattr(importlib.import_module(f"core.evaluation.{_EXPORTS[name]}"), name)
