"""One network for two tables: how much of a space lies inside both bands, and what the second table costs a search.

.venv/bin/python benchmarks/bench_fleet.py [--lut A.json --lut B.json] [--space basic] [--rel 0.9:1.1] [--draws N]
    [--population 24 --generations 10 --repeats 3]

For each table (default: the shipped host float32 and int8 tables of one machine) the band is `--rel` times the
MobileNetV2-like reference's predicted latency on that table. Printed:
- each table's share of the space inside its own band (exact bounds: `hnas.core.additive`), and the share inside
  both, counted on `--draws` architectures drawn uniformly from the whole space (a plain Monte Carlo count, with its
  95 % interval) and as the search's feasibility check estimates it (drawn from inside the rarest band);
- the engine's overhead: CES (`hnas.ces.ces`, the demo's population x generations) on the first table alone and on
  both, with an accuracy objective that costs nothing (the architecture's MACs, scaled), wall time per search (median
  of `--repeats`); and that every architecture the two-table search evaluated lies inside both bands. A real search
  pays about 0.7 s per one-shot evaluation on this CPU (benchmarks/README.md), so the overhead is set beside that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

DEFAULT_LUTS = ("lut/local-amd-epyc-ce862bd4.json", "lut/local-amd-epyc-ce862bd4-int8.json")


def main(argv: list[str] | None = None) -> dict:
    from hnas.ces import Constraints, CostTable, TableBand, ces, require_feasible
    from hnas.core.band import Band
    from hnas.settings import table_names
    from hnas.spec.arch import parse_arch
    from hnas.spec.space import load_space
    from hnas.spec.vectors import ArchCodec
    from hnas.workflows.fleet import open_tables
    from hnas.workflows.search import REFERENCE, band_for

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lut", action="append", help="A table (twice: the objective's, then the other).")
    p.add_argument("--space", default="basic")
    p.add_argument("--rel", default="0.9:1.1", help="Each band, relative to the reference on its table.")
    p.add_argument("--draws", type=int, default=4_000_000)
    p.add_argument("--population", type=int, default=24)
    p.add_argument("--generations", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    luts = args.lut or list(DEFAULT_LUTS)
    if len(luts) != 2:
        p.error("give --lut twice (or not at all)")
    space = load_space(args.space)
    ref = parse_arch(REFERENCE, space)
    rel = Band.parse(args.rel, "--rel")
    a, b = open_tables(luts, space)
    names = table_names(luts)
    bands = [band_for(Band(), rel, ref, t) for t in (a, b)]
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    out: dict = {"tables": []}
    for name, t, band in zip(names, (a, b), bands, strict=True):
        lo, hi = t.distribution().share(band)
        out["tables"].append({"name": name, "precision": str(t.precision), "band_ms": [band.lo, band.hi]})
        print(
            f"{name} ({t.precision}): band {band} ms (x{args.rel} of the reference), alone "
            f"{lo * 100:.3g}-{hi * 100:.3g} %"
        )
    rng, codec = np.random.default_rng(0), ArchCodec(space)
    inside = 0
    for start in range(0, args.draws, 200_000):
        vecs = codec.sample(rng, min(200_000, args.draws - start))
        inside += int((bands[0].contains(a.predict(vecs)) & bands[1].contains(b.predict(vecs))).sum())
    share = inside / args.draws
    half = 1.96 * np.sqrt(max(share * (1 - share), 1e-12) / args.draws)
    print(f"inside both bands: {share * 100:.3g} % of {args.draws:,} uniform draws (95 % +- {half * 100:.2g} points)")
    fleet = Constraints(bands[0], more=(TableBand(names[1], b, bands[1]),), name=names[0])
    t0 = time.perf_counter()
    line = require_feasible(space, a, fleet)
    print(f"feasibility check ({time.perf_counter() - t0:.2f} s): {line.split('; ')[-1]}")
    out["both_share"] = share

    costs = CostTable(space)

    def accuracy(archs):  # free: MACs scaled to [0, 1) (the engine's cost is what is timed)
        macs, _ = costs(np.stack([x.to_vector() for x in archs]))
        return macs / 1e9

    single = Constraints(bands[0], name=names[0])
    times = {"one table": [], "two tables": []}
    last = None
    for _ in range(args.repeats):
        for label, cons in (("one table", single), ("two tables", fleet)):
            t0 = time.perf_counter()
            res = ces(space, accuracy, a, cons, args.population, args.generations, seed=0)
            times[label].append(time.perf_counter() - t0)
            if label == "two tables":
                last = res
    vecs = np.array(last.archive.vectors)
    ok = bands[0].contains(a.predict(vecs)).all() and bands[1].contains(b.predict(vecs)).all()
    budget = args.population * args.generations
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"CES {args.population} x {args.generations} with a free accuracy: one table {med['one table']:.2f} s, two "
        f"tables {med['two tables']:.2f} s (median of {args.repeats}; +{med['two tables'] - med['one table']:.2f} s, "
        f"{(med['two tables'] - med['one table']) / budget * 1000:.2f} ms per evaluation); "
        f"{last.accuracy_calls} of {budget} evaluations, all inside both bands: {bool(ok)}"
    )
    out.update(seconds=med, all_inside=bool(ok), calls=last.accuracy_calls)
    return out


if __name__ == "__main__":
    main()
