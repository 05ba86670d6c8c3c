"""SPOS's evolutionary search (Guo et al.), as the baseline for CES: top-k survival, mutation and crossover,
candidates outside the latency band discarded. Unlike CES it keeps only the top-k by accuracy each iteration.
"""

from __future__ import annotations

import numpy as np

from hnas.ces import Archive, ArchProblem, Constraints
from hnas.errors import HnasError
from hnas.space import SearchSpace


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
    max_tries: int = 10_000,
) -> tuple[Archive, np.ndarray]:
    """Returns (archive of every evaluated architecture, final top-k vectors)."""
    problem = ArchProblem(space, accuracy, latency, constraints)
    rng = np.random.default_rng(seed)
    counts = np.array([len(c) for c in space.candidates])
    seen: dict[bytes, float] = {}

    def evaluate(vecs: list[np.ndarray]) -> None:
        new = [v for v in vecs if v.tobytes() not in seen]
        if not new:
            return
        before = len(problem.archive)
        out = {}
        problem._evaluate(np.array(new, dtype=float), out)
        for i, v in enumerate(problem.archive.vectors[before:]):
            seen[v.tobytes()] = problem.archive.accuracy[before + i]

    def fill(make, n: int) -> list[np.ndarray]:
        got, tries = [], 0
        while len(got) < n and tries < max_tries:
            tries += 1
            v = make()
            if v.tobytes() in seen or any(np.array_equal(v, g) for g in got):
                continue
            if problem.feasible(v)[0]:
                got.append(v)
        return got

    pop = fill(lambda: (rng.random(len(counts)) * counts).astype(np.int64), population)
    if not pop:
        raise HnasError("SPOS-EA: no feasible architecture found; widen the latency band")
    evaluate(pop)
    for _ in range(generations - 1):
        ranked = sorted(seen.items(), key=lambda kv: -kv[1])[:top_k]
        top = [np.frombuffer(k, dtype=np.int64) for k, _ in ranked]

        def mutate(top=top):
            v = top[rng.integers(len(top))].copy()
            m = rng.random(len(counts)) < mutation_prob
            v[m] = (rng.random(m.sum()) * counts[m]).astype(np.int64)
            return v

        def cross(top=top):
            a, b = top[rng.integers(len(top))], top[rng.integers(len(top))]
            return np.where(rng.random(len(counts)) < 0.5, a, b)

        children = fill(mutate, population // 2) + fill(cross, population - population // 2)
        evaluate(children)
    problem.archive.rank()
    ranked = sorted(seen.items(), key=lambda kv: -kv[1])[:top_k]
    return problem.archive, np.array([np.frombuffer(k, dtype=np.int64) for k, _ in ranked])
