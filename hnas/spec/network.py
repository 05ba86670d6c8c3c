"""Stand-alone networks: an architecture's parts, built in execution order from the same modules the supernet uses."""

from __future__ import annotations

import torch
from torch import nn

from hnas.spec.arch import Architecture


class Network(nn.Module):
    """The modules of `arch.parts()`, run one after another."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch_string = str(arch)
        parts = arch.parts()
        self.parts = nn.ModuleList(p.build() for p in parts)
        self._searchable = [i for i, p in enumerate(parts) if p.op is not None]

    @property
    def blocks(self) -> list[nn.Module]:
        """The modules of the searchable layers, in order."""
        return [self.parts[i] for i in self._searchable]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.parts:
            x = module(x)
        return x


def build_network(arch: Architecture) -> Network:
    """The stand-alone network of `arch` (freshly initialised weights)."""
    return Network(arch)
