"""What a latency table holds: one entry per distinct part (an op at a shape, or a fixed part) of a space.

An entry stores its part's spec (`Part.to_spec`), so a table can rebuild, re-export and re-measure any entry
without knowing which space it came from; its key is always recomputed from that spec (`Part.key`), never stored
as free text.
"""

from __future__ import annotations

from hnas.core.precision import FLOAT32
from hnas.spec.parts import Part
from hnas.spec.space import SearchSpace


def items_for_space(space: SearchSpace, precision: str = FLOAT32) -> list[Part]:
    """Every part a space's table of `precision` needs, once each, in execution order; Identity needs none
    (0 ms)."""
    parts = [part.at(precision) for slot in space.slots for part in slot.choices()]
    return dedupe([part for part in parts if part.key is not None])


def dedupe(parts: list[Part]) -> list[Part]:
    """The parts with distinct keys, first occurrence kept."""
    seen: set[str] = set()
    out = []
    for part in parts:
        if part.key not in seen:
            seen.add(part.key)
            out.append(part)
    return out
