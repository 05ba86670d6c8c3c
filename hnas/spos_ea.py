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

from hnas.ces import ArchProblem, Constraints, FreshFeasible, SearchResult
from hnas.core.errors import HnasError
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
    problem = ArchProblem(space, accuracy, latency, constraints)
    rng = np.random.default_rng(seed)
    fresh = FreshFeasible(problem, rng)
    counts = fresh.counts

    def evaluate(vecs: list[np.ndarray]) -> None:
        if vecs:
            problem._evaluate(np.array(vecs, dtype=float), {})

    def top() -> np.ndarray:
        order = np.argsort(-np.array(problem.archive.accuracy), kind="stable")[:top_k]
        return np.array([problem.archive.vectors[i] for i in order])

    def mutate(parents: np.ndarray, n: int) -> np.ndarray:
        kids = parents[rng.integers(len(parents), size=n)].copy()
        hit = rng.random(kids.shape) < mutation_prob
        kids[hit] = (rng.random(int(hit.sum())) * np.broadcast_to(counts, kids.shape)[hit]).astype(np.int64)
        return kids

    def cross(parents: np.ndarray, n: int) -> np.ndarray:
        a = parents[rng.integers(len(parents), size=n)]
        b = parents[rng.integers(len(parents), size=n)]
        return np.where(rng.random(a.shape) < 0.5, a, b)

    first_taken: set[bytes] = set()
    first = fresh.fill([], population, np.zeros((0, len(counts)), dtype=np.int64), first_taken)
    if not first:
        raise HnasError("SPOS-EA: no feasible architecture found; widen the latency band")
    if len(first) < population:
        problem.exhausted_reason = fresh.why_short(first_taken)
    evaluate(first)
    gens = 1
    for _ in range(generations - 1 if problem.exhausted_reason is None else 0):
        parents = top()
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
            problem.exhausted_reason = short
            break
    problem.archive.rank()
    return SearchResult(
        problem.archive, top(), problem.accuracy_calls, gens, population * generations, problem.exhausted_reason
    )


def random_search(
    space: SearchSpace, accuracy, latency, constraints: Constraints, budget: int, seed: int = 0
) -> SearchResult:
    """The floor both searches must beat: `budget` distinct feasible architectures drawn uniformly per layer."""
    problem = ArchProblem(space, accuracy, latency, constraints)
    fresh = FreshFeasible(problem, np.random.default_rng(seed))
    taken: set[bytes] = set()
    vecs = fresh.fill([], budget, np.zeros((0, space.num_layers), dtype=np.int64), taken)
    if not vecs:
        raise HnasError("random search: no feasible architecture found; widen the latency band")
    if len(vecs) < budget:
        problem.exhausted_reason = fresh.why_short(taken)
    problem._evaluate(np.array(vecs, dtype=float), {})
    problem.archive.rank()
    return SearchResult(problem.archive, np.array(vecs), problem.accuracy_calls, 1, budget, problem.exhausted_reason)
