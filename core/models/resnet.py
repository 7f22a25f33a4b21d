"""The two standard CIFAR-10 / SVHN architectures of the adversarial-training literature, for 32×32 inputs.

* PreActResNet-18 as in Rice, Wong & Kolter (2020) "Overfitting in adversarially robust deep learning" (and the
  Madry-lab code it follows): pre-activation blocks, a final BatchNorm–ReLU, global average pooling, one linear.
* WideResNet-depth-k as in Zagoruyko & Komodakis (2016), in the form used by TRADES / RobustBench.

Submodule names follow those reference implementations (``conv1``, ``layer1``…``layer4``, ``bn``, ``linear``;
``conv1``, ``block1``…``block3``, ``bn1``, ``fc``) so published weights map onto them by adding ``normalize.*``.
Global average pooling is a ``mean`` over H×W: deterministic on CUDA, unlike adaptive pooling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from core.errors import ConfigError
from core.models.layers import Normalize
from core.models.registry import register_arch, require_float, require_int

__all__ = ["PreActResNet18", "WideResNet"]


def _check_cifar(x: torch.Tensor, channels: int, arch: str) -> None:
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(f"{arch} expects inputs of shape N×{channels}×32×32, got {tuple(x.shape)}")


class PreActBlock(nn.Module):
    """BN–ReLU–conv3×3–BN–ReLU–conv3×3; the projection shortcut reads the pre-activated input (He et al. 2016)."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        shortcut = self.shortcut(out) if hasattr(self, "shortcut") else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


@register_arch("preact_resnet18")
class PreActResNet18(nn.Module):
    """PreActResNet-18 (11.2M parameters at width 64) for N×C×32×32 inputs in [0, 1].

    Args:
        in_channels: input channels (3 for CIFAR-10 / SVHN).
        num_classes: number of logits.
        width: channels of the first stage; the four stages use width·(1, 2, 4, 8). Smaller widths are handy
            for quick experiments and tests.
        mean, std: per-channel (or single) normalisation statistics.
    """

    feature_layers = ("layer1", "layer2", "layer3", "layer4")

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 64,
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        self.in_channels = require_int("in_channels", in_channels)
        self.num_classes = require_int("num_classes", num_classes, minimum=2)
        width = require_int("width", width)
        self.normalize = Normalize(mean, std, num_channels=self.in_channels)
        self.conv1 = nn.Conv2d(self.in_channels, width, 3, stride=1, padding=1, bias=False)
        planes = width
        stages = []
        for index, stride in enumerate((1, 2, 2, 2)):
            out_planes = width * 2**index
            stages.append(nn.Sequential(PreActBlock(planes, out_planes, stride), PreActBlock(out_planes, out_planes)))
            planes = out_planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(planes)
        self.linear = nn.Linear(planes, self.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_cifar(x, self.in_channels, "preact_resnet18")
        out = self.conv1(self.normalize(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return F.relu(self.bn(out)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(x))


class WideBasicBlock(nn.Module):
    """Zagoruyko's pre-activation wide block; with ``in != out`` the shortcut convolves the activated input."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes
        if not self.equal_in_out:
            self.convShortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu1(self.bn1(x))
        out = self.relu2(self.bn2(self.conv1(activated)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        out = self.conv2(out)
        return out + (x if self.equal_in_out else self.convShortcut(activated))


class NetworkBlock(nn.Module):
    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.layer = nn.Sequential(
            *[
                WideBasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1, dropout)
                for i in range(num_blocks)
            ]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


@register_arch("wideresnet")
class WideResNet(nn.Module):
    """WRN-depth-widen_factor (WRN-28-10: 36.5M parameters) for N×C×32×32 inputs in [0, 1].

    Args:
        depth: total depth, 6·n + 4 (16, 22, 28, 34, …); each of the three groups has n blocks.
        widen_factor: k, the group widths are 16k, 32k, 64k.
        in_channels: input channels (3 for CIFAR-10 / SVHN).
        num_classes: number of logits.
        dropout: dropout probability between the two convs of each block (active in train mode only).
        mean, std: per-channel (or single) normalisation statistics.
    """

    feature_layers = ("block1", "block2", "block3")

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        in_channels: int = 3,
        num_classes: int = 10,
        dropout: float = 0.0,
        mean: float | Sequence[float] = (0.0,),
        std: float | Sequence[float] = (1.0,),
    ) -> None:
        super().__init__()
        depth = require_int("depth", depth, minimum=10)
        if (depth - 4) % 6 != 0:
            raise ConfigError(f"wideresnet depth must be 6·n + 4 (16, 22, 28, 34, …), got {depth}")
        widen_factor = require_int("widen_factor", widen_factor)
        self.in_channels = require_int("in_channels", in_channels)
        self.num_classes = require_int("num_classes", num_classes, minimum=2)
        dropout = require_float("dropout", dropout)
        if dropout >= 1:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        n = (depth - 4) // 6
        channels = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.normalize = Normalize(mean, std, num_channels=self.in_channels)
        self.conv1 = nn.Conv2d(self.in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, channels[0], channels[1], 1, dropout)
        self.block2 = NetworkBlock(n, channels[1], channels[2], 2, dropout)
        self.block3 = NetworkBlock(n, channels[2], channels[3], 2, dropout)
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=False)
        self.fc = nn.Linear(channels[3], self.num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Zagoruyko's initialisation: He-normal convs (fan_out), unit BN scale, zero biases.
        if self.conv1.weight.is_meta:
            # Built for shapes only (checkpoint validation): normal_ on meta tensors imports torch._dynamo (~2 s).
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
            elif isinstance(module, nn.BatchNorm2d):
                module.weight.data.fill_(1)
                module.bias.data.zero_()
            elif isinstance(module, nn.Linear):
                module.bias.data.zero_()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        _check_cifar(x, self.in_channels, "wideresnet")
        out = self.conv1(self.normalize(x))
        out = self.block3(self.block2(self.block1(out)))
        return self.relu(self.bn1(out)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
