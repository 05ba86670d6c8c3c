"""When a measurement can be trusted: one rule for every figure (LUT entries, whole networks, one-off profiles)
on every device, and what the host can say about being busy.

A figure is the median of several repeats. `Stability` says the repeats agree when their medians differ by at
most `spread` (max / min - 1); otherwise the figure is measured again after `pause_s`, up to `extra` more
repeats; one that still disagrees is *unstable*: it is kept, but marked so in the output and the files, and no
error percentage is computed from it; a figure of one repeat cannot be judged and counts as unstable too.
`CoreWindow` tells whether other work competed for the host's pinned core during a measurement (its busy time
against our own CPU time), not before it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

from hnas.core.errors import HnasError
from latency import defaults


def spread_of(medians) -> float:
    """Relative disagreement of repeat medians: max / min - 1 (inf when a median is 0)."""
    medians = list(medians)
    if not medians:
        return math.inf
    return max(medians) / min(medians) - 1 if min(medians) > 0 else math.inf


@dataclass(frozen=True)
class Stability:
    """The re-measure rule: repeats agree within `spread`; else up to `extra` more repeats, each after `pause_s`."""

    spread: float = defaults.SPREAD
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
        """What is stored beside a figure: stable or not, and the spread of its repeats. One repeat cannot be judged:
        it is not stable (spread null), like repeats that disagree."""
        medians = list(medians)
        s = spread_of(medians)
        judged = len(medians) >= 2
        return {"stable": judged and s <= self.spread, "spread": round(s, 4) if judged and math.isfinite(s) else None}


def why_unstable(medians, spread: float | None) -> str:
    """Why a figure is marked unstable, in words."""
    medians = list(medians)
    if len(medians) < 2:
        return "measured in one repeat, which cannot be judged stable (measure 2 or more repeats)"
    if spread is None:
        return "a repeat median is 0: the repeats cannot be compared"
    return f"the repeat medians differ by {spread * 100:.0f} % even after extra repeats"


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


def core_busy_s(core: int) -> float | None:
    """Seconds core `core` has spent busy since boot (/proc/stat: user, nice, system, irq, softirq, steal), or None
    where /proc/stat cannot say."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, *ticks = line.split()
        if name == f"cpu{core}" and len(ticks) >= 8:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(t) for t in ticks[:8])
            return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    return None


def own_cpu_s() -> float:
    """CPU seconds of the measurement itself: this thread (which starts and watches the runner) and the children
    that have been waited for (a finished runner, pinned to the core from its start). Other threads of this process
    (a training's worker pool, a library's spinning threads) are not counted: on another core they say nothing of
    this one, and on this core they are competing work like any other."""
    t = os.times()
    return time.thread_time() + t.children_user + t.children_system


def contention(core: int, busy_s: float, ours_s: float, wall_s: float, names=(), share: float = 0.1) -> str | None:
    """Why a measurement on `core` was not alone there, from what happened during it: the core was busy `busy_s`
    seconds of the `wall_s` the measurement took, `ours_s` of which at most were this process and its children;
    the rest, when at least `share` of the core, was other work (`names`: processes seen running on it)."""
    others = busy_s - ours_s
    if wall_s <= 0 or others < share * wall_s:
        return None
    seen = f": {', '.join(sorted(set(names))[:3])}" if names else ""
    return f"other work took {others / wall_s:.0%} of core {core} during the measurement{seen}"


class CoreWindow:
    """One measurement on one host core, watched while it runs: its core's busy time (/proc/stat) against the CPU
    time of this process and its children, and the other processes seen running on the core (`sample`). The
    1-minute load average is not used: it still counts what ran before the measurement (a training a minute
    earlier), and says nothing of which core."""

    def __init__(self, core: int):
        self.core = core
        self.t0, self.busy0, self.ours0 = time.monotonic(), core_busy_s(core), own_cpu_s()
        self.names: list[str] = []

    def sample(self, exclude: set[int] = frozenset()) -> None:
        """Note the other processes running on the core now (except ours and `exclude`)."""
        self.names += _running_on(self.core, {os.getpid(), *exclude})

    def verdict(self) -> str | None:
        """Why other work competed with the measurement so far, or None."""
        busy = core_busy_s(self.core)
        if busy is None or self.busy0 is None:
            return None
        ours = own_cpu_s() - self.ours0
        return contention(self.core, busy - self.busy0, ours, time.monotonic() - self.t0, self.names)
