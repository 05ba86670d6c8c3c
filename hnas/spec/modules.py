"""Torch modules of the search space: IBConv (MobileNetV2 inverted bottleneck), Identity, stem and head.

Built only through `hnas.spec.parts.Part.build`, so every user gets the same class.
"""

from __future__ import annotations

import torch
from torch import nn

MEMORY_FORMAT = torch.channels_last  # every network of the spec trains and is evaluated in it, on every device: torch's
# CPU depthwise kernels run a proxy network's training step 1.6-2.5x faster in it (benchmarks/bench_kernels.py)


class SameConv2d(nn.Conv2d):
    """torch's KxK convolution with same padding (K // 2) that skips the taps which only ever meet padding.

    On an input smaller than the kernel's reach (a 7x7 depthwise kernel on the 1x1 or 2x2 maps of a low-resolution
    proxy) the outer taps multiply zeros only: the kernel cropped to the taps that can meet the input, with the
    padding reduced alike, gives the same output and the same gradients (the skipped taps' are zero either way),
    and torch's CPU kernels run it up to 300x faster. Exported whole: the model a phone runs and a LUT measures
    is the KxK convolution, and the module prints (so a LUT's cache keys read it) as torch's Conv2d."""

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if _exporting():
            return super()._conv_forward(x, weight, bias)
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        ch, cw = max(0, ph - (x.shape[-2] - 1)), max(0, pw - (x.shape[-1] - 1))  # taps cropped on each side
        if not (ch or cw):
            return super()._conv_forward(x, weight, bias)
        weight = weight[:, :, ch : kh - ch, cw : kw - cw]
        return nn.functional.conv2d(x, weight, bias, self.stride, (ph - ch, pw - cw), self.dilation, self.groups)

    def _get_name(self) -> str:
        return "Conv2d"


def _exporting() -> bool:
    return torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_exporting()


class ConvBNReLU6(nn.Sequential):
    """KxK convolution (same padding) + BatchNorm + ReLU6; used for the stem and the final 1x1 conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1):
        super().__init__(
            SameConv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
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
