"""One-off measurements: a .tflite model, or one op at one shape, on a device, repeated."""

from __future__ import annotations

import statistics
from pathlib import Path

from hnas.errors import HnasError
from latency.bench import BenchSettings, parse_benchmark_output
from latency.devices import Device


def profile_model(device: Device, path: Path, label: str, settings: BenchSettings, repeats: int) -> dict:
    """`repeats` benchmark runs of the model at `path`: each repeat's statistics and the median of medians."""
    remote = device.push(path)
    rows = []
    for _ in range(repeats):
        for out in device.benchmark_batch([remote], settings):
            if out.rc != 0:
                raise HnasError(f"benchmark failed (exit {out.rc}): {out.text.strip().splitlines()[-1:]}")
            rows.append(parse_benchmark_output(out.text).runs)
    desc = device.describe()
    return {
        "model": label,
        "device": desc.get("model"),
        "core": desc.get("core"),
        "median_ms": statistics.median(r.median_or_avg_ms for r in rows),
        "repeats": [
            {
                "count": r.count,
                "median_ms": r.median_or_avg_ms,
                "avg_ms": r.avg_ms,
                "min_ms": r.min / 1000 if r.min is not None else None,
                "std_ms": r.std / 1000 if r.std is not None else None,
            }
            for r in rows
        ],
    }
