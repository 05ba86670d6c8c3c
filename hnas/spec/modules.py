"""Torch modules of the search space: IBConv (MobileNetV2 inverted bottleneck), Identity, stem and head.

Built only through `hnas.spec.parts.Part.build`, so every user gets the same class.
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
    """Inverted bottleneck: 1x1 expand + BN + ReLU6 (not when E=1), KxK depthwise + BN + ReLU6, 1x1 project + BN;
    `residual` (decided by the layer's shape, `LayerShape.keeps_shape`) adds the input."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, expand: int, stride: int, residual: bool):
        super().__init__()
        mid = in_ch * expand
        self.expand = ConvBNReLU6(in_ch, mid, 1, 1) if expand != 1 else None
        self.depthwise = ConvBNReLU6(mid, mid, kernel, stride, groups=mid)
        self.project = nn.Sequential(nn.Conv2d(mid, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.residual = residual

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


def canonical(build, seed: int = 0) -> nn.Module:
    """The module `build()` makes, with the weights torch's own initialisation gives right after
    `torch.manual_seed(seed)`, drawn from a local generator: built on the meta device (so nothing is drawn from
    the global RNG), then materialised and initialised layer by layer. The same weights on every call."""
    import math

    with torch.device("meta"):
        module = build()
    module = module.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d | nn.Linear):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                if m.bias is not None:
                    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)  # noqa: SLF001 - torch's own rule
                    bound = 1 / math.sqrt(fan_in) if fan_in else 0.0
                    nn.init.uniform_(m.bias, -bound, bound, generator=g)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_parameters()  # weight 1, bias 0, running mean 0 and variance 1
    return module
