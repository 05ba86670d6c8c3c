"""Single-path one-shot supernet over a layer-wise space (SPOS), prunable with weight inheritance.

Each searchable layer holds one module per candidate op, built by `hnas.ops.build_op` — the very classes the
stand-alone network and the latency exporter use. `forward(x, arch)` runs one path. Pruning to a smaller
layer-wise space drops the removed candidates' modules and keeps every other weight.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hnas.arch import Architecture
from hnas.errors import HnasError
from hnas.network import Network
from hnas.ops import OpSpec, build_op
from hnas.space import SearchSpace


def _make_divisible(value: float, divisor: int = 4) -> int:
    return max(divisor, int(value / divisor + 0.5) * divisor)


def proxy_space(
    space: SearchSpace, resolution: int | None = None, width: float = 1.0, num_classes: int | None = None
) -> SearchSpace:
    """The space the supernet trains at: other input size, widths scaled by `width`, other class count.

    Candidates stay the same, so an architecture of `space` is an architecture of the proxy and back;
    LUT shapes always come from the deployment `space`, never from the proxy.
    """
    from dataclasses import replace

    sk = space.skeleton
    changes = {}
    if resolution is not None:
        changes["resolution"] = resolution
    if num_classes is not None:
        changes["num_classes"] = num_classes
    if width != 1.0:
        changes["stem_channels"] = _make_divisible(sk.stem_channels * width)
        changes["head_channels"] = _make_divisible(sk.head_channels * width)
        changes["stages"] = tuple(
            replace(st, out_channels=_make_divisible(st.out_channels * width)) for st in sk.stages
        )
    return space.with_skeleton(**changes) if changes else space


class ChoiceLayer(nn.Module):
    """The candidate modules of one searchable layer, keyed by op name."""

    def __init__(self, layer):
        super().__init__()
        self.ops = nn.ModuleDict({op.name: build_op(op, layer.shape) for op in layer.candidates})

    def forward(self, x: torch.Tensor, op: OpSpec) -> torch.Tensor:
        return self.ops[op.name](x)


class Supernet(nn.Module):
    """Stem, one ChoiceLayer per searchable layer, final 1x1 conv, pool + fc."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        sk = space.skeleton
        self.stem = sk.stem.build()
        self.layers = nn.ModuleList(ChoiceLayer(layer) for layer in space.layers)
        self.final_conv = sk.final_conv.build()
        self.pool_fc = sk.pool_fc.build()

    def _ops(self, arch: Architecture | Sequence[OpSpec]) -> Sequence[OpSpec]:
        ops = arch.ops if isinstance(arch, Architecture) else arch
        if len(ops) != len(self.layers):
            raise HnasError(f"path has {len(ops)} ops for {len(self.layers)} layers")
        return ops

    def forward(self, x: torch.Tensor, arch: Architecture | Sequence[OpSpec]) -> torch.Tensor:
        x = self.stem(x)
        for layer, op in zip(self.layers, self._ops(arch)):
            x = layer(x, op)
        return self.pool_fc(self.final_conv(x))

    def path_modules(self, arch: Architecture | Sequence[OpSpec]) -> list[nn.Module]:
        """The modules one path runs: stem, the chosen op of every layer, final conv, pool + fc."""
        chosen = [layer.ops[op.name] for layer, op in zip(self.layers, self._ops(arch))]
        return [self.stem, *chosen, self.final_conv, self.pool_fc]

    def prune(self, space: SearchSpace) -> None:
        """Shrink to `space` (same skeleton, candidates a subset per layer), keeping the kept ops' weights."""
        if space.skeleton != self.space.skeleton:
            raise HnasError("pruning keeps the skeleton: the new space must have the supernet's skeleton")
        for j, (layer, cands) in enumerate(zip(self.layers, space.candidates)):
            have = set(layer.ops.keys())
            keep = {op.name for op in cands}
            if not keep <= have:
                raise HnasError(f"layer {j + 1}: {sorted(keep - have)} are not in the supernet; pruning only removes")
            for name in have - keep:
                del layer.ops[name]
        self.space = space

    def extract(self, arch: Architecture) -> Network:
        """A stand-alone network of `arch` with the supernet's weights copied (same outputs as the path)."""
        net = Network(Architecture(self.space, tuple(self._ops(arch))))
        net.stem.load_state_dict(self.stem.state_dict())
        net.final_conv.load_state_dict(self.final_conv.state_dict())
        net.pool_fc.load_state_dict(self.pool_fc.state_dict())
        for block, layer, op in zip(net.blocks, self.layers, arch.ops):
            block.load_state_dict(layer.ops[op.name].state_dict())
        return net.to(next(self.parameters()).device)
