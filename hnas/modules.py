"""Torch modules of the search space: IBConv (MobileNetV2 inverted bottleneck), Identity, stem and head.

Built only through `hnas.ops.build_op` and `FixedPart.build`, so every user gets the same class.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU6(nn.Sequential):
    """KxK convolution (same padding) + BatchNorm + ReLU6; used for the stem and the final 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU6(inplace=True),
        )


class IBConv(nn.Module):
    """Inverted bottleneck: 1x1 expand + BN + ReLU6 (not when E=1), KxK depthwise + BN + ReLU6, 1x1 project + BN."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expand: int, stride: int):
        super().__init__()
        mid = in_ch * expand
        self.expand = ConvBNReLU6(in_ch, mid, 1, 1) if expand != 1 else None
        self.depthwise = ConvBNReLU6(mid, mid, kernel, stride, groups=mid)
        self.project = nn.Sequential(nn.Conv2d(mid, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class Identity(nn.Module):
    """The skip operation: returns its input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class PoolFC(nn.Module):
    """Global average pooling followed by the fully connected classifier."""

    def __init__(self, in_ch: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


def zero_init_residuals(model: nn.Module) -> nn.Module:
    """Start every residual IBConv as the identity (last BN scale = 0), for training only.

    Deep stacks, and single-path supernets whose depth changes every step, train more stably from the first
    step. Exported (latency) modules keep the default initialisation.
    """
    for m in model.modules():
        if isinstance(m, IBConv) and m.residual:
            nn.init.zeros_(m.project[1].weight)
    return model
