"""Vectorized latency prediction from a LUT: a dense [layer x candidate] table plus the fixed parts.

`predict(vectors)` sums table[j, v[:, j]] over layers with one numpy gather, so millions of architectures
(integer vectors, as the search holds them) are priced per second. Identity has no kernel on the device
and contributes 0 ms by definition; every other part must have a measured (or imported) entry. The predictor
is what the search engine is handed as its latency objective (`for_space` prices a pruned space).

A predictor prices parts at its table's precision (float32 or int8); asked for another precision, it refuses
(`latency.precision.require`), so a float32 search never reads an int8 table or the other way round.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hnas.errors import HnasError
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from latency.items import items_for_space
from latency.lut import Lut
from latency.precision import require


def _how_to_fill(space: SearchSpace, lut_name: str) -> str:
    """The command that measures a space's missing entries: by preset name when the space is a preset, else with
    the space file it came from (a pruned space needs the entries of the space it was pruned from)."""
    from hnas.spec.space import PRESETS

    if space.name in PRESETS and PRESETS[space.name]() == space:
        return f"measure them with `hnas lut refresh --lut {lut_name} --space {space.name}`"
    return (
        f"measure them with `hnas lut refresh --lut {lut_name} --space FILE`, FILE being the space file the "
        f"space {space.name.split('@')[0]!r} was read from"
    )


class LatencyPredictor:
    """Predicts end-to-end latency (ms) of architectures of one space from one LUT."""

    def __init__(
        self,
        lut: Lut,
        space: SearchSpace,
        lut_name: str = "LUT",
        calibrated: bool = True,
        precision: str | None = None,
    ):
        self.lut, self.space, self.lut_name, self.calibrated = lut, space, lut_name, calibrated
        self.precision = require(lut, precision, lut_name)  # the table's; `precision`, when given, must agree
        cal = lut.data.get("calibration")
        # the end-to-end correction fitted by `hnas lut validate`, when it belongs to these settings
        self.calibration = cal if calibrated and cal and cal.get("settings_id") == lut.settings_id else None
        missing = [p.key for p in items_for_space(space, self.precision) if lut.latency_ms(p.key) is None]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            fix = _how_to_fill(space, lut_name)
            raise HnasError(f"{lut_name} lacks {len(missing)} entries of space {space.name!r} ({shown}); {fix}")
        self.table = np.zeros((space.num_layers, max(len(c) for c in space.candidates)))
        self.fixed_ms = 0.0
        j = 0
        for slot in space.slots:
            ms = [self.part_ms(part) for part in slot.choices()]
            if slot.searchable:
                self.table[j, : len(ms)] = ms
                j += 1
            else:
                self.fixed_ms += ms[0]
        self._rows = np.arange(space.num_layers)

    @classmethod
    def from_file(
        cls, path: str | Path, space: SearchSpace, calibrated: bool = True, precision: str | None = None
    ) -> LatencyPredictor:
        """The predictor of `space` on the LUT file at `path` (whose precision must be `precision`, if given)."""
        return cls(Lut.load(path), space, str(path), calibrated, precision)

    def for_space(self, space: SearchSpace) -> LatencyPredictor:
        """The same table pricing another space (a pruned one, say)."""
        return LatencyPredictor(self.lut, space, self.lut_name, self.calibrated, self.precision)

    def part_ms(self, part) -> float:
        """A part's raw LUT figure at the table's precision (0 for Identity, which runs no kernel)."""
        key = part.at(self.precision).key
        return 0.0 if key is None else float(self.lut.latency_ms(key))

    def predict(self, vectors) -> np.ndarray:
        """Latency in ms of each row of an [N, layers] array of candidate indices."""
        v = np.asarray(vectors)
        if v.ndim == 1:
            v = v[None, :]
        raw = self.table[self._rows, v].sum(axis=1) + self.fixed_ms
        if self.calibration is None:
            return raw
        return self.calibration["offset_ms"] + self.calibration["scale"] * raw

    def predict_arch(self, arch: Architecture) -> float:
        """Latency in ms of one architecture."""
        return float(self.predict(arch.to_vector())[0])

    def breakdown(self, arch: Architecture) -> list[tuple[str, float]]:
        """(part label, raw LUT ms) of `arch`'s parts in execution order."""
        return [(part.label, self.part_ms(part)) for part in arch.parts()]
