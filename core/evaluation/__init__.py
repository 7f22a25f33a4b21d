"""Evaluation: everything is derived from one per-sample table (see table.py)."""

from core.evaluation.table import eps_column, per_sample_table, predict, summarize

__all__ = ["eps_column", "per_sample_table", "predict", "summarize"]
