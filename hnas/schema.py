"""File schemas: every file hnas reads (space, architecture, LUT, run config, results) is checked against its
schema when it is loaded, so a bad file is one line naming the file, the field and what is allowed, never a
traceback later or a silently wrong number.

A schema is built from a few specs: `Int`, `Num`, `Str`, `Bool`, `Opt(spec)`, `ListOf(spec)`, `MapOf(spec)`,
`Obj({key: spec}, optional=...)`, `Any`. `check(data, spec, where)` raises `HnasError` at the first violation,
e.g. `LUT lut/x.json: entries['Stem_K3:...'].median_ms: expected a finite number above 0, got nan`.

Files are read here too (`read_text`, `load_json`, `load_yaml`): a file over its kind's size limit, not UTF-8, or
YAML that uses aliases (`*name`, which can expand a few hundred bytes into gigabytes) is refused before it is parsed.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
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
        if not isinstance(value, list):
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


REDO = "restore it, or delete it to redo that step"


MiB = 2**20
MAX_FILE_BYTES = 64 * MiB  # the largest file hnas reads unless its kind says less (a LUT of many spaces is ~1 MB)


def read_text(path: str | Path, what: str, missing: str = "", max_bytes: int = MAX_FILE_BYTES) -> str:
    """The UTF-8 text of a file of at most `max_bytes`; a missing, oversized or binary file is one line naming it
    (`what PATH`) and, for a missing one, what to do (`missing`)."""
    path = Path(path)
    if not path.is_file():
        raise HnasError(f"{what} {path} does not exist" + (f": {missing}" if missing else ""))
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        raw = fh.read(max_bytes + 1) if size <= max_bytes else b""  # read no more than the limit, whatever stat said
    if size > max_bytes or len(raw) > max_bytes:
        raise HnasError(
            f"{what} {path} is {max(size, len(raw)) / MiB:.1f} MiB, over the {max_bytes / MiB:g} MiB a {what} may "
            "take: give the right file"
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HnasError(
            f"{what} {path} is not UTF-8 text (byte {exc.start} cannot be decoded): give a JSON or YAML text file"
        ) from None


def load_json(path: str | Path, what: str, missing: str = "", broken: str = REDO, max_bytes: int = MAX_FILE_BYTES):
    """A JSON file's content, unchecked; a missing, oversized or malformed file is one line naming it (`what PATH`)
    and, after it, what to do (`missing`, `broken`)."""
    path = Path(path)
    text = read_text(path, what, missing, max_bytes)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, an integer of more than 4300 digits, deep nesting
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HnasError(f"{what} {path} is not valid JSON ({first}); {broken}") from None


def load_yaml(text: str, where: str):
    """The content of a YAML document, read with PyYAML's safe loader but without aliases: an alias (`*name`)
    is refused before anything is expanded, so a few hundred bytes cannot become gigabytes."""
    import yaml

    try:
        return yaml.load(text, Loader=_no_alias_loader())  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise HnasError(f"{where} is not valid YAML{at}: {first}") from None


@functools.cache
def _no_alias_loader() -> type:
    """PyYAML's SafeLoader with aliases refused (built once, on the first YAML file read)."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        """PyYAML's SafeLoader, refusing aliases where they are composed (before they would be expanded)."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    f"aliases (*{event.anchor}) are not allowed in hnas files: write the value out",
                    event.start_mark,
                )
            return super().compose_node(parent, index)

    return NoAliasLoader


def read_json(path: str | Path, spec: Spec, what: str, max_bytes: int = MAX_FILE_BYTES):
    """Load a JSON file and check it: a missing, oversized, truncated or malformed file is one line naming it."""
    return check(load_json(path, what, max_bytes=max_bytes), spec, f"{what} {Path(path)}")
