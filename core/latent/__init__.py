"""Latent space: layer features by forward hooks, 2-D projections (UMAP / PCA / t-SNE) of clean and adversarial
points over an ε grid, and the measures beside them. umap-learn is imported only when a UMAP map is asked for."""

from core.latent.hooks import PENULTIMATE, default_layer, describe_layer, extract_features, layer_names
from core.latent.maps import ATTACKS, LatentMap, LatentSpec, compute_map, latent_map, latent_path, load_map

__all__ = ["ATTACKS", "PENULTIMATE", "LatentMap", "LatentSpec", "compute_map", "default_layer", "describe_layer",
           "extract_features", "latent_map", "latent_path", "layer_names", "load_map"]
