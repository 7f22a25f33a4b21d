"""Architectures and checkpoint I/O.

Every model takes inputs in [0, 1] (except ``patchnet``, which reads raw patches), normalises inside with a
``Normalize`` layer, returns raw logits and exposes ``num_classes`` and ``features(x)``. Build one with
``build_model(arch, seed=..., **kwargs)``; save and load with ``save_checkpoint`` / ``load_checkpoint``
(safetensors + JSON, never pickle). Architectures of your own come from plugin modules named in ``ATLAS_PLUGINS``
(see ``core.models.plugins``), loaded when this package is first imported.
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
from core.models.plugins import load_plugins, plugin_reports
from core.models.registry import ARCHS, build_model, register_arch, require_choice, require_float, require_int

__all__ = [
    "ARCHS",
    "CHECKPOINT_FORMAT",
    "Normalize",
    "SmoothedReLU",
    "build_model",
    "checkpoint_paths",
    "load_checkpoint",
    "load_plugins",
    "plugin_reports",
    "read_checkpoint_meta",
    "register_arch",
    "require_choice",
    "require_float",
    "require_int",
    "save_checkpoint",
    "smoothed_relu",
]

# Last, once every name above exists: a plugin runs `from core.models import register_arch, …` while this package
# is still initialising, and gets them from the partly built module.
load_plugins()
