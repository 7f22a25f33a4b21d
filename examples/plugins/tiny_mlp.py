"""An example plugin: a two-layer MLP for 8×8 digits, registered as ``example_tiny_mlp``.

Point the Atlas at it and every entry point (CLI, dashboard, background jobs) can build, load and import it::

    ATLAS_PLUGINS=examples/plugins/tiny_mlp.py bash scripts/dashboard.sh
    ATLAS_PLUGINS=examples/plugins/tiny_mlp.py .venv/bin/python -m core plugins

What an architecture needs, here as everywhere in the Atlas:

- a unique name in ``@register_arch(...)`` (a name already taken, e.g. ``smallcnn``, is refused);
- constructor arguments that are JSON-able numbers, strings or lists (they are written next to the weights and are
  all a checkpoint needs to rebuild the network), checked with ``require_int`` & co. so bad values say why;
- inputs in [0, 1], normalised inside the model (``Normalize``), raw logits out, ``num_classes`` and
  ``features(x)`` (the input of the last linear layer); ``feature_layers`` names submodules worth hooking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core.models import Normalize, register_arch, require_int


@register_arch("example_tiny_mlp")
class TinyMLP(nn.Module):
    """flatten → Linear(in_features, hidden) → ReLU → Linear(hidden, num_classes).

    Args:
        in_features: pixels per image (64 for 8×8 digits); inputs N×1×8×8 or N×64.
        hidden: width of the hidden layer.
        num_classes: number of logits.
        mean, std: one normalisation value shared by every pixel, or one per pixel.
    """

    feature_layers = ("body",)

    def __init__(
        self,
        in_features: int = 64,
        hidden: int = 32,
        num_classes: int = 10,
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        self.in_features = require_int("in_features", in_features)
        self.num_classes = require_int("num_classes", num_classes, minimum=2)
        self.flatten = nn.Flatten()
        self.normalize = Normalize(mean, std, num_channels=self.in_features)
        self.body = nn.Sequential(nn.Linear(self.in_features, require_int("hidden", hidden)), nn.ReLU())
        self.head = nn.Linear(hidden, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        if x.shape[1] != self.in_features:
            raise ValueError(f"example_tiny_mlp expects {self.in_features} pixels per input, got {tuple(x.shape)}")
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
