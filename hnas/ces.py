"""Constrained Evolutionary Search (CES, paper §3.2): NSGA-II on pymoo with latency-feasible offspring only.

The problem is a pymoo `Problem` over the layer-wise space (variable j indexes layer j's current candidates),
with objectives (-accuracy, latency) and constraints: latency inside the band (optionally MACs and
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
from pymoo.core.mating import Mating
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hnas.core.additive import METHOD, LatencyDistribution, fmt_share
from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.spec.arch import Architecture, from_vector
from hnas.spec.space import SearchSpace

AccuracyFn = Callable[[Sequence[Architecture]], np.ndarray]
LatencyFn = Callable[[np.ndarray], np.ndarray]


def latency_parts(latency) -> tuple[LatencyFn, LatencyDistribution | None]:
    """A latency objective as (the function pricing [n, layers] vectors, its distribution over the space when the
    model is additive). `latency` is a plain function, or a model with `predict` (and, for a LUT predictor,
    `distribution()`: exact spans and in-band draws, `hnas.core.additive`)."""
    if callable(latency):
        return latency, None
    dist = latency.distribution() if hasattr(latency, "distribution") else None
    return latency.predict, dist


@dataclass
class Constraints:
    """Latency band (ms) and optional MACs / params caps."""

    band: Band = field(default_factory=Band)
    max_macs: float | None = None
    max_params: float | None = None


class CostTable:
    """MACs and params of every (layer, candidate) from the spec, vectorized like the latency predictor."""

    def __init__(self, space: SearchSpace):
        width = max(len(c) for c in space.candidates)
        self.macs = np.zeros((space.num_layers, width))
        self.params = np.zeros((space.num_layers, width))
        self.fixed_macs = self.fixed_params = 0
        j = 0
        for slot in space.slots:
            costs = [part.cost() for part in slot.choices()]
            if slot.searchable:
                self.macs[j, : len(costs)] = [c.macs for c in costs]
                self.params[j, : len(costs)] = [c.params for c in costs]
                j += 1
            else:
                self.fixed_macs += costs[0].macs
                self.fixed_params += costs[0].params
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

    def __init__(self, space: SearchSpace, accuracy: AccuracyFn, latency, constraints: Constraints):
        self.space = space
        self.accuracy_fn = accuracy
        self.latency_fn, self.distribution = latency_parts(latency)
        self.cons = constraints
        self.costs = CostTable(space)
        self.archive = Archive()
        self.seen: dict[bytes, float] = {}  # every evaluated architecture's accuracy (each is evaluated once)
        self.generation = 0
        self.accuracy_calls = 0
        self.exhausted_reason: str | None = None  # set when a generation could not get its full offspring
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
            (c.band.lo - lat) if c.band.lo is not None else np.full(len(lat), -1.0),
            (lat - c.band.hi) if c.band.hi is not None else np.full(len(lat), -1.0),
        ]
        if c.max_macs is not None:
            cols.append((macs - c.max_macs) / 1e6)
        if c.max_params is not None:
            cols.append((params - c.max_params) / 1e6)
        return np.column_stack(cols), lat, macs, params

    def feasible(self, vecs: np.ndarray) -> np.ndarray:
        """Boolean mask of rows inside every constraint."""
        return (self.violations(np.atleast_2d(vecs))[0] <= 0).all(axis=1)

    def feasible_band(self, vecs: np.ndarray) -> np.ndarray:
        """Boolean mask of rows inside the latency band (the first two constraints)."""
        return (self.violations(np.atleast_2d(vecs))[0][:, :2] <= 0).all(axis=1)

    @property
    def n_feasible(self) -> int | None:
        """How many architectures satisfy the constraints, counted once for enumerable spaces (else None)."""
        from hnas.quality import ENUMERABLE, all_vectors

        if not hasattr(self, "_n_feasible"):
            small = self.space.size() <= ENUMERABLE
            self._n_feasible = int(self.feasible(all_vectors(self.space)).sum()) if small else None
        return self._n_feasible

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


def require_feasible(space: SearchSpace, latency, constraints: Constraints, draws: int = 100_000) -> str:
    """Refuse, before anything is trained or written, a search whose constraints no architecture of `space` meets;
    returns one line on the band (the space's exact latency span and the share of it inside the band).

    With an additive latency model (a LUT predictor) the span is exact and the band's share is bounded by dynamic
    programming (`hnas.core.additive`); the MACs and params caps are checked exactly against the space's fewest MACs and
    params, then jointly on `draws` architectures drawn uniformly from those inside the band. Any other model is
    checked on `draws` random architectures."""
    problem = ArchProblem(space, lambda archs: np.zeros(len(archs)), latency, constraints)
    band, dist = constraints.band, problem.distribution
    line = ""
    if dist is not None:
        line = _require_band(space, problem, dist, band)
    _require_caps(space, problem.costs, constraints)
    rng = np.random.default_rng(0)
    fresh = FreshFeasible(problem, rng)
    vecs = fresh.random(draws)
    G, lat, macs, params = problem.violations(vecs) if len(vecs) else (np.zeros((0, 1)),) * 4
    if len(vecs) and (G <= 0).all(axis=1).any():
        return line
    caps = constraints.max_macs is not None or constraints.max_params is not None
    if dist is None:
        what = " and the MACs/params caps" if caps else ""
        raise HnasError(
            f"no architecture of space {space.name!r} meets the latency band {band} ms{what}: {draws:,} random "
            f"architectures span {lat.min():.2f}-{lat.max():.2f} ms on this latency table; widen --lat"
        )
    inside = problem.feasible_band(vecs) if len(vecs) else np.zeros(0, dtype=bool)
    if not inside.any():
        raise HnasError(
            f"no architecture of space {space.name!r} was found inside the latency band {band} ms in {draws:,} draws "
            f"from the architectures within the grid's slack of it ({line}): widen --lat"
        )
    raise HnasError(
        f"none of {int(inside.sum()):,} architectures drawn uniformly from those inside the latency band {band} ms "
        f"meets the MACs/params caps (in the band they need at least {macs[inside].min():.4g} MACs and "
        f"{params[inside].min():.4g} params): raise --max-macs / --max-params or move --lat"
    )


def _require_band(space: SearchSpace, problem: ArchProblem, dist: LatencyDistribution, band: Band) -> str:
    """One line on `band` against the space's exact latency span; an error when no architecture can lie in it."""
    fast, slow = dist.model.extremes()
    lo, hi = (float(x) for x in problem.latency_fn(np.stack([fast, slow])))
    lower, upper = dist.share(band)
    span = f"the space's architectures span {lo:.2f}-{hi:.2f} ms exactly"
    if band.is_open:
        return span
    outside = (band.hi is not None and band.hi < lo) or (band.lo is not None and band.lo > hi)
    if outside or upper <= 0:
        q1, q50 = dist.quantile(0.01), dist.quantile(0.5)
        raise HnasError(
            f"no architecture of space {space.name!r} has a latency inside {band} ms on this latency table: {span} "
            f"(1 % of them are faster than {q1:.2f} ms, half faster than {q50:.2f} ms; {METHOD}); widen or move --lat"
        )
    return f"{span}; {fmt_share(lower, upper)} of them lie inside {band} ms ({METHOD})"


def _require_caps(space: SearchSpace, costs: CostTable, constraints: Constraints) -> None:
    """Refuse MACs / params caps below the space's fewest MACs / params (exact: per-layer minima)."""
    for cap, table, fixed, flag, what in (
        (constraints.max_macs, costs.macs, costs.fixed_macs, "--max-macs", "MACs"),
        (constraints.max_params, costs.params, costs.fixed_params, "--max-params", "parameters"),
    ):
        if cap is None:
            continue
        least = fixed + sum(float(table[j, : len(c)].min()) for j, c in enumerate(space.candidates))
        if least > cap:
            raise HnasError(
                f"{flag} {cap:g}: every architecture of space {space.name!r} has at least {least:,.0f} {what} (exact: "
                f"the per-layer minima); raise {flag}"
            )


class FreshFeasible:
    """Architectures worth an accuracy evaluation: inside every constraint, never evaluated, distinct.

    The search's budget is spent on new architectures only. When crossover and mutation stop producing them
    (a converged population breeds what it has already seen), `fill` escalates instead of giving up: mutation
    of good parents in 2, 3, ... layers at once, then feasible random immigrants. When even those find none,
    the feasible space is exhausted, which is certain for an enumerable space (its feasible architectures are
    counted exactly) and reported as "none found in N draws" otherwise.
    """

    def __init__(self, problem: ArchProblem, rng: np.random.Generator, max_draws: int = 200_000):
        self.problem = problem
        self.rng = rng
        self.max_draws = max_draws
        self.counts = problem.xu.astype(np.int64) + 1
        self.free = np.flatnonzero(self.counts > 1)  # layers with a choice; the others never change

    @property
    def n_feasible(self) -> int | None:
        """How many architectures satisfy the constraints, for spaces small enough to count (else None)."""
        return self.problem.n_feasible

    def why_short(self, taken: set[bytes] = frozenset()) -> str:
        """Why no more fresh feasible architectures were found (`taken`: the ones found but not yet evaluated)."""
        if self.exhausted(taken):
            return f"all {self.n_feasible} feasible architectures were evaluated (the feasible space is exhausted)"
        return (
            f"no new feasible architecture in {self.max_draws} random draws (the feasible space is exhausted "
            "or too rare: widen the constraints)"
        )

    def exhausted(self, taken: set[bytes] = frozenset()) -> bool:
        """Every feasible architecture is evaluated or in `taken` (known only for enumerable spaces)."""
        n = self.n_feasible
        return n is not None and len(self.problem.seen) + len(taken) >= n

    def accept(self, X: np.ndarray, taken: set[bytes]) -> list[np.ndarray]:
        """The rows of X that are feasible, not yet evaluated and not in `taken` (which they join)."""
        X = np.clip(np.around(np.atleast_2d(X)).astype(np.int64), 0, self.counts - 1)
        if not len(X):
            return []
        ok = self.problem.feasible(X)
        out = []
        for v in X[ok]:
            key = v.tobytes()
            if key not in taken and key not in self.problem.seen:
                taken.add(key)
                out.append(v)
        return out

    def mutate(self, parents: np.ndarray, strength: int) -> np.ndarray:
        """Each parent with `strength` distinct free layers set to another of their candidates."""
        X = np.array(parents, dtype=np.int64, copy=True)
        k = min(strength, len(self.free))
        for row in X:
            for j in self.rng.choice(self.free, size=k, replace=False):
                row[j] = (row[j] + 1 + self.rng.integers(self.counts[j] - 1)) % self.counts[j]
        return X

    def random(self, n: int) -> np.ndarray:
        """`n` architectures drawn uniformly per layer; under a latency band and an additive latency model, drawn
        uniformly from the architectures inside the band (`LatencyDistribution.sample`: a narrow band of a huge
        space is reached at once, not by luck)."""
        band, dist = self.problem.cons.band, self.problem.distribution
        if dist is not None and not band.is_open:
            return dist.sample(band, n, self.rng)
        return (self.rng.random((n, len(self.counts))) * self.counts).astype(np.int64)

    def fill(self, got: list[np.ndarray], n: int, parents: np.ndarray, taken: set[bytes]) -> list[np.ndarray]:
        """Top `got` up to `n`: stronger mutation of `parents` (best first), then feasible random immigrants."""
        parents = np.atleast_2d(np.asarray(parents, dtype=np.int64))
        for strength in range(2, len(self.free) + 1):
            if len(got) >= n or not len(parents):
                break
            for _ in range(3):
                pick = parents[self.rng.integers(len(parents), size=4 * (n - len(got)))]
                got += self.accept(self.mutate(pick, strength), taken)[: n - len(got)]
                if len(got) >= n:
                    break
        drawn = 0
        while len(got) < n and drawn < self.max_draws and not self.exhausted(taken):
            drawn += 4096
            got += self.accept(self.random(4096), taken)[: n - len(got)]
        return got


class FeasibleSampling(Sampling):
    """Initial population: distinct architectures drawn uniformly per layer, keeping only feasible ones."""

    def _do(self, problem: ArchProblem, n_samples, *args, random_state=None, **kwargs):
        fresh = FreshFeasible(problem, random_state if random_state is not None else np.random.default_rng())
        taken: set[bytes] = set()
        found = fresh.fill([], n_samples, np.zeros((0, problem.n_var)), taken)
        if len(found) < n_samples:
            problem.exhausted_reason = fresh.why_short(taken)
        if not found:
            raise HnasError(
                f"no architecture of the space meets the constraints in {fresh.max_draws} random draws: "
                "widen the latency band (--lat) or check the LUT"
            )
        return np.array(found, dtype=float)


class CategoricalMutation(Mutation):
    """Each free layer (one with a choice) takes another of its candidates with probability 1 / #free layers;
    an offspring that would come out unchanged gets one such change (an op index has no order: no polynomial
    steps)."""

    def _do(self, problem, X, *args, random_state=None, **kwargs):
        counts = problem.xu.astype(np.int64) + 1
        free = np.flatnonzero(counts > 1)
        X = np.around(X).astype(np.int64)
        if not len(free):
            return X.astype(float)
        hit = random_state.random((len(X), len(free))) < 1.0 / len(free)
        none = ~hit.any(axis=1)
        hit[none, random_state.integers(len(free), size=int(none.sum()))] = True
        for i, jj in zip(*np.nonzero(hit)):
            j = free[jj]
            X[i, j] = (X[i, j] + 1 + random_state.integers(counts[j] - 1)) % counts[j]
        return X.astype(float)


class AdditiveSurrogate:
    """A cheap accuracy model of the archive: accuracy ~ intercept + one effect per (layer, op), by ridge regression
    on one-hot ops of the layers that have a choice. It only decides which new candidates are evaluated first;
    it never stands in for an evaluation."""

    def __init__(self, counts: np.ndarray, ridge: float = 1.0):
        self.free = np.flatnonzero(counts > 1)
        self.offsets = np.r_[0, np.cumsum(counts[self.free])]
        self.ridge = ridge
        self.w = np.zeros(self.offsets[-1] + 1)

    def _features(self, X: np.ndarray) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=np.int64))
        F = np.zeros((len(X), self.offsets[-1] + 1))
        F[:, -1] = 1.0
        for k, j in enumerate(self.free):
            F[np.arange(len(X)), self.offsets[k] + X[:, j]] = 1.0
        return F

    def fit(self, X: np.ndarray, y: np.ndarray) -> AdditiveSurrogate:
        """Fit on architectures X (candidate indices) and their accuracies y."""
        F, y = self._features(X), np.asarray(y, dtype=float)
        reg = self.ridge * np.eye(F.shape[1])
        reg[-1, -1] = 0.0  # the intercept is not shrunk
        self.w = np.linalg.solve(F.T @ F + reg, F.T @ (y - y.mean()))
        self.w[-1] += y.mean()
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted accuracy of each row of X."""
        return self._features(X) @ self.w


class ConstrainedMating(Mating):
    """The offspring of one CES generation: feasible, never evaluated, distinct, and always the full number
    (`FreshFeasible.fill` escalates when the operators run dry; fewer only when the feasible space is exhausted).

    With `prescreen` > 1 the budget is spent where it pays most (the accuracy evaluation is the expensive
    objective; latency and an `AdditiveSurrogate` of the archive are free):
    - `exploit` of the n offspring are single-layer neighbours of the most accurate architectures evaluated so
      far, the most promising by the surrogate first (the top of the front is where accuracy is decided);
    - the others are bred as usual (tournament, crossover, mutation), `prescreen` x as many as needed, and the
      ones on the best predicted fronts of (surrogate accuracy, latency) among the archive are kept, except an
      `explore` share drawn at random from the bred ones, so that a wrong model cannot narrow the search.
    `prescreen=1` is the paper's plain CES: every bred offspring is evaluated."""

    def __init__(self, *args, prescreen: int = 1, explore: float = 0.125, exploit: float = 0.5, **kwargs):
        super().__init__(*args, **kwargs)
        self.prescreen = max(1, int(prescreen))
        self.explore = explore
        self.exploit = exploit if self.prescreen > 1 else 0.0

    def do(self, problem: ArchProblem, pop, n_offsprings, random_state=None, **kwargs):
        fresh = FreshFeasible(problem, random_state)
        taken: set[bytes] = set()
        model = None
        if self.prescreen > 1:
            arch = problem.archive
            model = AdditiveSurrogate(fresh.counts).fit(np.array(arch.vectors), np.array(arch.accuracy))
        near = self._neighbours(problem, fresh, model, taken, int(round(self.exploit * n_offsprings)))
        n = n_offsprings - len(near)
        want = n * self.prescreen
        bred: list[np.ndarray] = []
        for _ in range(self.n_max_iterations):
            if len(bred) >= want:
                break
            off = self._do(problem, pop, want - len(bred), random_state=random_state, **kwargs)
            bred += fresh.accept(off.get("X"), taken)[: want - len(bred)]
        if len(bred) < n:
            parents = np.around(pop.get("X")).astype(np.int64)
            ranks = pop.get("rank")
            if ranks is not None and None not in list(ranks):  # best first: rank, then crowding
                parents = parents[np.lexsort((-pop.get("crowding").astype(float), ranks.astype(float)))]
            bred = fresh.fill(bred, n, parents, taken)
        if len(bred) < n:
            problem.exhausted_reason = fresh.why_short(taken)
        elif len(bred) > n:
            bred = self._screen(problem, model, np.array(bred), n, random_state)
        got = near + bred
        return Population.new(X=np.array(got, dtype=float).reshape(-1, problem.n_var))

    @staticmethod
    def _neighbours(problem: ArchProblem, fresh: FreshFeasible, model, taken: set[bytes], n: int) -> list:
        """Up to n new feasible single-layer neighbours of the n most accurate evaluated architectures, the highest
        predicted accuracy first."""
        if n <= 0 or model is None:
            return []
        arch = problem.archive
        cands = []
        for i in np.argsort(-np.array(arch.accuracy), kind="stable")[:n]:
            v = arch.vectors[i]
            for j in fresh.free:
                w = np.repeat(v[None, :], fresh.counts[j] - 1, axis=0)
                w[:, j] = np.delete(np.arange(fresh.counts[j]), v[j])
                cands.append(w)
        ok = np.array(fresh.accept(np.concatenate(cands), set(taken))) if cands else np.zeros((0, 0))
        if not len(ok):
            return []
        pick = ok[np.argsort(-model.predict(ok), kind="stable")[:n]]
        taken.update(v.tobytes() for v in pick)
        return list(pick)

    def _screen(self, problem: ArchProblem, model, cand: np.ndarray, n: int, rng) -> list[np.ndarray]:
        """n of the bred candidates: an `explore` share at random, the rest by predicted nondomination rank among
        the archive (the more accurate first within a rank)."""
        n_random = int(round(self.explore * n))
        pick = list(rng.choice(len(cand), size=n_random, replace=False)) if n_random else []
        rest = np.setdiff1d(np.arange(len(cand)), pick)
        acc, lat = model.predict(cand[rest]), problem.latency_fn(cand[rest])
        arch = problem.archive
        F = np.vstack([np.column_stack([-np.array(arch.accuracy), arch.latency]), np.column_stack([-acc, lat])])
        _, rank = NonDominatedSorting().do(F, return_rank=True)
        order = np.lexsort((-acc, rank[len(arch) :]))
        pick += list(rest[order[: n - len(pick)]])
        return [cand[i] for i in pick]


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


def ces(
    space: SearchSpace,
    accuracy: AccuracyFn,
    latency,
    constraints: Constraints,
    pop_size: int = 64,
    generations: int = 40,
    seed: int = 0,
    on_generation: Callable[[int, ArchProblem], None] | None = None,
    max_retries: int = 20,
    prescreen: int = 8,
) -> SearchResult:
    """Run CES: exactly `pop_size x generations` accuracy evaluations (fewer only when every feasible
    architecture has been evaluated); every evaluated architecture is in the archive with its rank. `latency`: a
    function of [n, layers] vectors, or a model with `predict` (`latency_parts`).
    `prescreen` > 1 breeds that many candidates per offspring and evaluates the most promising
    (`ConstrainedMating`); 1 is the paper's plain CES."""
    if pop_size < 2 or generations < 1:
        raise HnasError(
            f"CES needs a population of at least 2 and at least 1 generation (got {pop_size} x {generations})"
        )
    problem = ArchProblem(space, accuracy, latency, constraints)
    mating = ConstrainedMating(
        selection=TournamentSelection(func_comp=binary_tournament),
        crossover=TwoPointCrossover(),
        mutation=CategoricalMutation(),
        n_max_iterations=max_retries,
        prescreen=prescreen,
    )
    algo = NSGA2(pop_size=pop_size, sampling=FeasibleSampling(), mating=mating, eliminate_duplicates=True)
    algo.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    gen = 0
    while algo.has_next():
        algo.next()
        gen += 1
        if on_generation is not None:
            on_generation(gen, problem)
        if problem.exhausted_reason is not None:
            break
    problem.archive.rank()
    pop = np.around(algo.pop.get("X")).astype(np.int64)
    return SearchResult(
        problem.archive, pop, problem.accuracy_calls, gen, pop_size * generations, problem.exhausted_reason
    )
