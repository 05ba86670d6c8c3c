"""Operation-distribution estimation and per-layer pruning (paper §3.2, Algorithm 1 lines 4-7)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hnas.spec.space import SearchSpace


@dataclass
class Distribution:
    """p[j][i]: frequency of candidate i of layer j among the selected architectures (rows sum to 1)."""

    space: SearchSpace
    p: list[np.ndarray]
    n_archs: int

    def to_json(self) -> dict:
        return {
            "n_archs": self.n_archs,
            "layers": [
                {op.name: float(q) for op, q in zip(layer.candidates, probs)}
                for layer, probs in zip(self.space.layers, self.p)
            ],
        }


def estimate(space: SearchSpace, vectors: np.ndarray) -> Distribution:
    """Count each layer's ops over `vectors` (rows of candidate indices) and normalize."""
    v = np.atleast_2d(np.asarray(vectors, dtype=np.int64))
    if v.size == 0:
        return Distribution(space, [np.full(len(c), 1.0 / len(c)) for c in space.candidates], 0)
    p = [np.bincount(v[:, j], minlength=len(c)) / len(v) for j, c in enumerate(space.candidates)]
    return Distribution(space, p, len(v))


def select_by_rank(vectors: np.ndarray, ranks: np.ndarray, max_rank: int = 10) -> np.ndarray:
    """Architectures whose nondomination rank is < `max_rank` (rank 1 = Pareto front)."""
    v = np.asarray(vectors)
    return v[np.asarray(ranks) < max_rank]


def prune(dist: Distribution, threshold: float = 0.01, name: str | None = None) -> SearchSpace:
    """Remove ops with p < threshold per layer; a layer keeps at least its most frequent op.

    Removing candidates never breaks the space's structural rules (they only forbid ops), and the result
    is validated by `SearchSpace` anyway.
    """
    space = dist.space
    kept = []
    for layer, probs in zip(space.layers, dist.p):
        keep = tuple(op for op, q in zip(layer.candidates, probs) if q >= threshold)
        if not keep:
            keep = (layer.candidates[int(np.argmax(probs))],)
        kept.append(keep)
    return space.with_candidates(kept, name or space.name)
