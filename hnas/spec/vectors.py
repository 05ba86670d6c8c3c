"""The vector form of a layer-wise space's architectures, owned in one place.

An architecture is an integer vector: entry j indexes layer j's candidates. `ArchCodec` holds a space's
candidate counts and everything done to such vectors: draw them uniformly, move a layer to another of its
candidates, list every single-layer neighbour, enumerate a small space, round and clip arbitrary numbers to valid
indices, and number a vector in mixed radix (its row in the enumeration). The dense [layer x candidate] table of one
additive figure that prices such vectors is `hnas.core.additive.LayerTable`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hnas.core.errors import HnasError

ENUMERABLE = 1_000_000  # the most architectures a space may have to be enumerated (ground truths, exact counts)


def key(vec: np.ndarray) -> bytes:
    """A hashable identity of one integer vector (what a search's seen set holds)."""
    return np.ascontiguousarray(vec, dtype=np.int64).tobytes()


class ArchCodec:
    """Sampling, mutation, enumeration and the integer encoding of the architectures of one space."""

    def __init__(self, space):
        self.name = space.name
        self.counts = np.array([len(c) for c in space.candidates], dtype=np.int64)
        self.free = np.flatnonzero(self.counts > 1)  # layers with a choice; the others never change
        self.size = int(np.prod(self.counts, dtype=object))
        self._radix = np.r_[np.cumprod(self.counts[::-1])[::-1][1:], 1]

    @property
    def layers(self) -> int:
        return len(self.counts)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` vectors drawn uniformly per layer, [n, layers]."""
        return (rng.random((n, self.layers)) * self.counts).astype(np.int64)

    def redraw(self, rng: np.random.Generator, vecs: np.ndarray, where: np.ndarray) -> None:
        """Draw the entries of `vecs` marked in `where` ([n, layers] booleans) uniformly again, in place."""
        vecs[where] = (rng.random(int(where.sum())) * np.broadcast_to(self.counts, vecs.shape)[where]).astype(np.int64)

    def another(self, rng: np.random.Generator, vecs: np.ndarray, rows: Sequence[int], layers: Sequence[int]) -> None:
        """Move each (row, layer) of `vecs` to another of that layer's candidates, uniformly, in place."""
        for i, j in zip(rows, layers):
            vecs[i, j] = (vecs[i, j] + 1 + rng.integers(self.counts[j] - 1)) % self.counts[j]

    def mutate(self, rng: np.random.Generator, parents: np.ndarray, strength: int) -> np.ndarray:
        """Each parent with `strength` distinct free layers moved to another of their candidates."""
        out = np.array(parents, dtype=np.int64, copy=True)
        k = min(strength, len(self.free))
        for i in range(len(out)):
            layers = rng.choice(self.free, size=k, replace=False)
            self.another(rng, out, [i] * k, layers)
        return out

    def neighbours(self, vec: np.ndarray) -> np.ndarray:
        """Every vector that differs from `vec` in exactly one layer, layer by layer."""
        out = []
        for j in self.free:
            w = np.repeat(vec[None, :], self.counts[j] - 1, axis=0)
            w[:, j] = np.delete(np.arange(self.counts[j]), vec[j])
            out.append(w)
        return np.concatenate(out) if out else np.zeros((0, self.layers), dtype=np.int64)

    def valid(self, X) -> np.ndarray:
        """Rows of numbers rounded and clipped to valid candidate indices."""
        return np.clip(np.around(np.atleast_2d(X)).astype(np.int64), 0, self.counts - 1)

    def enumerate(self) -> np.ndarray:
        """Every architecture as a vector, in mixed-radix order (layer 1 slowest); refused for a large space."""
        if self.size > ENUMERABLE:
            raise HnasError(f"space {self.name!r} has {self.size:.3g} architectures; at most {ENUMERABLE} enumerate")
        return np.stack(np.unravel_index(np.arange(self.size), self.counts), axis=1).astype(np.int64)

    def index(self, vecs) -> np.ndarray:
        """The row of each vector in `enumerate()` (mixed radix)."""
        return np.atleast_2d(np.asarray(vecs, dtype=np.int64)) @ self._radix
