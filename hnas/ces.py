"""Constrained Evolutionary Search (CES, paper §3.2): NSGA-II on pymoo with latency-feasible offspring only.

The problem is a pymoo `Problem` over the layer-wise space (variable j indexes layer j's current candidates),
with objectives (-accuracy, latency) and constraints: latency inside the band (optionally MACs and
params, and, for a fleet, every other latency table's band: `TableBand`; the first table's latency is the
objective, the others are constraints only).
Cheap objectives come first: latency (LUT), MACs and params are computed for every candidate, and
accuracy — the expensive one — only for candidates that satisfy every constraint. Crossover and mutation
offspring that break a constraint are discarded and regenerated (bounded retries), the initial population is
feasible, duplicates are eliminated, and every evaluated architecture stays in an archive that is ranked by
nondomination at the end (rank 1 = Pareto front), so nothing is dropped for poor accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2, binary_tournament
from pymoo.core.duplicate import DuplicateElimination
from pymoo.core.mating import Mating
from pymoo.core.mutation import Mutation
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.repair import Repair
from pymoo.core.sampling import Sampling
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.selection.tournament import TournamentSelection
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hnas.core.additive import METHOD, LatencyDistribution, LayerTable, fmt_share, rarest
from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.ledger import AccuracyFn, Ledger, SearchResult
from hnas.spec.space import SearchSpace
from hnas.spec.vectors import ENUMERABLE, ArchCodec, key

LatencyFn = Callable[[np.ndarray], np.ndarray]
PricedAccuracy = Callable[..., np.ndarray]  # (vectors, feasible mask, latency, MACs, params) -> accuracy: `Ledger`


def latency_parts(latency) -> tuple[LatencyFn, LatencyDistribution | None]:
    """A latency objective as (the function pricing [n, layers] vectors, its distribution over the space when the
    model is additive). `latency` is a plain function, or a model with `predict` (and, for a LUT predictor,
    `distribution()`: exact spans and in-band draws, `hnas.core.additive`)."""
    if callable(latency):
        return latency, None
    dist = latency.distribution() if hasattr(latency, "distribution") else None
    return latency.predict, dist


@dataclass(frozen=True)
class TableBand:
    """Another latency table's band: a constraint beside the objective's band, never an objective (one network for
    a fleet of devices or precisions). `latency`: as the objective's (`latency_parts`); `name`: how lines call it."""

    name: str
    latency: object
    band: Band


@dataclass
class Constraints:
    """Latency band (ms) and optional MACs / params caps; `more`: the bands of a fleet's other latency tables
    (`name`: how lines call the objective's table when there are several)."""

    band: Band = field(default_factory=Band)
    max_macs: float | None = None
    max_params: float | None = None
    more: tuple[TableBand, ...] = ()
    name: str = "the latency table"

    @classmethod
    def of_tables(
        cls, names: list[str], bands: list[Band], others: list, max_macs: float | None = None, max_params=None
    ) -> Constraints:
        """A fleet's constraints: every table's band, the objective's first (`band`; its latency model is the search's
        own), then each other table's on its latency model (`others`, in order: `more`), named as lines name them."""
        more = tuple(TableBand(n, m, b) for n, m, b in zip(names[1:], others, bands[1:], strict=True))
        return cls(bands[0], max_macs, max_params, more, names[0])


class CostTable:
    """MACs and params of every (layer, candidate) from the spec, vectorized like the latency predictor."""

    def __init__(self, space: SearchSpace):
        self.macs = LayerTable.of(space, lambda part: part.cost().macs)
        self.params = LayerTable.of(space, lambda part: part.cost().params)

    def __call__(self, vecs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.macs(vecs), self.params(vecs)


class ArchProblem(Problem):
    """pymoo problem: minimize (-accuracy, latency) subject to the constraints; latency before accuracy.

    The constraints are cheap (LUT latency, MACs, params) and computed for every row; the accuracy of the feasible
    rows comes from `accuracy` (a search's `Ledger.accuracy`, which pays for each architecture once and keeps what
    it paid for)."""

    def __init__(self, space: SearchSpace, latency, constraints: Constraints, accuracy: PricedAccuracy | None = None):
        self.space = space
        self.codec = ArchCodec(space)
        self.accuracy = accuracy  # None: a problem of the cheap figures only (nothing is evaluated)
        self.latency_fn, self.distribution = latency_parts(latency)
        self.cons = constraints
        self.more = [latency_parts(t.latency) for t in constraints.more]  # (function, distribution) per table
        self.costs = CostTable(space)
        caps = (constraints.max_macs is not None) + (constraints.max_params is not None)
        n_constr = 2 + caps + 2 * len(constraints.more)
        self._band_cols = [0, 1, *range(2 + caps, n_constr)]  # G's latency-band columns, every table's
        super().__init__(
            n_var=space.num_layers,
            n_obj=2,
            n_ieq_constr=n_constr,
            xl=np.zeros(self.codec.layers),
            xu=self.codec.counts - 1.0,
            vtype=float,
        )

    def violations(self, vecs: np.ndarray) -> Priced:
        """G [n, n_constr] (G <= 0 feasible) and the figures it comes from, every table's latency priced once —
        all cheap."""
        lat = self.latency_fn(vecs)
        more = self.more_latency(vecs)
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
        for t, other in zip(c.more, more.T, strict=True):  # after the caps: one table is as ever
            cols.append((t.band.lo - other) if t.band.lo is not None else np.full(len(lat), -1.0))
            cols.append((other - t.band.hi) if t.band.hi is not None else np.full(len(lat), -1.0))
        return Priced(np.column_stack(cols), lat, macs, params, more)

    def more_latency(self, vecs: np.ndarray) -> np.ndarray:
        """[n, other tables] latency (ms) of each row on each of the fleet's other tables (cheap)."""
        vecs = np.atleast_2d(vecs)
        return np.column_stack([np.asarray(fn(vecs), dtype=float) for fn, _ in self.more] or [np.zeros((len(vecs), 0))])

    def feasible(self, vecs: np.ndarray) -> np.ndarray:
        """Boolean mask of rows inside every constraint."""
        return (self.violations(np.atleast_2d(vecs))[0] <= 0).all(axis=1)

    def feasible_band(self, vecs: np.ndarray) -> np.ndarray:
        """Boolean mask of rows inside every table's latency band."""
        return (self.violations(np.atleast_2d(vecs))[0][:, self._band_cols] <= 0).all(axis=1)

    def banded(self) -> list[tuple[str, LatencyDistribution, Band]]:
        """(name, distribution, band) of every table with an additive model and a band that is not open, the
        objective's first."""
        tables = [(self.cons.name, self.distribution, self.cons.band)]
        tables += [(t.name, d, t.band) for t, (_, d) in zip(self.cons.more, self.more, strict=True)]
        return [(n, d, b) for n, d, b in tables if d is not None and not b.is_open]

    @property
    def draw_from(self) -> tuple[LatencyDistribution, Band] | None:
        """The distribution and band that in-band draws come from: the table whose band holds the smallest share of
        the space (the only one with a single table; the others' bands are then checked on what is drawn)."""
        if not hasattr(self, "_draw_from"):
            found = rarest(self.banded())
            self._draw_from = None if found is None else found[1:]
        return self._draw_from

    @property
    def n_feasible(self) -> int | None:
        """How many architectures satisfy the constraints, counted once for enumerable spaces (else None)."""
        if not hasattr(self, "_n_feasible"):
            small = self.codec.size <= ENUMERABLE
            self._n_feasible = int(self.feasible(self.codec.enumerate()).sum()) if small else None
        return self._n_feasible

    def _evaluate(self, X, out, *args, **kwargs):
        vecs = np.asarray(X).astype(np.int64)  # rows repaired to candidate indices (`IndexRepair`)
        p = self.violations(vecs)
        more = {"more": p.more} if self.more else {}  # a fleet's archive keeps every table's
        acc = self.accuracy(vecs, (p.G <= 0).all(axis=1), p.lat, p.macs, p.params, **more)
        out["F"] = np.column_stack([-acc, p.lat])
        out["G"] = p.G


class Priced(NamedTuple):
    """What `ArchProblem.violations` prices: G [n, n_constr] (G <= 0 feasible), the first table's latency (ms), MACs,
    params, and [n, other tables] latency on a fleet's other tables."""

    G: np.ndarray
    lat: np.ndarray
    macs: np.ndarray
    params: np.ndarray
    more: np.ndarray


class IndexRepair(Repair):
    """Rounds and clips a search's variables to valid candidate indices."""

    def __init__(self, codec: ArchCodec):
        super().__init__()
        self.codec = codec

    def _do(self, problem, X, **kwargs):
        return self.indices(X)

    def indices(self, X) -> np.ndarray:
        """The rows of X as candidate-index vectors."""
        return self.codec.valid(X)


class FreshElimination(DuplicateElimination):
    """Rows that are duplicates for a search: the same as an earlier row, as a row of the other populations, or as
    an architecture the ledger has already paid for."""

    def __init__(self, ledger: Ledger):
        super().__init__()
        self.ledger = ledger

    def _do(self, pop, other, is_duplicate):
        taken = set() if other is None else {key(v) for v in np.asarray(other.get("X")).astype(np.int64)}
        fresh = self.fresh(np.asarray(pop.get("X")).astype(np.int64), taken)
        is_duplicate[~fresh] = True
        return is_duplicate

    def fresh(self, vecs: np.ndarray, taken: set[bytes]) -> np.ndarray:
        """Mask of the rows of `vecs` that are new: not paid for, not in `taken` and not an earlier row; the new
        ones join `taken`."""
        mask = np.zeros(len(vecs), dtype=bool)
        for i, v in enumerate(vecs):
            k = key(v)
            if k not in taken and k not in self.ledger.seen:
                taken.add(k)
                mask[i] = True
        return mask


def require_feasible(space: SearchSpace, latency, constraints: Constraints, draws: int = 100_000) -> str:
    """Refuse, before anything is trained or written, a search whose constraints no architecture of `space` meets;
    returns one line on the band (the space's exact latency span and the share of it inside the band).

    With an additive latency model (a LUT predictor) the span is exact and the band's share is bounded by dynamic
    programming (`hnas.core.additive`); the MACs and params caps are checked exactly against the space's fewest MACs and
    params, then jointly on `draws` architectures drawn uniformly from those inside the band. Any other model is
    checked on `draws` random architectures. A fleet (`constraints.more`) has each table's band checked alone the same
    way, then all bands together on `draws` architectures drawn uniformly from inside the rarest band (the joint
    share is that band's share times the drawn share inside every band: an estimate)."""
    problem = ArchProblem(space, latency, constraints)
    band, dist = constraints.band, problem.distribution
    fleet = bool(constraints.more)
    line = ""
    if dist is not None:
        line = _require_band(space, problem.latency_fn, dist, band, constraints.name if fleet else None)
    lines = [f"{constraints.name}: {line}" if fleet and line else line]
    for t, (fn, d) in zip(constraints.more, problem.more, strict=True):
        if d is not None:
            lines.append(f"{t.name}: {_require_band(space, fn, d, t.band, t.name)}")
    _require_caps(space, problem.costs, constraints)
    rng = np.random.default_rng(0)
    fresh = FreshFeasible(problem, Ledger(space, _unpriced), rng)
    vecs = fresh.random(draws)
    G, lat, macs, params, _ = problem.violations(vecs) if len(vecs) else (np.zeros((0, 1)),) * 5
    inside = problem.feasible_band(vecs) if len(vecs) else np.zeros(0, dtype=bool)
    if fleet:
        shares = _fleet_shares(problem, fresh, inside, draws)
        if not inside.any():
            raise HnasError(
                f"no architecture of space {space.name!r} meets all bands: {shares}; widen or move a --lat (or drop a "
                "--lut)"
            )
        lines.append(shares)
    if len(vecs) and (G <= 0).all(axis=1).any():
        return "; ".join(x for x in lines if x)
    caps = constraints.max_macs is not None or constraints.max_params is not None
    if dist is None and not fleet:
        what = " and the MACs/params caps" if caps else ""
        raise HnasError(
            f"no architecture of space {space.name!r} meets the latency band {band} ms{what}: {draws:,} random "
            f"architectures span {lat.min():.2f}-{lat.max():.2f} ms on this latency table; widen --lat"
        )
    if not inside.any():
        raise HnasError(
            f"no architecture of space {space.name!r} was found inside the latency band {band} ms in {draws:,} draws "
            f"from the architectures within the grid's slack of it ({line}): widen --lat"
        )
    where = "every latency band" if fleet else f"the latency band {band} ms"
    raise HnasError(
        f"none of {int(inside.sum()):,} architectures drawn uniformly from those inside {where} "
        f"meets the MACs/params caps (in the band they need at least {macs[inside].min():.4g} MACs and "
        f"{params[inside].min():.4g} params): raise --max-macs / --max-params or move --lat"
    )


def _fleet_shares(problem: ArchProblem, fresh: FreshFeasible, inside: np.ndarray, draws: int) -> str:
    """`A alone admits about N %, B alone M %, both about J %`: each table's share of the space inside its band
    (exact bounds for an additive model, else from `draws` uniform draws) and the joint share, estimated from the
    draws `inside` every band among those drawn from inside the rarest band (`ArchProblem.draw_from`)."""
    c = problem.cons
    tables = [(c.name, problem.latency_fn, problem.distribution, c.band)]
    tables += [(t.name, fn, d, t.band) for t, (fn, d) in zip(c.more, problem.more, strict=True)]
    uniform = None
    parts = []
    for i, (name, fn, d, band) in enumerate(tables):
        if d is not None:
            share = fmt_share(*d.share(band))
        else:
            if uniform is None:
                uniform = problem.codec.sample(np.random.default_rng(1), draws)
            share = fmt_share(*(float(band.contains(fn(uniform)).mean()),) * 2) + f" of {draws:,} random draws"
        parts.append(f"{name} alone admits about {share}" if i == 0 else f"{name} alone {share}")
    found = problem.draw_from
    every = "both" if len(tables) == 2 else f"all {len(tables)}"
    if not inside.any():
        source = "random architectures" if found is None else "architectures drawn from inside the rarest band"
        return ", ".join(parts) + f", {every} none (in {draws:,} {source})"
    base = 1.0 if found is None else found[0].share(found[1])[1]
    joint = base * float(inside.mean())
    return ", ".join(parts) + f", {every} about {fmt_share(joint, joint)} (estimated from {len(inside):,} draws)"


def _require_band(
    space: SearchSpace, latency_fn, dist: LatencyDistribution, band: Band, name: str | None = None
) -> str:
    """One line on `band` against the space's exact latency span; an error when no architecture can lie in it
    (`name`: the table's, in a fleet)."""
    fast, slow = dist.model.extremes()
    lo, hi = (float(x) for x in latency_fn(np.stack([fast, slow])))
    lower, upper = dist.share(band)
    span = f"the space's architectures span {lo:.2f}-{hi:.2f} ms exactly"
    if band.is_open:
        return span
    outside = (band.hi is not None and band.hi < lo) or (band.lo is not None and band.lo > hi)
    if outside or upper <= 0:
        q1, q50 = dist.quantile(0.01), dist.quantile(0.5)
        table = "this latency table" if name is None else name
        raise HnasError(
            f"no architecture of space {space.name!r} has a latency inside {band} ms on {table}: {span} "
            f"(1 % of them are faster than {q1:.2f} ms, half faster than {q50:.2f} ms; {METHOD}); widen or move --lat"
        )
    return f"{span}; {fmt_share(lower, upper)} of them lie inside {band} ms ({METHOD})"


def _require_caps(space: SearchSpace, costs: CostTable, constraints: Constraints) -> None:
    """Refuse MACs / params caps below the space's fewest MACs / params (exact: per-layer minima)."""
    for cap, table, flag, what in (
        (constraints.max_macs, costs.macs, "--max-macs", "MACs"),
        (constraints.max_params, costs.params, "--max-params", "parameters"),
    ):
        if cap is None:
            continue
        least = table.least()
        if least > cap:
            raise HnasError(
                f"{flag} {cap:g}: every architecture of space {space.name!r} has at least {least:,.0f} {what} (exact: "
                f"the per-layer minima); raise {flag}"
            )


def _unpriced(archs):
    raise AssertionError("the feasibility check prices no accuracy")


class FreshFeasible:
    """Architectures worth an accuracy evaluation: inside every constraint, never evaluated, distinct.

    The search's budget is spent on new architectures only. When crossover and mutation stop producing them
    (a converged population breeds what it has already seen), `fill` escalates instead of giving up: mutation
    of good parents in 2, 3, ... layers at once, then feasible random immigrants. When even those find none,
    the feasible space is exhausted, which is certain for an enumerable space (its feasible architectures are
    counted exactly) and reported as "none found in N draws" otherwise. Rows are made candidate indices by the
    search's repair and told new by its duplicate elimination (the operators handed to pymoo).
    """

    def __init__(
        self,
        problem: ArchProblem,
        ledger: Ledger,
        rng: np.random.Generator,
        repair: IndexRepair | None = None,
        dedupe: FreshElimination | None = None,
        max_draws: int = 200_000,
    ):
        self.problem = problem
        self.ledger = ledger
        self.rng = rng
        self.codec = problem.codec
        self.repair = repair or IndexRepair(self.codec)
        self.dedupe = dedupe or FreshElimination(ledger)
        self.max_draws = max_draws

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
        return n is not None and len(self.ledger.seen) + len(taken) >= n

    def accept(self, X: np.ndarray, taken: set[bytes]) -> list[np.ndarray]:
        """The rows of X that are feasible, not yet evaluated and not in `taken` (which they join)."""
        X = self.repair.indices(X)
        if not len(X):
            return []
        X = X[self.problem.feasible(X)]
        return list(X[self.dedupe.fresh(X, taken)])

    def random(self, n: int) -> np.ndarray:
        """`n` architectures drawn uniformly per layer; under a latency band and an additive latency model, drawn
        uniformly from the architectures inside the band (`LatencyDistribution.sample`: a narrow band of a huge
        space is reached at once, not by luck; for a fleet, inside the rarest table's band, `ArchProblem.draw_from`)."""
        found = self.problem.draw_from
        if found is not None:
            dist, band = found
            return dist.sample(band, n, self.rng)
        return self.codec.sample(self.rng, n)

    def fill(self, got: list[np.ndarray], n: int, parents: np.ndarray, taken: set[bytes]) -> list[np.ndarray]:
        """Top `got` up to `n`: stronger mutation of `parents` (best first), then feasible random immigrants."""
        parents = np.atleast_2d(np.asarray(parents, dtype=np.int64))
        for strength in range(2, len(self.codec.free) + 1):
            if len(got) >= n or not len(parents):
                break
            for _ in range(3):
                pick = parents[self.rng.integers(len(parents), size=4 * (n - len(got)))]
                got += self.accept(self.codec.mutate(self.rng, pick, strength), taken)[: n - len(got)]
                if len(got) >= n:
                    break
        drawn = 0
        while len(got) < n and drawn < self.max_draws and not self.exhausted(taken):
            drawn += 4096
            got += self.accept(self.random(4096), taken)[: n - len(got)]
        return got

    def first(self, n: int, what: str) -> list[np.ndarray]:
        """The first `n` architectures of a search, drawn uniformly (`fill` without parents); fewer only when the
        feasible space is exhausted (the ledger says why), none is an error naming `what` searched."""
        taken: set[bytes] = set()
        found = self.fill([], n, np.zeros((0, self.codec.layers), dtype=np.int64), taken)
        if len(found) < n:
            self.ledger.stop(self.why_short(taken))
        if not found:
            raise HnasError(what)
        return found


class FeasibleSampling(Sampling):
    """Initial population: distinct architectures drawn uniformly per layer, keeping only feasible ones."""

    def __init__(self, ledger: Ledger, repair: IndexRepair, dedupe: FreshElimination):
        super().__init__()
        self.ledger, self.repair, self.dedupe = ledger, repair, dedupe

    def _do(self, problem: ArchProblem, n_samples, *args, random_state=None, **kwargs):
        rng = random_state if random_state is not None else np.random.default_rng()
        fresh = FreshFeasible(problem, self.ledger, rng, self.repair, self.dedupe)
        found = fresh.first(
            n_samples,
            f"no architecture of the space meets the constraints in {fresh.max_draws} random draws: "
            "widen the latency band (--lat) or check the LUT",
        )
        return np.array(found, dtype=float)


class CategoricalMutation(Mutation):
    """Each free layer (one with a choice) takes another of its candidates with probability 1 / #free layers;
    an offspring that would come out unchanged gets one such change (an op index has no order: no polynomial
    steps)."""

    def _do(self, problem: ArchProblem, X, *args, random_state=None, **kwargs):
        codec = problem.codec
        X = codec.valid(X)
        if not len(codec.free):
            return X.astype(float)
        hit = random_state.random((len(X), len(codec.free))) < 1.0 / len(codec.free)
        none = ~hit.any(axis=1)
        hit[none, random_state.integers(len(codec.free), size=int(none.sum()))] = True
        rows, cols = np.nonzero(hit)
        codec.another(random_state, X, rows, codec.free[cols])
        return X.astype(float)


class AdditiveSurrogate:
    """A cheap accuracy model of the archive: accuracy ~ intercept + one effect per (layer, op), by ridge regression
    on one-hot ops of the layers that have a choice. It only decides which new candidates are evaluated first;
    it never stands in for an evaluation."""

    def __init__(self, codec: ArchCodec, ridge: float = 1.0):
        self.free = codec.free
        self.offsets = np.r_[0, np.cumsum(codec.counts[self.free])]
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
    `prescreen=1` is the paper's plain CES: every bred offspring is evaluated. The offspring are made candidate
    indices and told new by the repair and duplicate elimination it is given (`IndexRepair`, `FreshElimination`);
    the archive it learns from is the search's `Ledger`'s."""

    def __init__(self, ledger: Ledger, *args, prescreen: int = 1, explore: float = 0.125, exploit: float = 0.5, **kw):
        super().__init__(*args, **kw)
        self.ledger = ledger
        self.prescreen = max(1, int(prescreen))
        self.explore = explore
        self.exploit = exploit if self.prescreen > 1 else 0.0

    def do(self, problem: ArchProblem, pop, n_offsprings, random_state=None, **kwargs):
        fresh = FreshFeasible(problem, self.ledger, random_state, self.repair, self.eliminate_duplicates)
        taken: set[bytes] = set()
        model = None
        if self.prescreen > 1:
            arch = self.ledger.archive
            model = AdditiveSurrogate(problem.codec).fit(np.array(arch.vectors), np.array(arch.accuracy))
        near = self._neighbours(fresh, model, taken, int(round(self.exploit * n_offsprings)))
        n = n_offsprings - len(near)
        want = n * self.prescreen
        bred: list[np.ndarray] = []
        for _ in range(self.n_max_iterations):
            if len(bred) >= want:
                break
            off = self._do(problem, pop, want - len(bred), random_state=random_state, **kwargs)
            bred += fresh.accept(off.get("X"), taken)[: want - len(bred)]
        if len(bred) < n:
            parents = self.repair.indices(pop.get("X"))
            ranks = pop.get("rank")
            if ranks is not None and None not in list(ranks):  # best first: rank, then crowding
                parents = parents[np.lexsort((-pop.get("crowding").astype(float), ranks.astype(float)))]
            bred = fresh.fill(bred, n, parents, taken)
        if len(bred) < n:
            self.ledger.stop(fresh.why_short(taken))
        elif len(bred) > n:
            bred = self._screen(problem, model, np.array(bred), n, random_state)
        got = near + bred
        return Population.new(X=np.array(got, dtype=float).reshape(-1, problem.n_var))

    def _neighbours(self, fresh: FreshFeasible, model, taken: set[bytes], n: int) -> list:
        """Up to n new feasible single-layer neighbours of the n most accurate evaluated architectures, the highest
        predicted accuracy first."""
        if n <= 0 or model is None:
            return []
        cands = [fresh.codec.neighbours(v) for v in self.ledger.archive.best(n)]
        ok = np.array(fresh.accept(np.concatenate(cands), set(taken))) if cands else np.zeros((0, 0))
        if not len(ok):
            return []
        pick = ok[np.argsort(-model.predict(ok), kind="stable")[:n]]
        fresh.dedupe.fresh(pick, taken)
        return list(pick)

    def _screen(self, problem: ArchProblem, model, cand: np.ndarray, n: int, rng) -> list[np.ndarray]:
        """n of the bred candidates: an `explore` share at random, the rest by predicted nondomination rank among
        the archive (the more accurate first within a rank)."""
        n_random = int(round(self.explore * n))
        pick = list(rng.choice(len(cand), size=n_random, replace=False)) if n_random else []
        rest = np.setdiff1d(np.arange(len(cand)), pick)
        acc, lat = model.predict(cand[rest]), problem.latency_fn(cand[rest])
        arch = self.ledger.archive
        F = np.vstack([np.column_stack([-np.array(arch.accuracy), arch.latency]), np.column_stack([-acc, lat])])
        _, rank = NonDominatedSorting().do(F, return_rank=True)
        order = np.lexsort((-acc, rank[len(arch) :]))
        pick += list(rest[order[: n - len(pick)]])
        return [cand[i] for i in pick]


def ces(
    space: SearchSpace,
    accuracy: AccuracyFn,
    latency,
    constraints: Constraints,
    pop_size: int = 64,
    generations: int = 40,
    seed: int = 0,
    on_generation: Callable[[int, Ledger], None] | None = None,
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
    ledger = Ledger(space, accuracy, pop_size * generations)
    problem = ArchProblem(space, latency, constraints, ledger.accuracy)
    repair, dedupe = IndexRepair(problem.codec), FreshElimination(ledger)
    mating = ConstrainedMating(
        ledger,
        selection=TournamentSelection(func_comp=binary_tournament),
        crossover=TwoPointCrossover(),
        mutation=CategoricalMutation(),
        repair=repair,
        eliminate_duplicates=dedupe,
        n_max_iterations=max_retries,
        prescreen=prescreen,
    )
    sampling = FeasibleSampling(ledger, repair, dedupe)
    algo = NSGA2(pop_size=pop_size, sampling=sampling, mating=mating, repair=repair, eliminate_duplicates=dedupe)
    algo.setup(problem, termination=("n_gen", generations), seed=seed, verbose=False)
    gen = 0
    while algo.has_next():
        algo.next()
        gen += 1
        if on_generation is not None:
            on_generation(gen, ledger)
        if ledger.exhausted is not None:
            break
    return ledger.result(repair.indices(algo.pop.get("X")), gen)
