"""File schemas: every file hnas reads (space, architecture, LUT, run config, results) is checked against its
schema when it is loaded, so a bad file is one line naming the file, the field and what is allowed, never a
traceback later or a silently wrong number.

A schema is built from a few specs: `Int`, `Num`, `Str`, `Bool`, `Opt(spec)`, `ListOf(spec)`, `MapOf(spec)`,
`Obj({key: spec}, optional=...)`, `Any`. `check(data, spec, where)` raises `HnasError` at the first violation,
e.g. `LUT lut/x.json: entries['Stem_K3:...'].median_ms: expected a finite number above 0, got nan`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hnas.errors import HnasError


class Spec:
    """What a value must be; `problem(value)` says why it is not (None when it is)."""

    what: str = "a value"

    def problem(self, value, at: str) -> tuple[str, str] | None:
        """(place, complaint) of the first violation in `value` (found at `at`), or None."""
        raise NotImplementedError


def _show(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class Num(Spec):
    """A finite number (bool excluded), optionally above or at least a bound, optionally an integer."""

    above: float | None = None
    at_least: float | None = None
    integer: bool = False
    allowed: tuple | None = None

    @property
    def what(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        if self.allowed is not None:
            return f"one of {', '.join(map(str, self.allowed))}"
        if self.above is not None:
            return f"{kind} above {self.above:g}"
        if self.at_least is not None:
            return f"{kind} of at least {self.at_least:g}"
        return kind

    def problem(self, value, at):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (not self.integer or isinstance(value, int))
        ok = ok and (self.above is None or value > self.above) and (self.at_least is None or value >= self.at_least)
        ok = ok and (self.allowed is None or value in self.allowed)
        return None if ok else (at, f"expected {self.what}, got {_show(value)}")


def Int(at_least: float | None = None, allowed: tuple | None = None) -> Num:  # noqa: N802 - reads like a type
    """An integer (optionally at least a bound, or one of `allowed`)."""
    return Num(at_least=at_least, integer=True, allowed=allowed)


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
        return None if ok else (at, f"expected {self.what}, got {_show(value)}")


@dataclass(frozen=True)
class Bool(Spec):
    """true or false."""

    what: str = "true or false"

    def problem(self, value, at):
        return None if isinstance(value, bool) else (at, f"expected {self.what}, got {_show(value)}")


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
        if not isinstance(value, list):
            return (at, f"expected {self.what}, got {_show(value)}")
        if len(value) < self.min_len or (self.max_len is not None and len(value) > self.max_len):
            size = f"{self.min_len}" if self.max_len == self.min_len else f"at least {self.min_len}"
            return (at, f"expected {size} items, got {len(value)}")
        for i, item in enumerate(value):
            found = self.spec.problem(item, f"{at}[{i}]")
            if found:
                return found
        return None


@dataclass(frozen=True)
class MapOf(Spec):
    """A mapping from string keys to `spec`."""

    spec: Spec

    @property
    def what(self) -> str:
        return f"a mapping of {self.spec.what}"

    def problem(self, value, at):
        if not isinstance(value, dict):
            return (at, f"expected {self.what}, got {_show(value)}")
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
            return (at, f"expected {self.what}, got {_show(value)}")
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


REDO = "restore it, or delete it to redo that step"


def load_json(path: str | Path, what: str, missing: str = "", broken: str = REDO):
    """A JSON file's content, unchecked; a missing or malformed file is one line naming it (`what PATH`) and, after
    it, what to do (`missing`, `broken`)."""
    path = Path(path)
    if not path.is_file():
        raise HnasError(f"{what} {path} does not exist" + (f": {missing}" if missing else ""))
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise HnasError(f"{what} {path} is not valid JSON ({exc}); {broken}") from None


def read_json(path: str | Path, spec: Spec, what: str):
    """Load a JSON file and check it: a missing, truncated or malformed file is one line naming it."""
    return check(load_json(path, what), spec, f"{what} {Path(path)}")
