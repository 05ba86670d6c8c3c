"""The numeric precision of a latency table: one per table, kept in its settings (`Precision.of_settings`), never
mixed. Its entries' keys carry the same precision (`hnas.spec.parts.Part.key`). Every command that reads a table
takes its precision from the table; `--precision` given as well must agree, or the command stops with the fix
(`require`). A new table is float32 unless `--precision` says otherwise.
"""

from __future__ import annotations

from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.precision import FLOAT32, Precision


def table_precision(lut) -> Precision:
    """The precision of a `Lut`'s entries."""
    return Precision.of_settings(lut.data.get("settings") or {})


def require(lut, requested: str | None, name: str) -> Precision:
    """The table's precision; when `requested` is given it must be the same (one line naming the fix)."""
    have = table_precision(lut)
    if requested is not None and Precision.parse(requested) != have:
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


def build_precision(requested: str | None, path: Path | None) -> Precision:
    """The precision a build writes: `requested`; else that of the existing table at `path`; else float32. (A
    requested precision that the table at `path` does not hold is refused when the build opens it.)"""
    if requested is not None:
        return Precision.parse(requested)
    if path is not None and path.is_file():
        from latency.lut import Lut

        return table_precision(Lut.load(path))
    return FLOAT32
