"""The numeric precision of a latency table: one per table, kept in its settings, never mixed.

A table's `settings` hold `"precision": "int8"` for an int8 table; a float32 table has no such key (every table
written before int8 existed, so their settings and `settings_id` are unchanged). Its entries' keys carry the same
precision (`hnas.spec.parts.Part.key`). Every command that reads a table takes its precision from the table;
`--precision` given as well must agree, or the command stops with the fix (`require`). A new table is float32
unless `--precision` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

from hnas.errors import HnasError
from hnas.spec.parts import FLOAT32, check_precision


def settings_precision(settings: dict) -> str:
    """The precision a table's settings block records (absent: float32)."""
    return check_precision(settings.get("precision", FLOAT32))


def precision_settings(precision: str) -> dict:
    """What a table of `precision` adds to its settings block: nothing for float32."""
    return {} if check_precision(precision) == FLOAT32 else {"precision": precision}


def table_precision(lut) -> str:
    """The precision of a `Lut`'s entries."""
    return settings_precision(lut.data.get("settings") or {})


def require(lut, requested: str | None, name: str) -> str:
    """The table's precision; when `requested` is given it must be the same (one line naming the fix)."""
    have = table_precision(lut)
    if requested is not None and check_precision(requested) != have:
        raise HnasError(
            f"{name} holds {have} entries, not {requested}: pass --precision {have}, or a {requested} table "
            f"(build one with `hnas lut build --precision {requested}`)"
        )
    return have


def check_build_target(lut, precision: str, path: Path) -> None:
    """Refuse to add entries of `precision` to an existing table of another precision."""
    have = table_precision(lut)
    if have != precision:
        other = path.with_name(f"{path.stem}-{precision}{path.suffix}") if precision != FLOAT32 else None
        fix = f"pass --out {other}" if other else "pass another --out"
        raise HnasError(
            f"{path} holds {have} entries; a table never mixes precisions, so {precision} entries cannot go "
            f"into it: {fix} (or --precision {have})"
        )


def lut_file_suffix(precision: str) -> str:
    """What a default table file name adds for `precision`: `-int8`, nothing for float32."""
    return "" if check_precision(precision) == FLOAT32 else f"-{precision}"


def build_precision(requested: str | None, path: Path | None) -> str:
    """The precision a build writes: `requested`; else that of the existing table at `path`; else float32. (A
    requested precision that the table at `path` does not hold is refused when the build opens it.)"""
    if requested is not None:
        return check_precision(requested)
    if path is not None and path.is_file():
        from latency.lut import Lut

        return table_precision(Lut.load(path))
    return FLOAT32
