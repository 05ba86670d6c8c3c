"""The numeric precisions a part is deployed at, as one type (no heavy imports: the settings, the command line and
the latency tables use it).

`Precision` is a string enum, so a precision compares equal to its name and is written to JSON as it: `"int8"`.
A table's `settings` hold `"precision": "int8"` for an int8 table; a float32 table has no such key (every table
written before int8 existed, so their settings and `settings_id` are unchanged): `Precision.of_settings` and
`Precision.settings` read and write that block.
"""

from __future__ import annotations

from enum import StrEnum

from hnas.core.errors import HnasError


class Precision(StrEnum):
    """float32 (the default) or int8 (full-integer quantized)."""

    FLOAT32 = "float32"
    INT8 = "int8"

    @classmethod
    def parse(cls, precision: str) -> Precision:
        """`precision` when it is one of `PRECISIONS`; a one-line error otherwise."""
        if precision not in PRECISIONS:
            raise HnasError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        return cls(precision)

    @classmethod
    def of_settings(cls, settings: dict) -> Precision:
        """The precision a table's settings block records (absent: float32)."""
        return cls.parse(settings.get("precision", FLOAT32))

    def settings(self) -> dict:
        """What a table of this precision adds to its settings block: nothing for float32."""
        return {} if self == FLOAT32 else {"precision": self.value}

    @property
    def file_suffix(self) -> str:
        """What a default table file name adds: `-int8`, nothing for float32."""
        return "" if self == FLOAT32 else f"-{self.value}"


FLOAT32 = Precision.FLOAT32
INT8 = Precision.INT8
PRECISIONS = tuple(p.value for p in Precision)  # the first is the default
