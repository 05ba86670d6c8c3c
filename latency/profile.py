"""One-off measurements: a .tflite model, or one op at one shape, on a device, repeated."""

from __future__ import annotations

import statistics
from pathlib import Path

from hnas.core.errors import HnasError
from latency.bench import BenchSettings
from latency.devices import Device
from latency.stability import Stability


def profile_model(
    device: Device, path: Path, label: str, settings: BenchSettings, repeats: int, stability: Stability | None = None
) -> dict:
    """`repeats` benchmark runs of the model at `path` (more after a pause while they disagree, `Stability`):
    each repeat's statistics, the median of medians, whether they agree and whether the host was busy."""
    stability = stability or Stability()
    (remote,) = device.push_many([path])
    rows = []
    busy: list[str] = []

    def once() -> None:
        for m in device.measure([remote], settings):
            if m.result is None:
                raise HnasError(f"benchmark failed (exit {m.rc}): {m.text.strip().splitlines()[-1:]}")
            rows.append(m.result.runs)
        if (why := device.busy()) and why not in busy:  # judged during the run
            busy.append(why)

    for _ in range(repeats):
        once()
    extra = 0
    while repeats > 1 and stability.again([r.median_or_avg_ms for r in rows], extra):
        stability.pause()
        once()
        extra += 1
    desc = device.describe()
    return {
        "model": label,
        "device": desc.get("model"),
        "core": desc.get("core"),
        "median_ms": statistics.median(r.median_or_avg_ms for r in rows),
        **stability.verdict([r.median_or_avg_ms for r in rows]),  # one repeat: not judged, so not stable
        "host_busy": "; ".join(busy) or None,
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
