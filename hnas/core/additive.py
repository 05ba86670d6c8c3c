"""Exact latency spans, in-band shares and in-band draws of an additive latency model.

A latency table prices an architecture as a sum over its layers plus fixed parts, optionally calibrated:

    latency(v) = offset + scale * (fixed + sum_j table[j][v_j]),   scale > 0

so the fastest and the slowest architecture of a space are the per-layer minima and maxima, exactly, whatever
the space's size (`AdditiveLatency.extremes`). How much of the space lies inside a band, and uniform draws from
the architectures inside it, come from the distribution of the sum when every layer picks each of its candidates
with equal probability (the uniform distribution over the space): dynamic programming over layers convolves the
layers' distributions on a grid of `bins` steps of width d = (sum of per-layer ranges) / bins
(`LatencyDistribution`). Each entry is floored to the grid, so an architecture's grid sum falls short of its raw
sum by less than L * d (L layers): a share is returned as an interval that contains the exact share, and an
in-band draw is exact up to that slack (draws outside the band are for the caller to reject). On `basic` (21
layers, 65,536 bins over about 130 ms) the slack is under 0.05 ms of raw latency.

`LayerTable` is the dense [layer x candidate] table of one additive figure (latency, MACs, params) plus the fixed
parts' sum, which prices many vectors with one gather (a LUT predictor's raw figures, a search's MACs and params).

The search engine is handed a latency model as an object (`hnas.ces`); a model that offers `additive()` (the LUT
predictor does) gets exact bounds, any other (a ground-truth table, a test double) falls back to sampling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hnas.core.band import Band

BINS = 1 << 16
METHOD = (
    f"span: the per-layer minima and maxima of the table; share: dynamic programming over layers on a {BINS:,}-step "
    "grid, as bounds"
)


@dataclass(frozen=True)
class LayerTable:
    """One additive figure per (searchable layer, candidate), zero past a layer's candidates, plus the fixed parts."""

    table: np.ndarray  # [layers, widest layer]
    fixed: float
    counts: tuple[int, ...]

    @classmethod
    def of(cls, space, figure: Callable) -> LayerTable:
        """The table of `figure(part)` over the space's slots: searchable slots by candidate, fixed ones summed."""
        table = np.zeros((space.num_layers, max(len(c) for c in space.candidates)))
        fixed = 0
        j = 0
        for slot in space.slots:
            values = [figure(part) for part in slot.choices()]
            if slot.searchable:
                table[j, : len(values)] = values
                j += 1
            else:
                fixed += values[0]
        return cls(table, fixed, tuple(len(c) for c in space.candidates))

    @classmethod
    def from_rows(cls, rows: Sequence[np.ndarray], fixed: float) -> LayerTable:
        """The table of per-layer figures (`rows[j][i]`: candidate i of layer j)."""
        table = np.zeros((len(rows), max(len(r) for r in rows)))
        for j, r in enumerate(rows):
            table[j, : len(r)] = r
        return cls(table, fixed, tuple(len(r) for r in rows))

    def __call__(self, vecs) -> np.ndarray:
        """The figure of each row of an [n, layers] array of candidate indices (a vector: one row)."""
        return self.table[np.arange(len(self.counts)), np.atleast_2d(vecs)].sum(axis=1) + self.fixed

    def rows(self) -> tuple[np.ndarray, ...]:
        """The per-layer figures, each layer's candidates only."""
        return tuple(self.table[j, :n].copy() for j, n in enumerate(self.counts))

    def least(self) -> float:
        """The smallest figure any architecture has (exact: the fixed parts plus the per-layer minima)."""
        return self.fixed + sum(float(self.table[j, :n].min()) for j, n in enumerate(self.counts))


@dataclass(frozen=True)
class AdditiveLatency:
    """latency(v) = offset + scale * (fixed + sum_j layers[j][v_j]) in ms, with scale > 0."""

    layers: tuple[np.ndarray, ...]
    fixed: float
    offset: float = 0.0
    scale: float = 1.0

    def extremes(self) -> tuple[np.ndarray, np.ndarray]:
        """The candidate-index vectors of a fastest and a slowest architecture."""
        fast = np.array([int(np.argmin(t)) for t in self.layers], dtype=np.int64)
        slow = np.array([int(np.argmax(t)) for t in self.layers], dtype=np.int64)
        return fast, slow

    def price(self, vecs: np.ndarray) -> np.ndarray:
        """Latency (ms) of each row of an [n, layers] array of candidate indices, summed as a LUT predictor sums."""
        return self.offset + self.scale * LayerTable.from_rows(self.layers, self.fixed)(vecs)

    def span(self) -> tuple[float, float]:
        """The exact latency (ms) of the fastest and of the slowest architecture."""
        lo, hi = self.price(np.stack(self.extremes()))
        return float(lo), float(hi)

    def raw_band(self, band: Band) -> tuple[float, float]:
        """`band` (predicted ms) as bounds on the raw sum (-inf / inf where open)."""
        lo = -math.inf if band.lo is None else (band.lo - self.offset) / self.scale
        hi = math.inf if band.hi is None else (band.hi - self.offset) / self.scale
        return lo, hi

    def restricted(self, hold: dict[int, int]) -> tuple[AdditiveLatency, list[np.ndarray]]:
        """The model with layer j held at candidate `hold[j]`, and per layer the original indices it keeps."""
        keep = [np.array([hold[j]]) if j in hold else np.arange(len(t)) for j, t in enumerate(self.layers)]
        layers = tuple(t[k] for t, k in zip(self.layers, keep, strict=True))
        return AdditiveLatency(layers, self.fixed, self.offset, self.scale), keep


@dataclass
class LatencyDistribution:
    """The distribution of an additive model's raw sum over the uniform space, on a grid (see the module)."""

    model: AdditiveLatency
    bins: int = BINS
    _cdf: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        layers = self.model.layers
        self.base = float(sum(float(t.min()) for t in layers))  # raw sum of the fastest architecture, less fixed
        width = float(sum(float(t.max() - t.min()) for t in layers))
        self.step = width / self.bins if width > 0 else 1.0
        self.steps = [np.floor((t - t.min()) / self.step).astype(np.int64) for t in layers]
        size = int(sum(int(s.max()) for s in self.steps)) + 1
        prefix = [np.zeros(size)]
        prefix[0][0] = 1.0
        for s in self.steps:  # convolve with layer j's distribution: each candidate with probability 1 / count
            prev, nxt = prefix[-1], np.zeros(size)
            for k in s:
                nxt[k:] += prev[: size - k]
            prefix.append(nxt / len(s))
        self.prefix = prefix
        self.span = self.model.span()

    @property
    def slack(self) -> int:
        """Grid steps by which a grid sum may fall short of its raw sum (one per layer, one for rounding)."""
        return len(self.steps) + 1

    def _grid(self, band: Band) -> tuple[slice, slice]:
        """Grid sums (slices of the final distribution) certainly inside `band`, and possibly inside it."""
        lo, hi = self.model.raw_band(band)
        lim = len(self.prefix[-1]) + self.slack + 2.0  # far outside the grid either way: clamp (infinite sides too)
        a = min(max((lo - self.model.fixed - self.base) / self.step, -lim), lim)
        b = min(max((hi - self.model.fixed - self.base) / self.step, -lim), lim)
        # a raw sum lies in [grid, grid + L) steps: one extra step each side absorbs rounding
        sure = slice(max(0, math.ceil(a) + 1), max(0, math.floor(b) - self.slack + 1))
        maybe = slice(max(0, math.ceil(a) - self.slack), max(0, math.floor(b) + 2))
        return sure, maybe

    def share(self, band: Band) -> tuple[float, float]:
        """(lower, upper) bounds on the share of the space's architectures inside `band` (exact, 0 or 1, when the band
        misses or holds the exact span)."""
        lo, hi = self.span
        if (band.hi is not None and band.hi < lo) or (band.lo is not None and band.lo > hi):
            return 0.0, 0.0
        if (band.lo is None or band.lo <= lo) and (band.hi is None or band.hi >= hi):
            return 1.0, 1.0
        sure, maybe = self._grid(band)
        final = self.prefix[-1]
        return float(final[sure].sum()), min(1.0, float(final[maybe].sum()))

    def quantile(self, q: float) -> float:
        """A latency (ms) below which at least a share `q` of the space lies (within the grid's slack)."""
        cdf = np.cumsum(self.prefix[-1])
        i = int(np.searchsorted(cdf, q - 1e-12))
        raw = self.model.fixed + self.base + (i + self.slack) * self.step
        return self.model.offset + self.model.scale * raw

    def sample(self, band: Band, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` vectors drawn uniformly from the architectures whose grid sum may lie inside `band` ([n, L]; an
        empty array when none may); the caller rejects the few outside it."""
        key = (band.lo, band.hi)
        if key not in self._cdf:
            _, maybe = self._grid(band)
            mass = self.prefix[-1][maybe]
            self._cdf[key] = (maybe.start, np.cumsum(mass)) if mass.sum() > 0 else None
        found = self._cdf[key]
        L = len(self.steps)
        if found is None or n <= 0:
            return np.zeros((0, L), dtype=np.int64)
        start, cdf = found
        total = np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(cdf) - 1) + start
        out = np.zeros((n, L), dtype=np.int64)
        for j in range(L - 1, -1, -1):  # walk back: P(layer j = k | grid sum) is proportional to prefix[j][sum - s_k]
            s, prev = self.steps[j], self.prefix[j]
            idx = total[:, None] - s[None, :]
            w = np.where(idx >= 0, prev[np.clip(idx, 0, len(prev) - 1)], 0.0)
            cum = np.cumsum(w, axis=1)
            pick = (cum < rng.random(n)[:, None] * cum[:, -1:]).sum(axis=1)
            pick = np.minimum(pick, len(s) - 1)
            out[:, j] = pick
            total = total - s[pick]
        return out


def rarest(tables: list[tuple]):
    """Of tables given as tuples ending in (distribution, band), the one whose band holds the smallest share of the
    space (the only one as it is; None for none): in-band draws come from it, the other bands are checked on what is
    drawn (CES and the supernet's path sampling alike)."""
    if len(tables) <= 1:
        return tables[0] if tables else None
    return min(tables, key=lambda t: t[-2].share(t[-1])[1])


def fmt_share(lower: float, upper: float) -> str:
    """`0.12 %`, `0.12 to 0.13 %` or `none`: a share interval in percent."""
    if upper <= 0:
        return "none"
    a, b = f"{lower * 100:.3g}", f"{upper * 100:.3g}"
    return f"{b} %" if a == b else f"{a} to {b} %"
