"""The 2-D teaching Playground: toy data, a small MLP trained live, and DALE's Langevin perturbations.

``PlaygroundConfig`` (config.py) says what to train; ``iter_frames`` / ``train_playground`` (train.py) train it
and hand over frames to draw; ``langevin_panel`` (langevin.py) samples DALE's perturbation distribution around
one point next to PGD's worst case. Nothing here imports streamlit: dashboard/playground_runner.py runs it in a
background thread and pages/playground.py draws it.
"""

from core.playground.config import (
    ACTIVATION_LABELS, ACTIVATIONS, DATASET_LABELS, DATASETS, LABELS, LIMITS, METHOD_LABELS, METHODS, NORMS,
    SIZE_CAPS_COST, PlaygroundConfig, eps_limit,
)
from core.playground.langevin import LangevinPanel, langevin_panel
from core.playground.train import (
    FRAME_INTERVAL, FRAME_SHARE, Frame, PlaygroundData, RobustPoints, Trainer, build_mlp, default_noise, frame_due,
    grid_axis, grid_probabilities, iter_frames, load_data, load_weights, robust_points, train_playground,
)

__all__ = [
    "ACTIVATIONS", "ACTIVATION_LABELS", "DATASETS", "DATASET_LABELS", "FRAME_INTERVAL", "FRAME_SHARE", "Frame",
    "LABELS", "LIMITS", "SIZE_CAPS_COST", "LangevinPanel", "METHODS", "METHOD_LABELS",
    "NORMS", "PlaygroundConfig", "PlaygroundData", "RobustPoints", "Trainer", "build_mlp", "default_noise",
    "eps_limit", "frame_due", "grid_axis", "grid_probabilities", "iter_frames", "langevin_panel", "load_data",
    "load_weights", "robust_points", "train_playground",
]
