"""Constrained Evolutionary Search (CES, paper §3.2): NSGA-II on pymoo with latency-feasible offspring only.

The problem is a pymoo `Problem` over the layer-wise space (variable j indexes layer j's current candidates),
with objectives (-accuracy, latency) and constraints lat_min <= latency <= lat_max (optionally MACs and
params). Cheap objectives come first: latency (LUT), MACs and params are computed for every candidate, and
accuracy — the expensive one — only for candidates that satisfy every constraint. Crossover and mutation
offspring that break a constraint are discarded and regenerated (bounded retries), the initial population is
feasible, duplicates are eliminated, and every evaluated architecture stays in an archive that is ranked by
nondomination at the end (rank 1 = Pareto front), so nothing is dropped for poor accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.core.duplicate import DefaultDuplicateElimination
from pymoo.core.mating import Mating
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.mutation.pm import PolynomialMutation
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hnas.arch import Architecture, from_vector
from hnas.cost import op_cost
from hnas.errors import HnasError
from hnas.space import SearchSpace

AccuracyFn = Callable[[Sequence[Architecture]], np.ndarray]


@dataclass
class Constraints:
    """Latency band (ms) and optional MACs / params caps."""

    lat_min: float | None = None
    lat_max: float | None = None
    max_macs: float | None = None
    max_params: float | None = None


class CostTable:
    """MACs and params of every (layer, candidate) from the spec, vectorized like the latency predictor."""

    def __init__(self, space: SearchSpace):
        width = max(len(c) for c in space.candidates)
        self.macs = np.zeros((space.num_layers, width))
        self.params = np.zeros((space.num_layers, width))
        for j, layer in enumerate(space.layers):
            for i, op in enumerate(layer.candidates):
                c = op_cost(op, layer.shape)
                self.macs[j, i], self.params[j, i] = c.macs, c.params
        from hnas.cost import fixed_cost

        fixed = [fixed_cost(p) for p in space.skeleton.fixed_parts]
        self.fixed_macs = sum(c.macs for c in fixed)
        self.fixed_params = sum(c.params for c in fixed)
        self._rows = np.arange(space.num_layers)

    def __call__(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = np.atleast_2d(vecs)
        macs = self.macs[self._rows, v].sum(1) + self.fixed_macs
        return macs, self.params[self._rows, v].sum(1) + self.fixed_params


@dataclass
class Archive:
    """Every architecture evaluated by a search, with its figures and (after `rank()`) nondomination rank."""

    vectors: list[np.ndarray] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    macs: list[float] = field(default_factory=list)
    params: list[float] = field(default_factory=list)
    generation: list[int] = field(default_factory=list)
    ranks: np.ndarray | None = None

    def add(self, vecs, acc, lat, macs, params, gen: int) -> None:
        for i in range(len(vecs)):
            self.vectors.append(np.asarray(vecs[i], dtype=np.int64))
            self.accuracy.append(float(acc[i]))
            self.latency.append(float(lat[i]))
            self.macs.append(float(macs[i]))
            self.params.append(float(params[i]))
            self.generation.append(gen)

    def __len__(self) -> int:
        return len(self.vectors)

    def rank(self) -> np.ndarray:
        """Nondomination ranks over (max accuracy, min latency), 1 = Pareto front."""
        F = np.column_stack([-np.array(self.accuracy), np.array(self.latency)])
        _, ranks = NonDominatedSorting().do(F, return_rank=True)
        self.ranks = ranks + 1
        return self.ranks

    def to_json(self, space: SearchSpace) -> list[dict]:
        ranks = self.ranks if self.ranks is not None else self.rank()
        return [
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

    @classmethod
    def from_json(cls, rows: list[dict]) -> Archive:
        a = cls()
        for r in rows:
            a.add([r["vector"]], [r["accuracy"]], [r["latency_ms"]], [r["macs"]], [r["params"]], r["generation"])
        a.ranks = np.array([r["rank"] for r in rows]) if rows else np.zeros(0, dtype=int)
        return a


class ArchProblem(Problem):
    """pymoo problem: minimize (-accuracy, latency) subject to the constraints; latency before accuracy."""

    def __init__(
        self,
        space: SearchSpace,
        accuracy: AccuracyFn,
        latency: Callable[[np.ndarray], np.ndarray],
        constraints: Constraints,
    ):
        self.space = space
        self.accuracy_fn = accuracy
        self.latency_fn = latency
        self.cons = constraints
        self.costs = CostTable(space)
        self.archive = Archive()
        self.seen: dict[bytes, float] = {}  # every evaluated architecture's accuracy (each is evaluated once)
        self.generation = 0
        self.accuracy_calls = 0
        counts = np.array([len(c) for c in space.candidates])
        n_constr = 2 + (constraints.max_macs is not None) + (constraints.max_params is not None)
        super().__init__(
            n_var=space.num_layers,
            n_obj=2,
            n_ieq_constr=n_constr,
            xl=np.zeros(len(counts)),
            xu=counts - 1.0,
            vtype=float,
        )

    def violations(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(G [n, n_constr] with G <= 0 feasible, latency, MACs, params) — all cheap."""
        lat = self.latency_fn(vecs)
        macs, params = self.costs(vecs)
        c = self.cons
        cols = [
            (c.lat_min - lat) if c.lat_min is not None else np.full(len(lat), -1.0),
            (lat - c.lat_max) if c.lat_max is not None else np.full(len(lat), -1.0),
        ]
        if c.max_macs is not None:
            cols.append((macs - c.max_macs) / 1e6)
        if c.max_params is not None:
            cols.append((params - c.max_params) / 1e6)
        return np.column_stack(cols), lat, macs, params

    def feasible(self, vecs: np.ndarray) -> np.ndarray:
        """Boolean mask of rows inside every constraint."""
        return (self.violations(np.atleast_2d(vecs))[0] <= 0).all(axis=1)

    def _evaluate(self, X, out, *args, **kwargs):
        vecs = np.around(X).astype(np.int64)
        G, lat, macs, params = self.violations(vecs)
        ok = (G <= 0).all(axis=1)
        acc = np.zeros(len(vecs))
        keys = [v.tobytes() for v in vecs]
        new = [i for i in np.flatnonzero(ok) if keys[i] not in self.seen]
        new = list(dict(zip((keys[i] for i in new), new)).values())  # once per architecture in this batch
        if new:
            scores = self.accuracy_fn([from_vector(self.space, vecs[i]) for i in new])
            self.accuracy_calls += len(new)
            self.archive.add(vecs[new], scores, lat[new], macs[new], params[new], self.generation)
            self.seen.update((keys[i], float(a)) for i, a in zip(new, scores))
        for i in np.flatnonzero(ok):
            acc[i] = self.seen[keys[i]]
        out["F"] = np.column_stack([-acc, lat])
        out["G"] = G
        self.generation += 1


class FeasibleSampling(Sampling):
    """Initial population drawn uniformly per layer, keeping only feasible architectures (bounded tries)."""

    def __init__(self, max_draws: int = 200_000):
        super().__init__()
        self.max_draws = max_draws

    def _do(self, problem: ArchProblem, n_samples, *args, random_state=None, **kwargs):
        rng = random_state if random_state is not None else np.random.default_rng()
        counts = problem.xu.astype(int) + 1
        found: list[np.ndarray] = []
        seen = set()
        drawn = 0
        while len(found) < n_samples and drawn < self.max_draws:
            batch = (rng.random((4096, len(counts))) * counts).astype(np.int64)
            drawn += len(batch)
            for v in batch[problem.feasible(batch)]:
                key = v.tobytes()
                if key not in seen:
                    seen.add(key)
                    found.append(v)
                    if len(found) == n_samples:
                        break
        if not found:
            raise HnasError(
                f"no architecture of the space meets the constraints in {drawn} random draws: "
                "widen the latency band (--lat) or check the LUT"
            )
        return np.array(found, dtype=float)


class ConstrainedMating(Mating):
    """Crossover + mutation whose infeasible (or already evaluated) offspring are discarded; the infill loop
    regenerates them, at most `n_max_iterations` times per generation."""

    def _do(self, problem: ArchProblem, pop, n_offsprings, parents=None, random_state=None, **kwargs):
        off = super()._do(problem, pop, n_offsprings, parents=parents, random_state=random_state, **kwargs)
        X = np.around(off.get("X")).astype(np.int64)
        X = np.clip(X, 0, problem.xu.astype(int))
        off.set("X", X.astype(float))
        fresh = np.array([v.tobytes() not in problem.seen for v in X], dtype=bool)
        return off[problem.feasible(X) & fresh] if len(X) else off


@dataclass
class SearchResult:
    """A finished search: the archive (ranked), the final population, and bookkeeping."""

    archive: Archive
    population: np.ndarray
    accuracy_calls: int
    generations: int


def ces(
    space: SearchSpace,
    accuracy: AccuracyFn,
    latency: Callable[[np.ndarray], np.ndarray],
    constraints: Constraints,
    pop_size: int = 64,
    generations: int = 40,
    seed: int = 0,
    on_generation: Callable[[int, ArchProblem], None] | None = None,
    max_retries: int = 100,
) -> SearchResult:
    """Run CES; every evaluated architecture is in the returned archive with its nondomination rank."""
    problem = ArchProblem(space, accuracy, latency, constraints)
    mating = ConstrainedMating(
        selection=TournamentSelection(func_comp=binary_tournament),
        crossover=TwoPointCrossover(),
        mutation=PolynomialMutation(prob=1.0, eta=3.0, vtype=float),
        repair=RoundingRepair(),
        eliminate_duplicates=DefaultDuplicateElimination(),
        n_max_iterations=max_retries,
    )
    algo = NSGA2(
        pop_size=pop_size,
        sampling=FeasibleSampling(),
        mating=mating,
        eliminate_duplicates=True,
        repair=RoundingRepair(),
    )
    algo.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    gen = 0
    while algo.has_next():
        algo.next()
        gen += 1
        if on_generation is not None:
            on_generation(gen, problem)
    problem.archive.rank()
    pop = np.around(algo.pop.get("X")).astype(np.int64)
    return SearchResult(problem.archive, pop, problem.accuracy_calls, gen)
