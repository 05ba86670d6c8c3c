"""File schemas: every file hnas reads (space, architecture, LUT, run config, results) is checked against its
schema when it is loaded, so a bad file is one line naming the file, the field and what is allowed, never a
traceback later or a silently wrong number.

A schema is built from a few specs: `Int`, `Num`, `Str`, `Bool`, `Opt(spec)`, `ListOf(spec)`, `MapOf(spec)`,
`Obj({key: spec}, optional=...)`, `Any`. `check(data, spec, where)` raises `HnasError` at the first violation,
e.g. `LUT lut/x.json: entries['Stem_K3:...'].median_ms: expected a finite number above 0, got nan`.

Files are read by `hnas.core.io` (`read_json` checks a file against its schema as it reads it).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from hnas.core.errors import HnasError


class Spec:
    """What a value must be; `problem(value)` says why it is not (None when it is)."""

    what: str = "a value"

    def problem(self, value, at: str) -> tuple[str, str] | None:
        """(place, complaint) of the first violation in `value` (found at `at`), or None."""
        raise NotImplementedError


SHOW_CHARS = 40  # how much of an offending value a message quotes


def preview(value, budget: int = SHOW_CHARS) -> str:
    """A short preview of `value` for a message: at most `budget` characters, and work bounded by the budget too
    (a container is walked only as far as its first items, a huge integer is not converted to text)."""
    text = _preview(value, budget + 1)
    return text if len(text) <= budget else text[: budget - 3] + "..."


def _preview(value, budget: int) -> str:
    """JSON-like text of `value`, cut off once it is longer than `budget` characters."""
    if budget <= 0:
        return "..."
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        return (
            str(value) if value.bit_length() < 128 else f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
        )
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value[:budget])
    if isinstance(value, dict | list | tuple):
        is_map = isinstance(value, dict)
        items = iter(value.items()) if is_map else iter(value)
        out = "{" if is_map else "["
        for i, item in enumerate(items):
            if len(out) > budget:
                break
            left = budget - len(out)
            piece = f"{_preview(item[0], left)}: {_preview(item[1], left)}" if is_map else _preview(item, left)
            out += (", " if i else "") + piece
        return out + ("}" if is_map else "]")
    return type(value).__name__


def finite(value) -> bool:
    """A number a float can hold: finite, and an integer no larger than the largest float."""
    if isinstance(value, int):
        return abs(value) <= sys.float_info.max
    return math.isfinite(value)


@dataclass(frozen=True)
class Num(Spec):
    """A finite number (bool excluded), optionally above or at least a bound and at most another, optionally an
    integer."""

    above: float | None = None
    at_least: float | None = None
    integer: bool = False
    allowed: tuple | None = None
    at_most: float | None = None

    @property
    def what(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.allowed is not None:
            return f"one of {', '.join(map(str, self.allowed))}"
        if self.at_most is not None:
            lo = self.at_least if self.at_least is not None else self.above
            side = "" if lo is None else f"from {lo:g} " if self.at_least is not None else f"above {lo:g} and "
            return f"{kind} {side}{'to' if side.startswith('from') else 'up to'} {self.at_most:g}"
        if self.above is not None:
            return f"{kind} above {self.above:g}"
        if self.at_least is not None:
            return f"{kind} of at least {self.at_least:g}"
        return kind

    def problem(self, value, at):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and finite(value)
        ok = ok and (not self.integer or isinstance(value, int))
        ok = ok and (self.above is None or value > self.above) and (self.at_least is None or value >= self.at_least)
        ok = ok and (self.at_most is None or value <= self.at_most)
        ok = ok and (self.allowed is None or value in self.allowed)
        return None if ok else (at, f"expected {self.what}, got {preview(value)}")


def Int(  # noqa: N802 - reads like a type
    at_least: float | None = None, allowed: tuple | None = None, at_most: float | None = None
) -> Num:
    """An integer (optionally at least a bound and at most another, or one of `allowed`)."""
    return Num(at_least=at_least, integer=True, allowed=allowed, at_most=at_most)


POSITIVE_MS = Num(above=0)  # a latency: finite and positive


@dataclass(frozen=True)
class Str(Spec):
    """A string (optionally non-empty)."""

    nonempty: bool = False

    @property
    def what(self) -> str:
        return "a non-empty string" if self.nonempty else "a string"

    def problem(self, value, at):
        ok = isinstance(value, str) and (not self.nonempty or value.strip())
        return None if ok else (at, f"expected {self.what}, got {preview(value)}")


@dataclass(frozen=True)
class Bool(Spec):
    """true or false."""

    what: str = "true or false"

    def problem(self, value, at):
        return None if isinstance(value, bool) else (at, f"expected {self.what}, got {preview(value)}")


@dataclass(frozen=True)
class Any(Spec):
    """Anything JSON holds."""

    def problem(self, value, at):
        return None


@dataclass(frozen=True)
class Opt(Spec):
    """`spec` or null."""

    spec: Spec

    @property
    def what(self) -> str:
        return f"{self.spec.what} or null"

    def problem(self, value, at):
        return None if value is None else self.spec.problem(value, at)


@dataclass(frozen=True)
class ListOf(Spec):
    """A list of `spec`, with a length between `min_len` and `max_len`."""

    spec: Spec
    min_len: int = 0
    max_len: int | None = None

    @property
    def what(self) -> str:
        n = {0: "a list", 1: "a non-empty list"}.get(self.min_len, f"a list of at least {self.min_len}")
        return f"{n} of {self.spec.what}"

    def problem(self, value, at):
        if not isinstance(value, list | tuple):  # a file holds lists; a command line's values may be a tuple
            return (at, f"expected {self.what}, got {preview(value)}")
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            size = f"{self.min_len}" if self.max_len == self.min_len else f"at least {self.min_len}"
            return (at, f"expected {size} items, got {len(value)}")
        for i, item in enumerate(value):
            found = self.spec.problem(item, f"{at}[{i}]")
            if found:
                return found
        return None


@dataclass(frozen=True)
class OneOf(Spec):
    """One of `values` (of any type)."""

    values: tuple

    @property
    def what(self) -> str:
        return f"one of {', '.join(map(str, self.values))}"

    def problem(self, value, at):
        return None if value in self.values else (at, f"expected {self.what}, got {preview(value)}")


@dataclass(frozen=True)
class Below(Spec):
    """`spec`, and below `limit` in magnitude (a larger figure is a broken or tampered file, and sums of such
    figures overflow)."""

    spec: Spec
    limit: float

    @property
    def what(self) -> str:
        return f"{self.spec.what} below {self.limit:g}"

    def problem(self, value, at):
        if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) >= self.limit:
            shown = f"{value:.3g}" if isinstance(value, float) or abs(value) < 1e300 else "a larger integer"
            return (at, f"expected {self.what}, got {shown}")
        return self.spec.problem(value, at)


@dataclass(frozen=True)
class Either(Spec):
    """`first` or `second`."""

    first: Spec
    second: Spec

    @property
    def what(self) -> str:
        return f"{self.first.what} or {self.second.what}"

    def problem(self, value, at):
        fits = self.first.problem(value, at) is None or self.second.problem(value, at) is None
        return None if fits else (at, f"expected {self.what}, got {preview(value)}")


@dataclass(frozen=True)
class Said(Spec):
    """`spec`, with the complaint about the value itself written for where it came from (`says`: a command-line
    option's `must be a number of at least 1`); a complaint about an item inside it is the item's own."""

    spec: Spec
    says: str

    @property
    def what(self) -> str:
        return self.spec.what

    def problem(self, value, at):
        found = self.spec.problem(value, at)
        return None if found is None else (at, self.says) if found[0] == at else found


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping from string keys to `spec`."""

    spec: Spec

    @property
    def what(self) -> str:
        return f"a mapping of {self.spec.what}"

    def problem(self, value, at):
        if not isinstance(value, dict):
            return (at, f"expected {self.what}, got {preview(value)}")
        for k, item in value.items():
            found = self.spec.problem(item, f"{at}[{k!r}]")
            if found:
                return found
        return None


@dataclass(frozen=True)
class Obj(Spec):
    """A mapping with known keys: `fields` (required unless in `optional`), no others unless `extra`;
    `rule` checks the whole object once its fields passed (returns a complaint or None)."""

    fields: dict[str, Spec]
    optional: frozenset = field(default_factory=frozenset)
    extra: bool = False
    rule: Callable[[dict], str | None] | None = None

    what: str = "a mapping"

    def problem(self, value, at):
        if not isinstance(value, dict):
            return (at, f"expected {self.what}, got {preview(value)}")
        missing = [k for k in self.fields if k not in value and k not in self.optional]
        if missing:
            return (at, f"lacks {', '.join(missing)}")
        if not self.extra:
            unknown = sorted(set(value) - set(self.fields))
            if unknown:
                return (at, f"unknown keys {unknown}; allowed: {', '.join(self.fields)}")
        for k, spec in self.fields.items():
            if k in value:
                found = spec.problem(value[k], f"{at}.{k}" if at else k)
                if found:
                    return found
        complaint = self.rule(value) if self.rule else None
        return (at, complaint) if complaint else None


def check(data, spec: Spec, where: str):
    """`data` if it fits `spec`, else one `HnasError` line: `WHERE: FIELD: complaint`."""
    found = spec.problem(data, "")
    if found:
        place, complaint = found
        raise HnasError(f"{where}: {place + ': ' if place else ''}{complaint}")
    return data
