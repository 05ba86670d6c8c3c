"""Operation vocabulary and layer shapes: the single definition of an op and of the shape it runs at.

An op (`IBConv_K5_E6`, `Identity`) is parsed here; `hnas.spec.parts` turns an op at a shape into a part of a
network (its LUT key, its torch module, its cost).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hnas.core.errors import HnasError

IDENTITY = "Identity"

# Sizes hnas accepts wherever a shape or an op enters (space files, LUT specs, `hnas profile`): far beyond any mobile
# network, and small enough that nothing is asked to allocate terabytes. Each is named in the message refusing it.
MAX_SIZE = 4096  # input resolution and feature-map side, in pixels
MAX_CHANNELS = 10_000  # channels of a feature map
MAX_CLASSES = 100_000  # outputs of the classifier
MAX_KERNEL = 31  # convolution kernel size
MAX_EXPAND = 32  # expansion ratio of an inverted bottleneck
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
    if kernel < 1 or kernel % 2 == 0 or kernel > MAX_KERNEL:
        raise HnasError(f"operation {text!r}: the kernel size must be odd, from 1 to {MAX_KERNEL}")
    if not 1 <= expand <= MAX_EXPAND:
        raise HnasError(f"operation {text!r}: the expansion must be from 1 to {MAX_EXPAND}")
    return OpSpec(kernel, expand)


@dataclass(frozen=True)
class LayerShape:
    """Input size and channels, output channels and stride of one layer (square feature maps)."""

    in_size: int
    in_ch: int
    out_ch: int
    stride: int

    def __post_init__(self):
        for name in ("in_size", "in_ch", "out_ch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HnasError(f"layer shape: {name} must be a positive integer, got {value!r}")
        if self.stride not in (1, 2):
            raise HnasError(f"layer shape: stride must be 1 or 2, got {self.stride!r}")

    @property
    def out_size(self) -> int:
        """Output spatial size with 'same' padding: ceil(in / stride)."""
        return -(-self.in_size // self.stride)

    @property
    def keeps_shape(self) -> bool:
        """Stride 1 and the same channels in and out: where Identity may stand and an IBConv adds its input."""
        return self.stride == 1 and self.in_ch == self.out_ch

    def text(self) -> str:
        """`28x28x40->14x14x80`."""
        return f"{self.in_size}x{self.in_size}x{self.in_ch}->{self.out_size}x{self.out_size}x{self.out_ch}"
