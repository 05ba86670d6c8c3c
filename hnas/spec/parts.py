"""A network's parts: the one registry of part kinds, and the parts themselves.

Every network of a space runs its slots in order (`Skeleton.slots`): the stem, one block per searchable layer,
the final 1x1 convolution, and global pooling + the classifier. A slot with an op chosen (or a fixed slot) is
a `Part`: its kind, its shape, its op. What a kind means lives here and nowhere else:

    kind      LUT key                                  module              searchable
    Stem      Stem_K3:224x224x3->112x112x32:s2         ConvBNReLU6 KxK     no
    Block     IBConv_K5_E6:28x28x40->28x28x40:s1       IBConv / Identity   yes
    Conv1x1   Conv1x1:7x7x320->7x7x1280:s1             ConvBNReLU6 1x1     no
    PoolFC    PoolFC:7x7x1280->1000                    PoolFC              no

The network, the supernet, the LUT items, the predictor's breakdown, the cost model and the published-table
mapping all iterate parts; none of them knows the order or the kinds.

A part also has the numeric precision it is deployed at (`PRECISIONS`): float32 (the default; its key is the
kind's key above, as in every table written before int8 existed) or int8 (full-integer quantized), whose key is
the float32 key with `:int8` appended (`IBConv_K5_E6:28x28x40->28x28x40:s1:int8`). The module, its cost and its
place in a network do not depend on the precision; only its LUT key and its export do.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from hnas.core.errors import HnasError
from hnas.core.precision import FLOAT32, Precision
from hnas.spec.cost import Cost, conv_cost
from hnas.spec.ops import LayerShape, OpSpec, parse_op


class Kind:
    """What one kind of part is: how its LUT key reads, which module it builds, what it costs."""

    name: str = ""
    label: str = ""  # how a fixed part is named in tables
    searchable: bool = False

    def key(self, part: Part) -> str | None:
        """The canonical LUT key (None: the part runs no kernel and needs no entry)."""
        raise NotImplementedError

    def build(self, part: Part):
        """The torch module of the part."""
        raise NotImplementedError

    def cost(self, part: Part) -> Cost:
        """MACs and parameters (BatchNorm counted as 2 parameters per channel, no MACs)."""
        raise NotImplementedError


class _Stem(Kind):
    name, label = "Stem", "stem"

    def key(self, part: Part) -> str:
        return f"Stem_K{part.kernel}:{part.shape.text()}:s{part.shape.stride}"

    def build(self, part: Part):
        from hnas.spec.modules import ConvBNReLU6

        s = part.shape
        return ConvBNReLU6(s.in_ch, s.out_ch, part.kernel, s.stride)

    def cost(self, part: Part) -> Cost:
        s = part.shape
        return conv_cost(s.in_ch, s.out_ch, part.kernel, s.out_size)


class _Block(Kind):
    name = "Block"
    searchable = True

    def key(self, part: Part) -> str | None:
        if part.op.is_identity:
            return None
        return f"{part.op.name}:{part.shape.text()}:s{part.shape.stride}"

    def build(self, part: Part):
        from hnas.spec import modules

        op, s = part.op, part.shape
        if op.is_identity:
            return modules.Identity()
        return modules.IBConv(s.in_ch, s.out_ch, op.kernel, op.expand, s.stride, residual=s.keeps_shape)

    def cost(self, part: Part) -> Cost:
        op, s = part.op, part.shape
        if op.is_identity:
            return Cost()
        mid = s.in_ch * op.expand
        cost = conv_cost(s.in_ch, mid, 1, s.in_size) if op.expand != 1 else Cost()
        cost += conv_cost(mid, mid, op.kernel, s.out_size, groups=mid)
        return cost + conv_cost(mid, s.out_ch, 1, s.out_size)


class _Conv1x1(Kind):
    name, label = "Conv1x1", "conv1x1"

    def key(self, part: Part) -> str:
        return f"Conv1x1:{part.shape.text()}:s{part.shape.stride}"

    def build(self, part: Part):
        from hnas.spec.modules import ConvBNReLU6

        return ConvBNReLU6(part.shape.in_ch, part.shape.out_ch, 1, 1)

    def cost(self, part: Part) -> Cost:
        s = part.shape
        return conv_cost(s.in_ch, s.out_ch, 1, s.out_size)


class _PoolFC(Kind):
    name, label = "PoolFC", "pool+fc"

    def key(self, part: Part) -> str:
        s = part.shape
        return f"PoolFC:{s.in_size}x{s.in_size}x{s.in_ch}->{s.out_ch}"

    def build(self, part: Part):
        from hnas.spec.modules import PoolFC

        return PoolFC(part.shape.in_ch, part.shape.out_ch)

    def cost(self, part: Part) -> Cost:
        s = part.shape
        return Cost(s.in_ch * s.out_ch, s.in_ch * s.out_ch + s.out_ch)


KINDS: dict[str, Kind] = {k.name: k for k in (_Stem(), _Block(), _Conv1x1(), _PoolFC())}


def kind(name: str) -> Kind:
    """The registered kind called `name`."""
    if name not in KINDS:
        raise HnasError(f"unknown part kind {name!r}; known: {', '.join(KINDS)}")
    return KINDS[name]


@dataclass(frozen=True)
class Part:
    """One part of one network: a kind at a shape (a block also has its op; a stem its kernel), deployed at a
    numeric precision. `label` names it in tables (`stem`, `layer 3 K5E6`) and takes no part in equality."""

    kind: str
    shape: LayerShape
    op: OpSpec | None = None
    kernel: int = 1
    label: str = field(default="", compare=False)
    precision: str = FLOAT32

    def __post_init__(self):
        k = kind(self.kind)
        if k.searchable != (self.op is not None):
            raise HnasError(f"a {self.kind} part {'needs' if k.searchable else 'takes no'} op")
        Precision.parse(self.precision)

    @property
    def key(self) -> str | None:
        """The canonical LUT key (None for Identity, which runs no kernel and costs 0 ms): the kind's key, with
        `:<precision>` appended for every precision but float32."""
        base = KINDS[self.kind].key(self)
        if base is None or self.precision == FLOAT32:
            return base
        return f"{base}:{self.precision}"

    def at(self, precision: str) -> Part:
        """The same part deployed at `precision`."""
        return self if precision == self.precision else replace(self, precision=Precision.parse(precision))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the module's input."""
        return (self.shape.in_ch, self.shape.in_size, self.shape.in_size)

    def build(self):
        """The torch module of this part: the one class the supernet trains and the exporter converts."""
        return KINDS[self.kind].build(self)

    def cost(self) -> Cost:
        """MACs and parameters at this part's shape."""
        return KINDS[self.kind].cost(self)

    def to_spec(self) -> dict:
        """Plain-data spec stored beside a LUT entry, from which the part is rebuilt (`from_spec`)."""
        s = self.shape
        shape = {"in_size": s.in_size, "in_ch": s.in_ch, "out_ch": s.out_ch, "stride": s.stride}
        if self.op is not None:
            spec = {"op": self.op.name, "shape": shape}
        else:
            spec = {"part": self.kind, "kernel": self.kernel, "shape": shape}
        return spec if self.precision == FLOAT32 else {**spec, "precision": self.precision}

    @classmethod
    def from_spec(cls, spec: dict) -> Part:
        """Inverse of `to_spec`."""
        try:
            shape = LayerShape(**spec["shape"])
            if "op" in spec:
                part = block(parse_op(spec["op"]), shape)
            else:
                part = cls(spec["part"], shape, kernel=spec.get("kernel", 1))
            return part.at(spec.get("precision", FLOAT32))
        except (KeyError, TypeError) as exc:
            raise HnasError(
                f"part spec {spec!r} is malformed ({exc}); rebuild the entry with `hnas lut build`"
            ) from None


def block(op: OpSpec, shape: LayerShape, label: str = "") -> Part:
    """The searchable part: `op` at `shape`."""
    return Part("Block", shape, op, label=label)


@dataclass(frozen=True)
class Slot:
    """A place in every network of a space, in execution order: a fixed part, or a searchable layer with its
    candidate ops (`index`, `stage` and `position` count from 1 for searchable layers; 0 for fixed parts)."""

    kind: str
    shape: LayerShape
    kernel: int = 1
    index: int = 0
    stage: int = 0
    position: int = 0
    candidates: tuple[OpSpec, ...] = ()

    @property
    def searchable(self) -> bool:
        """True for the layers an architecture chooses an op in."""
        return KINDS[self.kind].searchable

    @property
    def label(self) -> str:
        """Human name used in messages, e.g. `layer 7 (stage 3, block 2)` or `stem`."""
        if self.searchable:
            return f"layer {self.index} (stage {self.stage}, block {self.position})"
        return KINDS[self.kind].label

    def part(self, op: OpSpec | None = None) -> Part:
        """This slot's part (with `op` chosen, for a searchable layer)."""
        if self.searchable:
            if op is None:
                raise HnasError(f"{self.label}: choose an op")
            return block(op, self.shape, label=f"layer {self.index} {op.short}")
        return Part(self.kind, self.shape, kernel=self.kernel, label=self.label)

    def key(self, op: OpSpec | None = None) -> str | None:
        """LUT key of this slot's part (with `op` for a searchable layer)."""
        return self.part(op).key

    def choices(self) -> list[Part]:
        """Every part this slot can hold: one per candidate, or the fixed part."""
        return [self.part(op) for op in self.candidates] if self.searchable else [self.part()]
