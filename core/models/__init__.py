"""Architectures and checkpoint I/O.

Every model takes inputs in [0, 1] (except ``patchnet``, which reads raw patches), normalises inside with a
``Normalize`` layer, returns raw logits and exposes ``num_classes`` and ``features(x)``. Build one with
``build_model(arch, seed=..., **kwargs)``; save and load with ``save_checkpoint`` / ``load_checkpoint``
(safetensors + JSON, never pickle).
"""

from core.models import patchnet, resnet, small  # noqa: F401  (importing registers the architectures)
from core.models.checkpoint import (
    CHECKPOINT_FORMAT,
    checkpoint_paths,
    load_checkpoint,
    read_checkpoint_meta,
    save_checkpoint,
)
from core.models.layers import Normalize, SmoothedReLU, smoothed_relu
from core.models.registry import ARCHS, build_model, register_arch

__all__ = [
    "ARCHS",
    "CHECKPOINT_FORMAT",
    "Normalize",
    "SmoothedReLU",
    "build_model",
    "checkpoint_paths",
    "load_checkpoint",
    "read_checkpoint_meta",
    "register_arch",
    "save_checkpoint",
    "smoothed_relu",
]
