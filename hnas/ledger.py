"""What a search paid for: one evaluation ledger shared by CES, SPOS-EA and random search.

The ledger is the only place that calls the accuracy objective (the expensive one). It pays once per
architecture (the seen set), keeps every architecture it paid for in an `Archive` with its cheap figures and the
generation that asked, counts the calls against the search's budget, and records why a search stopped short of
its budget (the feasible space ran dry). A finished search reads it as a `SearchResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hnas.spec.arch import Architecture, from_vector
from hnas.spec.space import SearchSpace
from hnas.spec.vectors import key

AccuracyFn = Callable[[Sequence[Architecture]], np.ndarray]


@dataclass
class Archive:
    """Every architecture evaluated by a search, with its figures and (after `rank()`) nondomination rank."""

    vectors: list[np.ndarray] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    macs: list[float] = field(default_factory=list)
    params: list[float] = field(default_factory=list)
    generation: list[int] = field(default_factory=list)
    more: list[list[float]] = field(default_factory=list)  # a fleet's other tables' latency (ms), one list per row
    ranks: np.ndarray | None = None

    def add(self, vecs, acc, lat, macs, params, gen: int, more=None) -> None:
        for i in range(len(vecs)):
            self.vectors.append(np.asarray(vecs[i], dtype=np.int64))
            self.accuracy.append(float(acc[i]))
            self.latency.append(float(lat[i]))
            self.macs.append(float(macs[i]))
            self.params.append(float(params[i]))
            self.generation.append(gen)
            if more is not None:
                self.more.append([float(x) for x in more[i]])

    def __len__(self) -> int:
        return len(self.vectors)

    def rank(self) -> np.ndarray:
        """Nondomination ranks over (max accuracy, min latency), 1 = Pareto front."""
        F = np.column_stack([-np.array(self.accuracy), np.array(self.latency)])
        _, ranks = NonDominatedSorting().do(F, return_rank=True)
        self.ranks = ranks + 1
        return self.ranks

    def best(self, k: int) -> np.ndarray:
        """The vectors of the k most accurate architectures, best first (ties in evaluation order)."""
        order = np.argsort(-np.array(self.accuracy), kind="stable")[:k]
        return np.array([self.vectors[i] for i in order])

    def to_json(self, space: SearchSpace) -> list[dict]:
        """The rows as a run folder keeps them; a fleet's rows add `latencies_ms`: every table's latency, the
        objective's first."""
        ranks = self.ranks if self.ranks is not None else self.rank()
        rows = [
            {
                "arch": str(from_vector(space, v)),
                "vector": v.tolist(),
                "accuracy": a,
                "latency_ms": lat,
                "macs": m,
                "params": p,
                "rank": int(r),
                "generation": g,
            }
            for v, a, lat, m, p, r, g in zip(
                self.vectors, self.accuracy, self.latency, self.macs, self.params, ranks, self.generation
            )
        ]
        if self.more:  # a fleet's rows: every table's latency, the objective's first
            for row, more in zip(rows, self.more, strict=True):
                row["latencies_ms"] = [row["latency_ms"], *more]
        return rows

    @classmethod
    def from_json(cls, rows: list[dict]) -> Archive:
        a = cls()
        for r in rows:
            more = [r["latencies_ms"][1:]] if "latencies_ms" in r else None
            a.add([r["vector"]], [r["accuracy"]], [r["latency_ms"]], [r["macs"]], [r["params"]], r["generation"], more)
        a.ranks = np.array([r["rank"] for r in rows]) if rows else np.zeros(0, dtype=int)
        return a


@dataclass
class SearchResult:
    """A finished search: the archive (ranked), the final population, and bookkeeping."""

    archive: Archive
    population: np.ndarray
    accuracy_calls: int
    generations: int
    budget: int = 0
    exhausted: str | None = None

    @property
    def note(self) -> str:
        """One line on the budget: spent in full, or why not."""
        spent = f"{self.accuracy_calls} of {self.budget} accuracy evaluations spent"
        return spent if self.exhausted is None else f"{spent}: {self.exhausted}"


class Ledger:
    """One search's evaluations: the archive, the seen set (architecture -> accuracy), the budget, the calls of
    the accuracy objective and, when the search stopped short of its budget, why."""

    def __init__(self, space: SearchSpace, accuracy: AccuracyFn, budget: int = 0):
        self.space = space
        self.accuracy_fn = accuracy
        self.budget = budget
        self.archive = Archive()
        self.seen: dict[bytes, float] = {}
        self.calls = 0
        self.generation = 0  # how many batches were priced
        self.exhausted: str | None = None

    def accuracy(self, vecs: np.ndarray, feasible: np.ndarray, lat, macs, params, more=None) -> np.ndarray:
        """The accuracy of each feasible row of `vecs` (0 for the others), paying only for architectures not seen
        before (once each, however often a batch holds them); what is paid for joins the archive with its
        cheap figures (`lat`, `macs`, `params`, one per row; `more`: [rows, tables] a fleet's other latencies)."""
        acc = np.zeros(len(vecs))
        keys = [key(v) for v in vecs]
        new = [i for i in np.flatnonzero(feasible) if keys[i] not in self.seen]
        new = list(dict(zip((keys[i] for i in new), new)).values())  # once per architecture in this batch
        if new:
            scores = self.accuracy_fn([from_vector(self.space, vecs[i]) for i in new])
            self.calls += len(new)
            extra = None if more is None else np.asarray(more)[new]
            self.archive.add(vecs[new], scores, lat[new], macs[new], params[new], self.generation, extra)
            self.seen.update((keys[i], float(a)) for i, a in zip(new, scores))
        for i in np.flatnonzero(feasible):
            acc[i] = self.seen[keys[i]]
        self.generation += 1
        return acc

    def stop(self, reason: str) -> None:
        """Record why the search cannot spend its whole budget (the feasible space ran dry)."""
        self.exhausted = reason

    def result(self, population: np.ndarray, generations: int) -> SearchResult:
        """The finished search: the archive ranked by nondomination, and the bookkeeping."""
        self.archive.rank()
        return SearchResult(self.archive, population, self.calls, generations, self.budget, self.exhausted)
