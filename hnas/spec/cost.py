"""MACs (the paper's "FLOPs") and parameter counts: computed from the spec, part by part, and counted on modules."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Cost:
    """Multiply-accumulates and trainable parameters."""

    macs: int = 0
    params: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


def conv_cost(in_ch: int, out_ch: int, kernel: int, out_size: int, groups: int = 1, bn: bool = True) -> Cost:
    """A KxK convolution (and its BatchNorm) producing an `out_size` x `out_size` map."""
    weights = out_ch * (in_ch // groups) * kernel * kernel
    return Cost(out_size * out_size * weights, weights + (2 * out_ch if bn else 0))


def arch_cost(arch) -> Cost:
    """Total cost of an architecture at the space's deployment resolution: the sum over its parts."""
    total = Cost()
    for part in arch.parts():
        total += part.cost()
    return total


def count_module(module: nn.Module, input_shape: tuple[int, ...]) -> Cost:
    """Count MACs of Conv2d/Linear layers with forward hooks and parameters with numel (cross-check)."""
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
