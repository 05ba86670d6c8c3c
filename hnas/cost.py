"""MACs (the paper's "FLOPs") and parameter counts, computed from the spec and counted on modules."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hnas.arch import Architecture
from hnas.ops import FixedPart, LayerShape, OpSpec


@dataclass(frozen=True)
class Cost:
    """Multiply-accumulates and trainable parameters."""

    macs: int = 0
    params: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.macs + other.macs, self.params + other.params)


def _conv(in_ch: int, out_ch: int, kernel: int, out_size: int, groups: int = 1, bn: bool = True) -> Cost:
    weights = out_ch * (in_ch // groups) * kernel * kernel
    return Cost(out_size * out_size * weights, weights + (2 * out_ch if bn else 0))


def op_cost(op: OpSpec, shape: LayerShape) -> Cost:
    """Cost of one op at one shape (BatchNorm counted as 2 parameters per channel, no MACs)."""
    if op.is_identity:
        return Cost()
    mid = shape.in_ch * op.expand
    cost = Cost()
    if op.expand != 1:
        cost += _conv(shape.in_ch, mid, 1, shape.in_size)
    cost += _conv(mid, mid, op.kernel, shape.out_size, groups=mid)
    return cost + _conv(mid, shape.out_ch, 1, shape.out_size)


def fixed_cost(part: FixedPart) -> Cost:
    """Cost of the stem, the final 1x1 conv or pool + fc."""
    s = part.shape
    if part.kind == "PoolFC":
        return Cost(s.in_ch * s.out_ch, s.in_ch * s.out_ch + s.out_ch)
    return _conv(s.in_ch, s.out_ch, part.kernel, s.out_size)


def arch_cost(arch: Architecture) -> Cost:
    """Total cost of an architecture at the space's deployment resolution."""
    total = Cost()
    for part in arch.space.skeleton.fixed_parts:
        total += fixed_cost(part)
    for layer, op in zip(arch.space.layers, arch.ops):
        total += op_cost(op, layer.shape)
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
