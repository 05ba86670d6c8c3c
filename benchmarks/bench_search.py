"""Search figures with a table-driven accuracy source (runs in seconds, no supernet):

- CES against SPOS's evolutionary search (paper Fig. 7): the operation distribution of the last layer and of
  every layer, estimated over 5 seeds, its mean per-op variance, and how many ops fall under P_th;
- the search overhead excluding accuracy evaluation, for population 64 x 40 generations (target <= 2 s).

    .venv/bin/python benchmarks/bench_search.py [--space basic] [--lut lut/local-amd-epyc.json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hnas.ces import Constraints, ces  # noqa: E402
from hnas.prune import estimate, select_by_rank  # noqa: E402
from hnas.space import load_space  # noqa: E402
from hnas.spos_ea import spos_ea  # noqa: E402
from latency.lut import Lut  # noqa: E402
from latency.predict import LatencyPredictor  # noqa: E402


class TableAccuracy:
    """Known accuracies: bigger kernels and expansions help, each (layer, op) has its own fixed offset."""

    def __init__(self, space, seed=0):
        rng = np.random.default_rng(seed)
        w = max(len(c) for c in space.candidates)
        self.t = np.zeros((space.num_layers, w))
        for j, layer in enumerate(space.layers):
            for i, op in enumerate(layer.candidates):
                size = 0.0 if op.is_identity else 0.002 * op.kernel + 0.003 * op.expand
                self.t[j, i] = size + rng.normal(0, 0.004)
        self.rows = np.arange(space.num_layers)
        self.seconds = 0.0

    def __call__(self, archs):
        t0 = time.perf_counter()
        out = 0.5 + np.array([self.t[self.rows, a.to_vector()].sum() for a in archs])
        self.seconds += time.perf_counter() - t0
        return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="basic")
    p.add_argument("--lut", default=str(Path(__file__).resolve().parents[1] / "lut" / "local-amd-epyc.json"))
    p.add_argument("--seeds", type=int, default=5)
    a = p.parse_args()
    space = load_space(a.space)
    pred = LatencyPredictor(Lut.load(a.lut), space, a.lut)
    counts = np.array([len(c) for c in space.candidates])
    sample = pred.predict((np.random.default_rng(0).random((20000, len(counts))) * counts).astype(np.int64))
    lo, hi = np.percentile(sample, [45, 65])
    band = Constraints(lo, hi)
    print(f"{a.space} on {a.lut}: latency band [{lo:.2f}, {hi:.2f}] ms (45th-65th percentile of random archs)")
    dists = {"CES": [], "SPOS-EA": []}
    overhead = []
    for seed in range(a.seeds):
        acc = TableAccuracy(space)
        t0 = time.perf_counter()
        res = ces(space, acc, pred.predict, band, 64, 40, seed=seed)
        overhead.append(time.perf_counter() - t0 - acc.seconds)
        sel = select_by_rank(np.array(res.archive.vectors), res.archive.ranks, 10)
        dists["CES"].append(estimate(space, sel).p)
        archive, top = spos_ea(space, TableAccuracy(space), pred.predict, band, 64, 40, seed=seed)
        dists["SPOS-EA"].append(estimate(space, top).p)
    last = space.layers[-1]
    print(f"\nlast layer ({last.label}) operation probability, mean +- std over {a.seeds} seeds:")
    print(f"{'op':14s} " + " ".join(f"{n:>16s}" for n in dists))
    for i, op in enumerate(last.candidates):
        cells = []
        for n in dists:
            v = [d[-1][i] for d in dists[n]]
            cells.append(f"{np.mean(v):7.3f} +- {np.std(v):5.3f}")
        print(f"{op.name:14s} " + " ".join(f"{c:>16s}" for c in cells))
    for n, ds in dists.items():
        var = np.mean([np.var([d[j][i] for d in ds]) for j in range(len(counts)) for i in range(counts[j])])
        under = np.mean([sum((d[j] < 0.01).sum() for j in range(len(counts))) for d in ds])
        print(
            f"{n:8s}: mean per-op variance over all layers {var:.5f}; ops under P_th=1 % per run {under:.1f} "
            f"of {counts.sum()}"
        )
    print(
        f"\nCES overhead without accuracy evaluation, 64 x 40: median {statistics.median(overhead):.2f} s "
        f"of {[round(x, 2) for x in overhead]} (target <= 2 s)"
    )


if __name__ == "__main__":
    main()
