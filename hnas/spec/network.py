"""Stand-alone networks: an architecture's parts, built in execution order from the same modules the supernet uses."""

from __future__ import annotations

import torch
from torch import nn

from hnas.spec.arch import Architecture
from hnas.spec.cost import Cost


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


def count_module(module: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """Count MACs of Conv2d/Linear layers with forward hooks and parameters with numel: the torch-side
    cross-check of `hnas.spec.cost.arch_cost` (a test holds them equal; `hnas export` records both)."""
    macs = 0

    def hook(mod, _inp, out):
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            per_out = (mod.in_channels // mod.groups) * mod.kernel_size[0] * mod.kernel_size[1]
            macs += out[0].numel() * per_out
        elif isinstance(mod, nn.Linear):
            macs += mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        was_training = module.training
        module.eval()
        with torch.no_grad():
            module(torch.zeros(1, *input_shape))
        module.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return Cost(macs, sum(p.numel() for p in module.parameters()))
