"""Attributions (captum) and robust vs non-robust units. captum is imported only when an attribution is asked for."""

from core.features.attributions import (LABELS, METHODS, attribute, low_frequency_share, rank_correlation,
                                        stroke_share, summary, topk_overlap)
from core.features.units import UnitScores, ablated, ablation_study, unit_activations, unit_maps, unit_scores

__all__ = ["LABELS", "METHODS", "UnitScores", "ablated", "ablation_study", "attribute", "low_frequency_share",
           "rank_correlation", "stroke_share", "summary", "topk_overlap", "unit_activations", "unit_maps",
           "unit_scores"]
