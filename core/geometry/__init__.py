"""Decision-boundary geometry (Ortiz-Jimenez et al., METHODS.md §1): planes and cross-sections through an input,
curvature and distances, DeepFool margin distributions, DCT-subspace margins, universal perturbations.

The light, per-input pieces (planes, sections, curvature, local) run inline; the heavy analyses (margins, dct,
universal) are persisted per run through ``analysis`` and run as jobs of kind "geometry".
"""

from core.geometry.analysis import AnalysisCancelled, analysis, spec_from_dict, stored_analysis
from core.geometry.curvature import (
    RANDOM_REACH, boundary_curvature, boundary_distance, censored_ratios, cure_curvature, hessian_top_eigenvalue,
    margin_profile, random_vs_adversarial,
)
from core.geometry.dct import DCTMargins, DCTMarginSpec, dct_basis, dct_margins
from core.geometry.local import LocalGeometry, PlaneComparison, SectionSpec, compare_on_plane, curvature_sample
from core.geometry.margins import MarginResult, MarginSpec, deepfool_margins
from core.geometry.planes import PLANES, Plane, ball_section, make_plane, plane_from
from core.geometry.sections import RESOLUTIONS, Section, attack_path, cross_section, loss_surface
from core.geometry.universal import UAPResult, UAPSpec, universal_perturbation

__all__ = [
    "AnalysisCancelled", "DCTMarginSpec", "DCTMargins", "LocalGeometry", "MarginResult", "MarginSpec", "PLANES",
    "Plane", "PlaneComparison", "RANDOM_REACH", "RESOLUTIONS", "Section", "SectionSpec", "UAPResult", "UAPSpec",
    "analysis", "attack_path", "ball_section", "boundary_curvature", "boundary_distance", "censored_ratios",
    "compare_on_plane", "cross_section", "cure_curvature", "curvature_sample", "dct_basis", "dct_margins",
    "deepfool_margins", "hessian_top_eigenvalue", "loss_surface", "make_plane", "margin_profile", "plane_from",
    "random_vs_adversarial", "spec_from_dict", "stored_analysis", "universal_perturbation",
]
