"""Latency toolkit figures on this machine: full LUT builds from a cold cache, serial (every model converted first,
`--measure-alone`) and overlapped (the default: converted in worker processes on the other CPUs while the
first rounds measure, `latency.build.Ahead`)
with their ratio and unstable-entry counts, per-entry export/convert/measure seconds, refresh with nothing stale,
predictor throughput. Prints the load average before and after.

    .venv/bin/python benchmarks/bench_latency.py                 # basic and large (about 8 minutes on 2 cores)
    .venv/bin/python benchmarks/bench_latency.py --spaces basic  # quicker (about 2 minutes)

Targets (2-core host): basic <= 25 s overlapped, large <= 8 min, refresh with nothing stale <= 5 s, >= 1e6 archs/s.
"""

from __future__ import annotations

import argparse
import os
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
from latency.build import BuildOptions, build, build_many  # noqa: E402
from latency.devices import LocalDevice  # noqa: E402
from latency.export import Exporter  # noqa: E402
from latency.items import items_for_space  # noqa: E402
from latency.lut import Lut  # noqa: E402
from latency.predict import LatencyPredictor  # noqa: E402


def bench_build(space_name: str, workdir: Path, overlap: bool) -> dict:
    """Cold-cache build of one space's LUT as `hnas lut build` runs it (`build_many`), serial or overlapped (a fresh
    process would import TensorFlow too: counted here only where the conversion workers import it)."""
    space = load_space(space_name)
    items = items_for_space(space)
    how = "overlapped" if overlap else "serial"
    exporter = Exporter(workdir / f"cache-{space_name}-{how}")
    path = workdir / f"{space_name}-{how}.json"
    t0 = time.perf_counter()
    (report,) = build_many([(LocalDevice(), path)], items, BuildOptions(overlap=overlap), exporter).values()
    total = time.perf_counter() - t0
    return {
        "space": space_name,
        "how": how,
        "entries": len(items),
        "total_s": total,
        "remeasured": len(report.remeasured),
        "unstable": len(report.unstable),
        "lut": path,
        "cache": exporter.cache_dir,
    }


def bench_stages(space_name: str, workdir: Path) -> dict:
    """Per-entry export and convert seconds of a cold serial `build` (which converts in its own loop)."""
    items = items_for_space(load_space(space_name))
    exporter = Exporter(workdir / f"cache-{space_name}-stages")
    report = build(LocalDevice(), items, workdir / f"{space_name}-stages.json", BuildOptions(), exporter)
    n = len(items)
    return {"export": report.export_s / n, "convert": report.convert_s / n, "measure": report.measure_s / n}


def bench_refresh(lut: Path, cache: Path) -> float:
    """Wall time of `hnas lut refresh` in a fresh process when nothing is stale (TensorFlow never loads)."""
    env_cache = {"HNAS_CACHE": str(cache)}
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
    p.add_argument("--stages", action="store_true", help="also a serial build through `build` for per-entry seconds")
    args = p.parse_args()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"host: {LocalDevice().describe()['cpu']}, {LocalDevice().describe()['cpus']} CPUs usable, load average {load}"
    )
    with tempfile.TemporaryDirectory(prefix="hnas-bench-") as tmp:
        tmp = Path(tmp)
        results = []
        for s in args.spaces:  # serial first, then overlapped: each from its own cold cache
            results += [bench_build(s, tmp, overlap=False), bench_build(s, tmp, overlap=True)]
        print(f"{'space':8s} {'build':>10s} {'entries':>7s} {'build s':>8s} {'extra reps':>10s} {'unstable':>8s}")
        for r in results:
            print(
                f"{r['space']:8s} {r['how']:>10s} {r['entries']:7d} {r['total_s']:8.1f} {r['remeasured']:10d} "
                f"{r['unstable']:8d}"
            )
        for serial, overlapped in zip(results[::2], results[1::2]):
            print(
                f"{serial['space']}: overlapped / serial build time {overlapped['total_s'] / serial['total_s']:.2f} "
                f"({serial['total_s']:.1f} s -> {overlapped['total_s']:.1f} s; unstable entries {serial['unstable']} "
                f"serial, {overlapped['unstable']} overlapped)"
            )
        if args.stages:
            for s in args.spaces:
                st = bench_stages(s, tmp)
                print(
                    f"{s}: per entry, serial build: export {st['export']:.3f} s, convert {st['convert']:.3f} s, "
                    f"measure {st['measure']:.3f} s"
                )
        last = results[-1]
        refresh = [bench_refresh(last["lut"], last["cache"]) for _ in range(3)]
        print(
            f"refresh with nothing stale ({last['space']}, fresh process): median {statistics.median(refresh):.2f} s "
            f"of {[round(x, 2) for x in refresh]}"
        )
        rate = bench_predictor(last["lut"], last["space"])
        print(f"predictor ({last['space']}, 1e6 random architectures, median of 5): {rate:.3g} architectures/s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
