"""How long the command line takes to answer before any work: `hnas --help` and a command's help (target < 1 s).

.venv/bin/python benchmarks/bench_cli.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    for args in (["--help"], ["search", "--help"], ["lut", "build", "--help"]):
        times = []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hnas.cli", *args], cwd=ROOT, capture_output=True, check=True)
            times.append(time.perf_counter() - t0)
        print(
            f"hnas {' '.join(args):18s} median {statistics.median(times):.2f} s (min {min(times):.2f}) of {a.repeats}"
        )


if __name__ == "__main__":
    main()
