"""Search quality against ground truth: a table of every architecture of an enumerable space, the true
in-band Pareto front, and how much of it a search found.

A `GroundTruth` holds, for every architecture of a (small) layer-wise space, its accuracy and latency. It
serves as the accuracy source and the latency predictor of a search (so the search cannot tell it from a
supernet and a LUT), and scores the search's archive afterwards:

- hypervolume ratio: the 2-D hypervolume (maximise accuracy, minimise latency) of the in-band architectures
  the search evaluated, divided by that of the true in-band front, both against the same reference point
  (the worst in-band accuracy, the band's upper latency) on axes normalised to the in-band ranges;
- whether the search evaluated a true best in-band architecture (any of those tied at the top accuracy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from hnas.spec.vectors import ArchCodec


def hypervolume_2d(acc: np.ndarray, lat: np.ndarray, ref_acc: float, ref_lat: float) -> float:
    """Area dominated by points (higher accuracy, lower latency) and bounded by the reference point."""
    ok = (np.asarray(acc) >= ref_acc) & (np.asarray(lat) <= ref_lat)
    if not ok.any():
        return 0.0
    order = np.argsort(np.asarray(lat)[ok], kind="stable")
    a, lt = np.asarray(acc)[ok][order], np.asarray(lat)[ok][order]
    edges = np.r_[lt[1:], ref_lat]
    # sweep from low to high latency: strip [lat_i, lat_i+1) is covered up to the best accuracy reached so far
    area, best = 0.0, ref_acc
    for ai, left, right in zip(a, lt, edges, strict=True):
        best = max(best, ai)
        area += (best - ref_acc) * (right - left)
    return float(area)


@dataclass
class GroundTruth:
    """Accuracy and latency of every architecture of an enumerable space (row i = vector `vectors[i]`)."""

    space: SearchSpace
    accuracy: np.ndarray
    latency: np.ndarray

    def __post_init__(self):
        self.codec = ArchCodec(self.space)
        n = self.codec.size
        if len(self.accuracy) != n or len(self.latency) != n:
            raise HnasError(f"ground truth needs {n} accuracies and latencies, one per architecture")
        self.calls = 0

    def index(self, vectors) -> np.ndarray:
        """Row of each vector (mixed radix, the order of `ArchCodec.enumerate`)."""
        return self.codec.index(vectors)

    # --- the two objectives, as a search sees them ---------------------------------------------------

    def accuracy_of(self, archs: Sequence[Architecture]) -> np.ndarray:
        """Accuracy source: counts every call, as a supernet evaluation would cost."""
        self.calls += len(archs)
        return self.accuracy[self.index([a.to_vector() for a in archs])] if archs else np.zeros(0)

    def predict(self, vectors) -> np.ndarray:
        """Latency predictor over candidate-index vectors."""
        return self.latency[self.index(vectors)]

    # --- scoring -------------------------------------------------------------------------------------

    def band_percentiles(self, lo: float, hi: float) -> Band:
        """A latency band between two percentiles of the space's latencies."""
        return Band(*(float(x) for x in np.percentile(self.latency, [lo, hi])))

    def in_band(self, band: Band) -> np.ndarray:
        """Rows inside the band."""
        return np.flatnonzero(band.contains(self.latency))

    def score(self, found_vectors, band: Band) -> dict:
        """Hypervolume ratio against the true in-band front and whether a true best was found."""
        rows = self.in_band(band)
        if len(rows) == 0:
            raise HnasError("no architecture of the ground truth lies in the band")
        acc, lat = self.accuracy[rows], self.latency[rows]
        a0, a1 = acc.min(), acc.max()
        l0, l1 = lat.min(), lat.max()
        na = (acc - a0) / ((a1 - a0) or 1.0)
        nl = (lat - l0) / ((l1 - l0) or 1.0)
        ref = (0.0, 1.0 + 1e-9)
        true_hv = hypervolume_2d(na, nl, *ref)
        found = np.unique(self.index(found_vectors)) if len(found_vectors) else np.zeros(0, dtype=np.int64)
        found = found[band.contains(self.latency[found])]
        fa = (self.accuracy[found] - a0) / ((a1 - a0) or 1.0)
        fl = (self.latency[found] - l0) / ((l1 - l0) or 1.0)
        hv = hypervolume_2d(fa, fl, *ref)
        return {
            "hv_ratio": hv / true_hv if true_hv > 0 else 1.0,
            "found_best": bool(len(found) and self.accuracy[found].max() >= a1),
            "in_band": int(len(rows)),
            "evaluated_in_band": int(len(found)),
        }


def synthetic_truth(space: SearchSpace, seed: int = 0) -> GroundTruth:
    """The tests' table-driven truth: accuracy and latency are sums of random per-(layer, op) figures."""
    rng = np.random.default_rng(seed)
    width = max(len(c) for c in space.candidates)
    acc_t, lat_t = rng.random((space.num_layers, width)), rng.random((space.num_layers, width)) * 3
    vecs = ArchCodec(space).enumerate()
    rows = np.arange(space.num_layers)
    return GroundTruth(space, acc_t[rows, vecs].sum(1), lat_t[rows, vecs].sum(1))
