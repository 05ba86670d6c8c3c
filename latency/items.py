"""What a latency table holds: one item per (op, layer shape) of a space, plus the fixed parts.

An item carries its spec (op name or fixed part, and shape) so that a table can rebuild, re-export and
re-measure any entry without knowing which space it came from; its key is always recomputed from that spec
through `hnas.ops`, never stored as free text.
"""

from __future__ import annotations

from dataclasses import dataclass

from hnas.errors import HnasError
from hnas.ops import FixedPart, LayerShape, OpSpec, build_op, op_key, parse_op
from hnas.space import SearchSpace


@dataclass(frozen=True)
class LutItem:
    """An op at a shape (`op` set) or a fixed part (`part` set)."""

    op: OpSpec | None = None
    shape: LayerShape | None = None
    part: FixedPart | None = None

    @property
    def key(self) -> str:
        """The canonical LUT key."""
        return self.part.key if self.part is not None else op_key(self.op, self.shape)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the module's input."""
        s = self.part.shape if self.part is not None else self.shape
        return (s.in_ch, s.in_size, s.in_size)

    def build(self):
        """The torch module (deterministic weights: seed 0) of this item."""
        import torch

        torch.manual_seed(0)
        return self.part.build() if self.part is not None else build_op(self.op, self.shape)

    def to_spec(self) -> dict:
        """Plain-data spec stored beside the entry."""
        s = self.part.shape if self.part is not None else self.shape
        shape = {"in_size": s.in_size, "in_ch": s.in_ch, "out_ch": s.out_ch, "stride": s.stride}
        if self.part is not None:
            return {"part": self.part.kind, "kernel": self.part.kernel, "shape": shape}
        return {"op": self.op.name, "shape": shape}

    @classmethod
    def from_spec(cls, spec: dict) -> LutItem:
        """Inverse of `to_spec`."""
        try:
            shape = LayerShape(**spec["shape"])
            if "part" in spec:
                return cls(part=FixedPart(spec["part"], shape, spec.get("kernel", 1)))
            return cls(op=parse_op(spec["op"]), shape=shape)
        except (KeyError, TypeError) as exc:
            raise HnasError(
                f"LUT entry spec {spec!r} is malformed ({exc}); rebuild the entry with `hnas lut build`"
            ) from None


def items_for_space(space: SearchSpace) -> list[LutItem]:
    """Every entry a space needs: fixed parts, then each distinct (op, shape); Identity needs none (0 ms)."""
    items = [LutItem(part=p) for p in space.skeleton.fixed_parts]
    seen = set()
    for layer in space.layers:
        for op in layer.candidates:
            if op.is_identity or (op, layer.shape) in seen:
                continue
            seen.add((op, layer.shape))
            items.append(LutItem(op=op, shape=layer.shape))
    return items


def network_items(arch) -> list[tuple[str, LutItem | None]]:
    """The parts of `arch`'s stand-alone network in execution order, named, each with its LUT item (None for
    Identity, which runs no kernel): stem, one per searchable layer, final 1x1 conv, pool + fc."""
    stem, conv, head = (LutItem(part=p) for p in arch.space.skeleton.fixed_parts)
    layers = [
        (f"layer {L.index} {op.short}", None if op.is_identity else LutItem(op=op, shape=L.shape))
        for L, op in zip(arch.space.layers, arch.ops, strict=True)
    ]
    return [("stem", stem), *layers, ("conv1x1", conv), ("pool+fc", head)]
