"""Two latency tables side by side: per-entry ratios B / A, and per op how the ratio varies.

Entries are matched by the part they measure (their spec at float32), so an int8 table compared with a float32
one gives each part's int8 / float32 ratio; tables of one precision are matched key by key, as before. The
per-op summary groups entries by op (`IBConv_K5_E6`, the stem, the final 1x1 conv, pool + fc) across stage
shapes and orders the ops from the lowest median ratio (gains most when B is the faster table) to the highest.
"""

from __future__ import annotations

import statistics

from hnas.core.errors import HnasError
from hnas.core.precision import FLOAT32
from hnas.spec.parts import Part
from latency.lut import Lut
from latency.precision import table_precision


def _part(entry: dict) -> Part | None:
    try:
        return Part.from_spec(entry["spec"])
    except (HnasError, KeyError, TypeError):
        return None


def _by_part(lut: Lut) -> dict[str, tuple[str, Part | None]]:
    """{float32 key of the part: (the entry's key, the part)}; an entry without a readable spec keeps its key."""
    out = {}
    for key, entry in lut.entries.items():
        part = _part(entry)
        out[part.at(FLOAT32).key if part is not None else key] = (key, part)
    return out


def op_name(part: Part | None, key: str) -> str:
    """What an entry is grouped under: the block's op, or the fixed part's kind."""
    if part is None:
        return key.split(":")[0]
    return part.op.name if part.op is not None else part.kind


def _group(op: str, ratios: list[float]) -> dict:
    return {
        "op": op,
        "entries": len(ratios),
        "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios),
        "max_ratio": max(ratios),
    }


def diff_tables(a: Lut, b: Lut) -> dict:
    """Rows (A key, B key, A ms, B ms, B / A) of the parts both tables measured, what only one has, a summary, and
    per op the number of entries and the median, lowest and highest ratio (lowest median first)."""
    pa, pb = _by_part(a), _by_part(b)
    common = sorted(set(pa) & set(pb))
    rows = []
    for base in common:
        (ka, part), (kb, _) = pa[base], pb[base]
        x, y = a.latency_ms(ka), b.latency_ms(kb)
        if x is None or y is None or x <= 0:
            continue
        rows.append({"key": base, "a_key": ka, "b_key": kb, "op": op_name(part, base), "a_ms": x, "b_ms": y})
        rows[-1]["ratio"] = y / x
    ratios = [r["ratio"] for r in rows]
    groups: dict[str, list[float]] = {}
    for r in rows:
        groups.setdefault(r["op"], []).append(r["ratio"])
    by_op = sorted((_group(op, v) for op, v in groups.items()), key=lambda g: (g["median_ratio"], g["op"]))
    summary = {
        "a_precision": table_precision(a),
        "b_precision": table_precision(b),
        "common": len(rows),
        "only_a": len(set(pa) - set(pb)),
        "only_b": len(set(pb) - set(pa)),
        "median_ratio": statistics.median(ratios) if ratios else None,
        "min_ratio": min(ratios) if ratios else None,
        "max_ratio": max(ratios) if ratios else None,
    }
    return {
        "summary": summary,
        "rows": rows,
        "by_op": by_op,
        "only_a": sorted(pa[k][0] for k in set(pa) - set(pb)),
        "only_b": sorted(pb[k][0] for k in set(pb) - set(pa)),
    }
