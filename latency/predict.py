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

from hnas.core.additive import AdditiveLatency, LatencyDistribution, LayerTable
from hnas.core.errors import HnasError
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from latency.items import items_for_space
from latency.lut import Lut, doubt_line, entry_doubt
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
        self.table = LayerTable.of(space, self.part_ms)  # raw figures: [layer x candidate] and the fixed parts
        self._distribution = None
        self._check_calibration()

    def additive(self) -> AdditiveLatency:
        """This predictor as an additive model (per-layer raw figures, fixed parts, calibration): what gives the
        search its exact latency span and in-band shares (`hnas.core.additive`)."""
        cal = self.calibration or {"offset_ms": 0.0, "scale": 1.0}
        return AdditiveLatency(self.table.rows(), self.table.fixed, float(cal["offset_ms"]), float(cal["scale"]))

    def distribution(self) -> LatencyDistribution:
        """The latency distribution over this space (built once)."""
        if self._distribution is None:
            self._distribution = LatencyDistribution(self.additive())
        return self._distribution

    def _check_calibration(self) -> None:
        """Refuse a calibration that predicts a latency of 0 ms or less for an architecture of the space (checked on
        the fastest one, exactly: the prediction grows with every entry)."""
        if self.calibration is None:
            return
        fast, _ = self.additive().extremes()
        lowest = float(self.predict(fast)[0])
        if not lowest > 0:
            cal, raw = self.calibration, float(self.table(fast)[0])
            raise HnasError(
                f"{self.lut_name}: its calibration (offset {cal['offset_ms']:g} ms, scale {cal['scale']:g}) predicts "
                f"{lowest:.2f} ms for the fastest architecture of space {self.space.name!r} (raw LUT sum {raw:.2f} "
                'ms), and a latency is above 0 ms: refit it with `hnas lut validate`, or set "calibration" to null'
            )

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
        raw = self.table(vectors)
        if self.calibration is None:
            return raw
        return self.calibration["offset_ms"] + self.calibration["scale"] * raw

    def predict_arch(self, arch: Architecture) -> float:
        """Latency in ms of one architecture."""
        return float(self.predict(arch.to_vector())[0])

    def doubtful(self, arch: Architecture | None = None) -> tuple[dict[str, str], int]:
        """The entries behind the prediction of `arch` (else behind every prediction on the space) whose figures are
        not known to be stable, key -> why (`entry_doubt`), and how many entries that prediction uses."""
        if arch is not None:
            parts = [p.at(self.precision) for p in arch.parts()]
        else:
            parts = items_for_space(self.space, self.precision)
        keys = [k for k in dict.fromkeys(p.key for p in parts) if k is not None]
        return {k: why for k in keys if (why := entry_doubt(self.lut.entries[k]))}, len(keys)

    def doubt_note(self, arch: Architecture | None = None) -> str | None:
        """One line naming the unstable entries a prediction used (of `arch`, else of the space) and the command
        that re-measures them; None when every entry is stable."""
        doubtful, total = self.doubtful(arch)
        what = "of this prediction" if arch is not None else f"of {self.lut_name} that price space {self.space.name!r}"
        return doubt_line(doubtful, total, what, self.lut_name)

    def breakdown(self, arch: Architecture) -> list[tuple[str, float]]:
        """(part label, raw LUT ms) of `arch`'s parts in execution order."""
        return [(part.label, self.part_ms(part)) for part in arch.parts()]
