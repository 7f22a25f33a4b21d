"""Small networks that train in seconds on a laptop CPU: an MLP for the 2-D toy sets, a small CNN for digits /
MNIST / CIFAR-sized inputs, and LeNet-5 for 28×28 digits.

All of them take inputs in [0, 1], normalise inside (``model.normalize``) and return raw logits. They have no
BatchNorm and no dropout, so train and eval mode compute the same function — what attacks and geometry tools want.
Hook-friendly layout: ``normalize`` → ``body`` → (``penultimate``) → ``head``; ``features(x)`` returns the input
of ``head`` and ``feature_layers`` names the submodules worth hooking.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from core.errors import ConfigError
from core.models.layers import LayoutFlatten, Normalize
from core.models.registry import register_arch, require_choice, require_int

__all__ = ["MLP", "SmallCNN", "LeNet"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}


def _check_image(x: torch.Tensor, channels: int, size: int, arch: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels or x.shape[2] != size or x.shape[3] != size:
        raise ValueError(f"{arch} expects inputs of shape N×{channels}×{size}×{size}, got {tuple(x.shape)}")


@register_arch("mlp")
class MLP(nn.Module):
    """Fully connected ReLU/tanh/softplus network; inputs N×in_features (anything else is flattened from dim 1).

    Args:
        in_features: input dimension (2 for the toy sets, 64 for flattened 8×8 digits).
        num_classes: number of logits.
        hidden: widths of the hidden layers, e.g. ``(64, 64)``; empty gives a linear model.
        activation: ``"relu"``, ``"tanh"`` or ``"softplus"`` (smooth, for curvature plots).
        mean, std: per-feature (or single) normalisation statistics.
    """

    feature_layers = ("body",)

    def __init__(
        self,
        in_features: int = 2,
        num_classes: int = 2,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        self.in_features = require_int("in_features", in_features)
        self.num_classes = require_int("num_classes", num_classes, minimum=2)
        act = _ACTIVATIONS[require_choice("activation", activation, tuple(_ACTIVATIONS))]
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ConfigError(f"hidden must be a list of layer widths, got {hidden!r}")
        widths = [require_int("hidden width", w) for w in hidden]
        self.normalize = Normalize(mean, std, num_channels=self.in_features)
        layers: list[nn.Module] = []
        prev = self.in_features
        for width in widths:
            layers += [nn.Linear(prev, width), act()]
            prev = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"mlp expects {self.in_features} input features, got input of shape {tuple(x.shape)}")
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_arch("smallcnn")
class SmallCNN(nn.Module):
    """conv3×3(w)–ReLU–conv3×3(2w)–ReLU–maxpool2–conv3×3(2w)–ReLU–[avgpool]–Linear(128)–ReLU–Linear(classes).

    After the max-pool the map is average-pooled down to about 4×4 (none at image_size 8), so the fully connected
    part stays small at every input size: ≈188k parameters at the defaults. Fixed-size ``AvgPool2d`` rather than
    adaptive pooling, because adaptive pooling's CUDA backward is not deterministic.

    Args:
        in_channels: 1 (digits, MNIST) or 3 (CIFAR-10, SVHN).
        image_size: side of the square input; 8, 28 and 32 are the sizes in use (at least 4).
        num_classes: number of logits.
        width: channels of the first conv; later convs use 2·width.
        mean, std: per-channel (or single) normalisation statistics.
    """

    feature_layers = ("body", "penultimate")

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 8,
        num_classes: int = 10,
        width: int = 32,
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        self.in_channels = require_int("in_channels", in_channels)
        self.image_size = require_int("image_size", image_size, minimum=4)
        self.num_classes = require_int("num_classes", num_classes, minimum=2)
        width = require_int("width", width)
        self.normalize = Normalize(mean, std, num_channels=self.in_channels)
        side = self.image_size // 2
        pool = max(1, side // 4)
        layers: list[nn.Module] = [
            nn.Conv2d(self.in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        ]
        if pool > 1:
            layers.append(nn.AvgPool2d(pool))
        self.body = nn.Sequential(*layers)
        flat = 2 * width * (side // pool) ** 2
        self.penultimate = nn.Sequential(LayoutFlatten(), nn.Linear(flat, 128), nn.ReLU())
        self.head = nn.Linear(128, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.in_channels, self.image_size, "smallcnn")
        return self.penultimate(self.body(self.normalize(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_arch("lenet")
class LeNet(nn.Module):
    """LeNet-5 for N×C×28×28 (ReLU and max-pooling in place of the original tanh and subsampling).

    conv5×5(6, pad 2)–ReLU–maxpool2–conv5×5(16)–ReLU–maxpool2–Linear(120)–ReLU–Linear(84)–ReLU–Linear(classes).

    Args:
        in_channels: input channels (1 for MNIST / Fashion-MNIST).
        num_classes: number of logits.
        mean, std: per-channel (or single) normalisation statistics.
    """

    feature_layers = ("body", "penultimate")
    image_size = 28

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        self.in_channels = require_int("in_channels", in_channels)
        self.num_classes = require_int("num_classes", num_classes, minimum=2)
        self.normalize = Normalize(mean, std, num_channels=self.in_channels)
        self.body = nn.Sequential(
            nn.Conv2d(self.in_channels, 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.penultimate = nn.Sequential(
            LayoutFlatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU()
        )
        self.head = nn.Linear(84, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x, self.in_channels, self.image_size, "lenet")
        return self.penultimate(self.body(self.normalize(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
