"""Operation vocabulary and layer shapes: the single definition of an op, its shape and its LUT key.

An op (`IBConv_K5_E6`, `Identity`) is parsed here, built into a torch module here (`build_op`), and
named in latency tables here (`op_key`). The supernet, the stand-alone builder and the latency toolkit
all go through these functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hnas.errors import HnasError

IDENTITY = "Identity"
_LONG = re.compile(r"^IBConv_K(\d+)_E(\d+)$")
_SHORT = re.compile(r"^K(\d+)E(\d+)$", re.IGNORECASE)


@dataclass(frozen=True, order=True)
class OpSpec:
    """One candidate operation: an inverted bottleneck (kernel, expansion) or the identity."""

    kernel: int = 0
    expand: int = 0

    @property
    def is_identity(self) -> bool:
        """True for the identity (skip) operation."""
        return self.kernel == 0

    @property
    def name(self) -> str:
        """Paper name, e.g. `IBConv_K5_E6` or `Identity`."""
        return IDENTITY if self.is_identity else f"IBConv_K{self.kernel}_E{self.expand}"

    @property
    def short(self) -> str:
        """Compact token used in architecture strings, e.g. `K5E6` or `ID`."""
        return "ID" if self.is_identity else f"K{self.kernel}E{self.expand}"

    def with_expand(self, expand: int) -> OpSpec:
        """The same kernel with another expansion (identity stays identity)."""
        return self if self.is_identity else OpSpec(self.kernel, expand)

    def __str__(self) -> str:
        return self.name


IDENTITY_OP = OpSpec()


def parse_op(text: str) -> OpSpec:
    """Parse `IBConv_K5_E6`, `K5E6`, `Identity` or `ID` into an OpSpec."""
    token = text.strip()
    if token.lower() in ("identity", "id"):
        return IDENTITY_OP
    match = _LONG.match(token) or _SHORT.match(token)
    if not match:
        raise HnasError(f"unknown operation {text!r}: write IBConv_K<kernel>_E<expansion> (or K<k>E<e>) or Identity")
    kernel, expand = int(match.group(1)), int(match.group(2))
    if kernel < 1 or kernel % 2 == 0:
        raise HnasError(f"operation {text!r}: the kernel size must be odd and positive")
    if expand < 1:
        raise HnasError(f"operation {text!r}: the expansion must be at least 1")
    return OpSpec(kernel, expand)


@dataclass(frozen=True)
class LayerShape:
    """Input size and channels, output channels and stride of one layer (square feature maps)."""

    in_size: int
    in_ch: int
    out_ch: int
    stride: int

    @property
    def out_size(self) -> int:
        """Output spatial size with 'same' padding: ceil(in / stride)."""
        return -(-self.in_size // self.stride)

    @property
    def allows_identity(self) -> bool:
        """Identity is only shape-preserving when stride is 1 and channels do not change."""
        return self.stride == 1 and self.in_ch == self.out_ch

    def text(self) -> str:
        """`28x28x40->14x14x80`."""
        return f"{self.in_size}x{self.in_size}x{self.in_ch}->{self.out_size}x{self.out_size}x{self.out_ch}"


def op_key(op: OpSpec, shape: LayerShape) -> str:
    """Canonical LUT key of an op at a shape, e.g. `IBConv_K5_E6:28x28x40->28x28x40:s1`."""
    return f"{op.name}:{shape.text()}:s{shape.stride}"


def build_op(op: OpSpec, shape: LayerShape):
    """The torch module of `op` at `shape`; the one module class used by supernet, networks and export."""
    from hnas import modules

    if op.is_identity:
        if not shape.allows_identity:
            raise HnasError(f"Identity cannot map {shape.text()} with stride {shape.stride}")
        return modules.Identity()
    return modules.IBConv(shape.in_ch, shape.out_ch, op.kernel, op.expand, shape.stride)


FIXED_KINDS = ("Stem", "Conv1x1", "PoolFC")


@dataclass(frozen=True)
class FixedPart:
    """A part of the network that is not searched: the stem, the final 1x1 conv, or pool + fc."""

    kind: str
    shape: LayerShape
    kernel: int = 1

    @property
    def key(self) -> str:
        """LUT key, e.g. `Stem_K3:224x224x3->112x112x32:s2` or `PoolFC:7x7x1280->1000`."""
        s = self.shape
        if self.kind == "PoolFC":
            return f"PoolFC:{s.in_size}x{s.in_size}x{s.in_ch}->{s.out_ch}"
        name = f"Stem_K{self.kernel}" if self.kind == "Stem" else self.kind
        return f"{name}:{s.text()}:s{s.stride}"

    def build(self):
        """The torch module of this part."""
        from hnas import modules

        s = self.shape
        if self.kind == "Stem":
            return modules.ConvBNReLU6(s.in_ch, s.out_ch, self.kernel, s.stride)
        if self.kind == "Conv1x1":
            return modules.ConvBNReLU6(s.in_ch, s.out_ch, 1, 1)
        if self.kind == "PoolFC":
            return modules.PoolFC(s.in_ch, s.out_ch)
        raise HnasError(f"unknown fixed part {self.kind!r}; known: {', '.join(FIXED_KINDS)}")
