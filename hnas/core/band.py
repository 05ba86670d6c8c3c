"""A latency band in ms: what the search keeps, the sampler draws in and the reports quote."""

from __future__ import annotations

from dataclasses import dataclass

from hnas.core.errors import HnasError
from hnas.core.schema import Num

_AT_LEAST_0 = Num(at_least=0)


@dataclass(frozen=True)
class Band:
    """A latency band in ms, either side open (None); the one definition the search, the sampler and the
    reports share. `Band.parse("7:9")`, `str(band)` -> `[7.00, 9.00]`."""

    lo: float | None = None
    hi: float | None = None

    def __post_init__(self):
        for side in (self.lo, self.hi):
            if side is not None and _AT_LEAST_0.problem(side, ""):
                raise HnasError(f"latency band {self}: bounds must be finite numbers of at least 0 ms")
        if self.lo is not None and self.hi is not None and self.lo > self.hi:
            raise HnasError(f"latency band {self} is inverted (MIN above MAX): write MIN:MAX, e.g. 7:9")

    @classmethod
    def read(cls, value: Band | dict | None) -> Band | None:
        """A band as a setting holds it: itself, or read from its JSON form (a config file's `{"lo": .., "hi": ..}`)."""
        return cls(**value) if isinstance(value, dict) else value

    @classmethod
    def parse(cls, text: str | None, what: str = "--lat") -> Band:
        """`60:70` -> Band(60, 70); either side may be empty; None -> open band."""
        if text is None:
            return cls()
        lo, sep, hi = str(text).partition(":")
        try:
            if not sep:
                raise ValueError
            sides = (float(lo) if lo.strip() else None, float(hi) if hi.strip() else None)
        except ValueError:
            raise HnasError(f"{what} {text!r}: write MIN:MAX in ms, e.g. 60:70") from None
        return cls(*sides)

    @property
    def is_open(self) -> bool:
        """Neither side set."""
        return self.lo is None and self.hi is None

    def scaled(self, ref_ms: float) -> Band:
        """This band as factors of a reference latency, in ms."""
        return Band(None if self.lo is None else self.lo * ref_ms, None if self.hi is None else self.hi * ref_ms)

    def contains(self, lat):
        """Elementwise: inside the band (numpy arrays or floats)."""
        import numpy as np

        lat = np.asarray(lat)
        ok = np.ones(lat.shape, dtype=bool)
        if self.lo is not None:
            ok &= lat >= self.lo
        if self.hi is not None:
            ok &= lat <= self.hi
        return ok

    def __str__(self) -> str:
        return "[" + ", ".join("-" if b is None else f"{b:.2f}" for b in (self.lo, self.hi)) + "]"
