"""Vectorized latency prediction from a LUT: a dense [layer x candidate] table plus the fixed parts.

`predict(vectors)` sums table[j, v[:, j]] over layers with one numpy gather, so millions of architectures
(integer vectors, as the search holds them) are priced per second. Identity has no kernel on the device
and contributes 0 ms by definition; every other op must have a measured (or imported) entry.
"""

from __future__ import annotations

import numpy as np

from hnas.arch import Architecture
from hnas.errors import HnasError
from hnas.space import SearchSpace
from latency.items import items_for_space, network_items
from latency.lut import Lut


class LatencyPredictor:
    """Predicts end-to-end latency (ms) of architectures of one space from one LUT."""

    def __init__(self, lut: Lut, space: SearchSpace, lut_name: str = "LUT", calibrated: bool = True):
        self.space = space
        cal = lut.data.get("calibration")
        # the end-to-end correction fitted by `hnas lut validate`, when it belongs to these settings
        self.calibration = cal if calibrated and cal and cal.get("settings_id") == lut.settings_id else None
        missing = [it.key for it in items_for_space(space) if lut.latency_ms(it.key) is None]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise HnasError(
                f"{lut_name} lacks {len(missing)} entries of space {space.name!r} ({shown}); measure them with "
                f"`hnas lut refresh --lut {lut_name} --space {space.name}`"
            )
        width = max(len(c) for c in space.candidates)
        table = np.zeros((space.num_layers, width))
        for j, layer in enumerate(space.layers):
            for i, op in enumerate(layer.candidates):
                table[j, i] = 0.0 if op.is_identity else lut.latency_ms(layer.key(op))
        self.table = table
        self.fixed = {p.key: float(lut.latency_ms(p.key)) for p in space.skeleton.fixed_parts}
        self.fixed_ms = sum(self.fixed.values())
        self._rows = np.arange(space.num_layers)

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
        """(part, raw LUT ms) of `arch` in execution order, named as `network_items` names them."""
        items = network_items(arch)
        layers = [float(self.table[j, i]) for j, i in enumerate(arch.to_vector())]
        ms = [self.fixed[items[0][1].key], *layers, self.fixed[items[-2][1].key], self.fixed[items[-1][1].key]]
        return [(name, m) for (name, _), m in zip(items, ms, strict=True)]
