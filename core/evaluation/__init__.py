"""Evaluation: everything is derived from one per-sample table (see table.py)."""

from core.evaluation.pareto import pareto_front, pareto_mask
from core.evaluation.table import eps_column, per_sample_table, predict, summarize

__all__ = ["pareto_front", "pareto_mask", "eps_column", "per_sample_table", "predict", "summarize"]
