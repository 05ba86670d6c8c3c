"""The baselines for CES: SPOS's evolutionary search (Guo et al.) and uniform random sampling.

SPOS-EA keeps the top-k by accuracy each iteration and breeds them by mutation and crossover, discarding
candidates outside the constraints; unlike CES it keeps no Pareto front.

It spends its budget exactly as CES does (`population x generations` accuracy evaluations, fewer only when the
feasible space is exhausted): children that are infeasible, already evaluated, or produced twice (the
mutation and crossover lists may overlap) are replaced through the same `FreshFeasible` escalation, so the
two searches are compared at equal cost.
"""

from __future__ import annotations

import numpy as np

from hnas.ces import ArchProblem, Constraints, FreshFeasible
from hnas.ledger import Ledger, SearchResult
from hnas.spec.space import SearchSpace


def spos_ea(
    space: SearchSpace,
    accuracy,
    latency,
    constraints: Constraints,
    population: int = 64,
    generations: int = 40,
    top_k: int = 10,
    mutation_prob: float = 0.1,
    seed: int = 0,
    max_tries: int = 10,
) -> SearchResult:
    """Run SPOS-EA; the result's `population` holds the final top-k vectors (best first)."""
    ledger = Ledger(space, accuracy, population * generations)
    problem = ArchProblem(space, latency, constraints, ledger.accuracy)
    rng = np.random.default_rng(seed)
    fresh = FreshFeasible(problem, ledger, rng)
    codec = problem.codec

    def evaluate(vecs: list[np.ndarray]) -> None:
        if vecs:
            problem.evaluate(np.array(vecs, dtype=float))

    def mutate(parents: np.ndarray, n: int) -> np.ndarray:
        kids = parents[rng.integers(len(parents), size=n)].copy()
        codec.redraw(rng, kids, rng.random(kids.shape) < mutation_prob)
        return kids

    def cross(parents: np.ndarray, n: int) -> np.ndarray:
        a = parents[rng.integers(len(parents), size=n)]
        b = parents[rng.integers(len(parents), size=n)]
        return np.where(rng.random(a.shape) < 0.5, a, b)

    evaluate(fresh.first(population, "SPOS-EA: no feasible architecture found; widen the latency band"))
    gens = 1
    for _ in range(generations - 1 if ledger.exhausted is None else 0):
        parents = ledger.archive.best(top_k)
        taken: set[bytes] = set()
        n_mut = population // 2
        kids: list[np.ndarray] = []
        for _ in range(max_tries):
            if len(kids) >= n_mut:
                break
            kids += fresh.accept(mutate(parents, 4 * n_mut), taken)[: n_mut - len(kids)]
        for _ in range(max_tries):
            if len(kids) >= population:
                break
            kids += fresh.accept(cross(parents, 4 * population), taken)[: population - len(kids)]
        kids = fresh.fill(kids, population, parents, taken)
        short = fresh.why_short(taken) if len(kids) < population else None
        evaluate(kids)
        gens += 1
        if short is not None:
            ledger.stop(short)
            break
    return ledger.result(ledger.archive.best(top_k), gens)


def random_search(
    space: SearchSpace, accuracy, latency, constraints: Constraints, budget: int, seed: int = 0
) -> SearchResult:
    """The floor both searches must beat: `budget` distinct feasible architectures drawn uniformly per layer."""
    ledger = Ledger(space, accuracy, budget)
    problem = ArchProblem(space, latency, constraints, ledger.accuracy)
    fresh = FreshFeasible(problem, ledger, np.random.default_rng(seed))
    vecs = fresh.first(budget, "random search: no feasible architecture found; widen the latency band")
    problem.evaluate(np.array(vecs, dtype=float))
    return ledger.result(np.array(vecs), 1)
