"""The numeric precisions a part is deployed at (no heavy imports: the settings and the command line use it)."""

from __future__ import annotations

from hnas.errors import HnasError

FLOAT32 = "float32"
INT8 = "int8"
PRECISIONS = (FLOAT32, INT8)  # the first is the default


def check_precision(precision: str) -> str:
    """`precision` when it is one of `PRECISIONS`; a one-line error otherwise."""
    if precision not in PRECISIONS:
        raise HnasError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    return precision
