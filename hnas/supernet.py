"""Single-path one-shot supernet over a layer-wise space (SPOS), prunable with weight inheritance.

Each searchable layer holds one module per candidate op, built by `hnas.spec.parts.Part.build` — the very classes the
stand-alone network and the latency exporter use. `forward(x, arch)` runs one path. Pruning to a smaller
layer-wise space drops the removed candidates' modules and keeps every other weight.

Chain layers (a stage's first layer, where no residual path carries the signal past the op) are where SPOS
stalls on short budgets: their candidates start as unrelated functions and drift apart faster than the layers
after them can follow (on digits at 16 px, 12 epochs: train accuracy stays at chance). `train` can therefore
warm up with each chain layer held at its reference op and then `align_candidates`, which copies the trained
reference into the other candidates function-preservingly before uniform sampling starts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hnas.core.errors import HnasError
from hnas.spec.arch import Architecture
from hnas.spec.modules import IBConv
from hnas.spec.network import Network
from hnas.spec.ops import OpSpec
from hnas.spec.space import SearchSpace


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

    def __init__(self, slot):
        super().__init__()
        self.ops = nn.ModuleDict({part.op.name: part.build() for part in slot.choices()})

    def forward(self, x: torch.Tensor, op: OpSpec) -> torch.Tensor:
        return self.ops[op.name](x)


def _copy_bn(dst: nn.BatchNorm2d, src: nn.BatchNorm2d, n: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name)[:n] = getattr(src, name)


class Supernet(nn.Module):
    """One module per slot of the space, in order: the fixed parts, and a ChoiceLayer per searchable layer."""

    def __init__(self, space: SearchSpace):
        super().__init__()
        self.space = space
        self.parts = nn.ModuleList(ChoiceLayer(s) if s.searchable else s.part().build() for s in space.slots)

    @property
    def layers(self) -> list[ChoiceLayer]:
        """The ChoiceLayers, in order (index j is searchable layer j + 1)."""
        return [m for m in self.parts if isinstance(m, ChoiceLayer)]

    def _ops(self, arch: Architecture | Sequence[OpSpec]) -> Sequence[OpSpec]:
        ops = arch.ops if isinstance(arch, Architecture) else arch
        if len(ops) != len(self.space.layers):
            raise HnasError(f"path has {len(ops)} ops for {len(self.space.layers)} layers")
        return ops

    def path_modules(self, arch: Architecture | Sequence[OpSpec]) -> list[nn.Module]:
        """The modules one path runs, in order: the fixed parts and the chosen op of every layer."""
        ops = iter(self._ops(arch))
        return [m.ops[next(ops).name] if isinstance(m, ChoiceLayer) else m for m in self.parts]

    def forward(self, x: torch.Tensor, arch: Architecture | Sequence[OpSpec]) -> torch.Tensor:
        for module in self.path_modules(arch):
            x = module(x)
        return x

    def chain_layers(self) -> dict[int, int]:
        """Layers the whole signal passes through (no residual path) with a choice of several IBConvs, each
        mapped to its reference candidate: the smallest (expansion, then kernel). {layer index: candidate index}"""
        out = {}
        for j, (L, layer) in enumerate(zip(self.space.layers, self.layers)):
            convs = [(i, op) for i, op in enumerate(L.candidates) if isinstance(layer.ops[op.name], IBConv)]
            if len(convs) > 1 and not any(layer.ops[op.name].residual for _, op in convs):
                out[j] = min(convs, key=lambda t: (t[1].expand, t[1].kernel))[0]
        return out

    @torch.no_grad()
    def align_candidates(self, layers: dict[int, int]) -> None:
        """Make every IBConv candidate of each layer compute exactly what its reference candidate computes:
        the reference's depthwise kernel zero-padded to the larger kernel, its expanded channels first, and the
        extra channels' projection zeroed (their expand and depthwise weights stay random, so they still learn).
        Only the initial weights change; the modules are the ones `Part.build` made."""
        for j, ref_index in layers.items():
            L, layer = self.space.layers[j], self.layers[j]
            ref = layer.ops[L.candidates[ref_index].name]
            for op in L.candidates:
                m = layer.ops[op.name]
                if m is ref or not isinstance(m, IBConv) or (m.expand is None) != (ref.expand is None):
                    continue
                mid, k = ref.depthwise[0].weight.shape[0], ref.depthwise[0].weight.shape[-1]
                if m.expand is not None:
                    m.expand[0].weight[:mid] = ref.expand[0].weight
                    _copy_bn(m.expand[1], ref.expand[1], mid)
                w = m.depthwise[0].weight
                o = (w.shape[-1] - k) // 2
                w[:mid] = 0
                w[:mid, :, o : o + k, o : o + k] = ref.depthwise[0].weight
                _copy_bn(m.depthwise[1], ref.depthwise[1], mid)
                m.project[0].weight[:, :mid] = ref.project[0].weight
                m.project[0].weight[:, mid:] = 0
                _copy_bn(m.project[1], ref.project[1], ref.project[1].num_features)

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
        for dst, src in zip(net.parts, self.path_modules(arch), strict=True):
            dst.load_state_dict(src.state_dict())
        return net.to(next(self.parameters()).device)
