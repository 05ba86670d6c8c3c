"""Stand-alone networks built from (space, architecture) out of the same modules the supernet uses."""

from __future__ import annotations

import torch
from torch import nn

from hnas.arch import Architecture
from hnas.ops import build_op


class Network(nn.Module):
    """Stem, one block per searchable layer, final 1x1 conv, pool + fc."""

    def __init__(self, arch: Architecture):
        super().__init__()
        skeleton = arch.space.skeleton
        self.arch_string = str(arch)
        self.stem = skeleton.stem.build()
        self.blocks = nn.ModuleList(build_op(op, layer.shape) for layer, op in zip(arch.space.layers, arch.ops))
        self.final_conv = skeleton.final_conv.build()
        self.pool_fc = skeleton.pool_fc.build()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.pool_fc(self.final_conv(x))


def build_network(arch: Architecture) -> Network:
    """The stand-alone network of `arch` (freshly initialised weights)."""
    return Network(arch)
