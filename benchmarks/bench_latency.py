"""Latency toolkit figures on this machine: per-entry export/convert/measure seconds, full LUT builds from a
cold cache, refresh with nothing stale, predictor throughput.

    .venv/bin/python benchmarks/bench_latency.py                 # basic and large (about 6 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_latency.py --spaces basic  # quicker

Targets (2-core host): basic <= 3 min, large <= 8 min, refresh with nothing stale <= 5 s, >= 1e6 archs/s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hnas.spec.space import load_space  # noqa: E402
from latency.build import BuildOptions, build  # noqa: E402
from latency.devices import LocalDevice  # noqa: E402
from latency.export import Exporter  # noqa: E402
from latency.items import items_for_space  # noqa: E402
from latency.lut import Lut  # noqa: E402
from latency.predict import LatencyPredictor  # noqa: E402


def bench_build(space_name: str, workdir: Path) -> dict:
    """Cold-cache build of one space's LUT (a fresh process would import TensorFlow too: counted below)."""
    space = load_space(space_name)
    items = items_for_space(space)
    exporter = Exporter(workdir / f"cache-{space_name}")
    path = workdir / f"{space_name}.json"
    t0 = time.perf_counter()
    report = build(LocalDevice(), items, path, BuildOptions(), exporter)
    total = time.perf_counter() - t0
    n = len(items)
    return {
        "space": space_name,
        "entries": n,
        "total_s": total,
        "export_s_per_entry": report.export_s / n,
        "convert_s_per_entry": report.convert_s / n,
        "measure_s_per_entry": report.measure_s / n,
        "remeasured": len(report.remeasured),
        "lut": path,
        "cache": exporter.cache_dir,
    }


def bench_refresh(lut: Path, cache: Path) -> float:
    """Wall time of `hnas lut refresh` in a fresh process when nothing is stale (TensorFlow never loads)."""
    env_cache = {"HNAS_CACHE": str(cache)}
    import os

    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-m", "hnas.cli", "lut", "refresh", "--lut", str(lut)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **env_cache},
    )
    dt = time.perf_counter() - t0
    if out.returncode != 0 or "measured 0 entries" not in out.stdout:
        raise SystemExit(f"refresh did not find everything fresh:\n{out.stdout}\n{out.stderr}")
    return dt


def bench_predictor(lut: Path, space_name: str, n: int = 1_000_000, repeats: int = 5) -> float:
    """Median architectures per second of `LatencyPredictor.predict` on n random integer vectors."""
    space = load_space(space_name)
    pred = LatencyPredictor(Lut.load(lut), space)
    counts = np.array([len(c) for c in space.candidates])
    vecs = (np.random.default_rng(0).random((n, counts.size)) * counts).astype(np.int64)
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        pred.predict(vecs)
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=["basic", "large"])
    args = p.parse_args()
    print(f"host: {LocalDevice().describe()['cpu']}, {LocalDevice().describe()['cpus']} CPUs usable")
    with tempfile.TemporaryDirectory(prefix="hnas-bench-") as tmp:
        tmp = Path(tmp)
        results = [bench_build(s, tmp) for s in args.spaces]
        print(
            f"{'space':8s} {'entries':>7s} {'build s':>8s} {'export s/e':>10s} {'convert s/e':>11s} "
            f"{'measure s/e':>11s} {'extra reps':>10s}"
        )
        for r in results:
            print(
                f"{r['space']:8s} {r['entries']:7d} {r['total_s']:8.1f} {r['export_s_per_entry']:10.3f} "
                f"{r['convert_s_per_entry']:11.3f} {r['measure_s_per_entry']:11.3f} {r['remeasured']:10d}"
            )
        last = results[-1]
        refresh = [bench_refresh(last["lut"], last["cache"]) for _ in range(3)]
        print(
            f"refresh with nothing stale ({last['space']}, fresh process): median {statistics.median(refresh):.2f} s "
            f"of {[round(x, 2) for x in refresh]}"
        )
        rate = bench_predictor(last["lut"], last["space"])
        print(f"predictor ({last['space']}, 1e6 random architectures, median of 5): {rate:.3g} architectures/s")


if __name__ == "__main__":
    main()
