"""The device backends by name, and `open_device`, which opens the one `--device` names.

A backend is a `Device` class (connector, profiler, parser: `latency.devices`) whose `open(spec, ...)` builds it.
`BACKENDS` holds them by name: `local` is the host; any other name is a phone, a USB serial or HOST:PORT (see
`hnas devices`).
"""

from __future__ import annotations

from latency.adb import AdbDevice
from latency.devices import Device, LocalDevice

BACKENDS: dict[str, type[Device]] = {"local": LocalDevice}
PHONES: type[Device] = AdbDevice  # the backend of every name not in BACKENDS


def open_device(spec: str, core: int | None = None, benchmark_binary: str | None = None, **adb_options) -> Device:
    """The device `spec` names (`adb_options` go to a phone's connection; the host has none)."""
    return BACKENDS.get(spec, PHONES).open(spec, core=core, benchmark_binary=benchmark_binary, **adb_options)
