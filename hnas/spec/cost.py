"""MACs (the paper's "FLOPs") and parameter counts, computed from the spec, part by part (no torch: the spec's data
loads without it; tests count the same on the built modules)."""

from __future__ import annotations

from dataclasses import dataclass


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
