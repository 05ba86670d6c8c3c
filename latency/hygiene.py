"""Measurement hygiene on a phone: probe facts, the big core, thermal zones, the throttle rule, the governor.

`device_scripts/probe.sh` prints key=value facts; `pick_big_core` chooses the core to pin, `hottest_c` reads the
thermal zones, `ThrottleRule` says when a run must be measured again and waits for the phone to cool, and
`Governor` switches the pinned core to `performance` and back with `device_scripts/governor.sh`. Everything here
works on text, dicts and a shell callable, so it is tested without a phone.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass

from hnas.core.errors import HnasError
from latency import defaults


def parse_probe(text: str) -> dict[str, str]:
    """key=value lines of probe.sh."""
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def fact_int(facts: dict[str, str], key: str) -> int:
    """A numeric fact, 0 when absent or empty."""
    return int(facts.get(key, 0) or 0)


def pick_big_core(facts: dict[str, str]) -> int:
    """Highest cpu_capacity, then highest max frequency, ties to the highest CPU id (online CPUs only)."""
    cpus = sorted({int(k[3:].split(".")[0]) for k in facts if k.startswith("cpu") and k[3:4].isdigit()})
    best = None
    for n in cpus:
        if facts.get(f"cpu{n}.online", "1") != "1":
            continue
        rank = (fact_int(facts, f"cpu{n}.capacity"), fact_int(facts, f"cpu{n}.max_khz"), n)
        best = rank if best is None or rank > best else best
    if best is None:
        raise HnasError("the phone reported no online CPU; is it an Android device?")
    return best[2]


def _celsius(raw: int) -> float:
    """A thermal zone's reading in degrees C (zones report millidegrees, some degrees)."""
    return raw / 1000 if abs(raw) >= 1000 else float(raw)


def hottest_c(facts: dict[str, str]) -> float | None:
    """Hottest thermal zone in degrees C."""
    temps = []
    for k, v in facts.items():
        if k.startswith("thermal_zone") and k.endswith(".temp"):
            try:
                temps.append(_celsius(int(v)))
            except ValueError:
                continue
    return max(temps) if temps else None


def phone_fingerprint(spec: str, facts: dict[str, str], core: int) -> dict:
    """The device record of a LUT: model, SoC, ABI, the pinned core and its max frequency, OS and kernel."""
    return {
        "id": spec,
        "kind": "phone",
        "model": facts.get("model"),
        "manufacturer": facts.get("manufacturer"),
        "cpu": facts.get("soc") or facts.get("platform") or facts.get("hardware"),
        "board": facts.get("board"),
        "abi": facts.get("abi"),
        "cpus": len([k for k in facts if k.startswith("cpu") and k.endswith(".online")]),
        "core": core,
        "core_capacity": fact_int(facts, f"cpu{core}.capacity") or None,
        "core_max_khz": fact_int(facts, f"cpu{core}.max_khz") or None,
        "governor": facts.get(f"cpu{core}.governor"),
        "os": f"Android {facts.get('android')} (SDK {facts.get('sdk')})",
        "kernel": facts.get("kernel"),
    }


@dataclass(frozen=True)
class ThrottleRule:
    """A run counts only if the pinned core kept `min_freq_fraction` of its max and no zone passed `max_temp_c`."""

    min_freq_fraction: float = defaults.MIN_FREQ_FRACTION
    max_temp_c: float = defaults.MAX_TEMP_C
    cooldown_s: float = defaults.COOLDOWN_S

    def reason(self, conditions: dict[str, dict[str, int]], core: int, max_khz: int) -> str | None:
        """Why a run with these before/after conditions must be re-measured, or None."""
        for when in ("before", "after"):
            cond = conditions.get(when)
            if not cond:
                continue
            freq = cond.get("freq_khz")
            if max_khz and freq is not None and 0 < freq < self.min_freq_fraction * max_khz:
                return f"core {core} ran at {freq} kHz {when} (max {max_khz})"
            temp = cond.get("temp_mc")
            if temp is not None and _celsius(temp) > self.max_temp_c:
                return f"hottest thermal zone at {_celsius(temp):.1f} C {when} (limit {self.max_temp_c:g} C)"
        return None

    def cool_down(self) -> None:
        """Wait `cooldown_s` for the phone to cool."""
        time.sleep(self.cooldown_s)


@dataclass(frozen=True)
class Governor:
    """One core's cpufreq governor, switched by governor.sh (root only); the old one is saved in `state`."""

    shell: Callable[[str], tuple[int, str]]
    script: str
    core: int
    state: str
    sysfs: str
    name: str

    def set_performance(self) -> None:
        """`performance` on the core, saving the governor it had."""
        self._run("set")

    def restore(self) -> None:
        """Put back the governor saved by `set_performance`."""
        self._run("restore")

    def _run(self, action: str) -> None:
        argv = ["sh", self.script, action, str(self.core), self.state, self.sysfs]
        rc, out = self.shell(shlex.join(argv))
        if rc != 0:
            raise HnasError(f"{self.name}: {out.strip().splitlines()[-1] if out.strip() else 'governor.sh failed'}")
