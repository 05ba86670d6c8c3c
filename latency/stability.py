"""When a measurement can be trusted: one rule for every figure (LUT entries, whole networks, one-off profiles)
on every device, and what the host can say about being busy.

A figure is the median of several repeats. `Stability` says the repeats agree when their medians differ by at
most `spread` (max / min - 1); otherwise the figure is measured again after `pause_s`, up to `extra` more
repeats; one that still disagrees is *unstable*: it is kept, but marked so in the output and the files, and no
error percentage is computed from it. `host_contention` tells whether other work competed for the host's
pinned core (running processes on it, the load average).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hnas.errors import HnasError


def spread_of(medians) -> float:
    """Relative disagreement of repeat medians: max / min - 1 (inf when a median is 0)."""
    medians = list(medians)
    if not medians:
        return math.inf
    return max(medians) / min(medians) - 1 if min(medians) > 0 else math.inf


@dataclass(frozen=True)
class Stability:
    """The re-measure rule: repeats agree within `spread`; else up to `extra` more repeats, each after `pause_s`."""

    spread: float = 0.10
    extra: int = 4
    pause_s: float = 1.0

    def __post_init__(self):
        if not (isinstance(self.spread, int | float) and math.isfinite(self.spread) and self.spread > 0):
            raise HnasError(f"--spread {self.spread}: use a positive fraction, e.g. 0.1 for 10 %")
        if self.extra < 0 or self.pause_s < 0:
            raise HnasError("extra repeats and the pause before them cannot be negative")

    def agrees(self, medians) -> bool:
        """The repeats agree within the threshold."""
        return spread_of(medians) <= self.spread

    def again(self, medians, extra_done: int) -> bool:
        """Measure once more: the repeats disagree and extra repeats are left."""
        return not self.agrees(medians) and extra_done < self.extra

    def pause(self) -> None:
        """Let a transient disturbance pass before measuring again."""
        time.sleep(self.pause_s)

    def verdict(self, medians) -> dict:
        """What is stored beside a figure: stable or not, and the spread of its repeats."""
        s = spread_of(medians)
        return {"stable": s <= self.spread, "spread": round(s, 4) if math.isfinite(s) else None}


def _running_on(core: int, exclude: set[int]) -> list[str]:
    """Names of running (state R) processes whose last CPU is `core`, except `exclude`."""
    names = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in exclude:
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        comm, _, rest = text.partition(") ")
        fields = rest.split()
        if len(fields) > 36 and fields[0] == "R" and fields[36] == str(core):
            names.append(comm.split("(", 1)[-1])
    return names


def host_contention(core: int, samples: int = 5, interval_s: float = 0.05) -> str | None:
    """Why the host's pinned core may not have been ours alone: other running processes seen on it (sampled a few
    times), or a 1-minute load average above half the CPUs. None when the host looked quiet."""
    me = {os.getpid(), os.getppid()}
    seen: set[str] = set()
    for _ in range(samples):
        seen.update(_running_on(core, me))
        time.sleep(interval_s)
    reasons = []
    if seen:
        reasons.append(f"other processes ran on core {core} ({', '.join(sorted(seen)[:3])})")
    try:
        load1 = float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        load1 = None
    cpus = os.cpu_count() or 1
    if load1 is not None and load1 > 0.5 * cpus:
        reasons.append(f"load average {load1:.2f} on {cpus} CPUs")
    return "; ".join(reasons) or None
