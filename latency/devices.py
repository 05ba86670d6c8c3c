"""Devices behind one interface: receive a file, run a command, describe itself, benchmark a batch of models.

The split follows nn-Meter's backends: the device is the connector (how to reach it), `benchmark_flags` and
`benchmark_command` are the profiler (which command to run), `parse_benchmark_output` is the parser (one for
every era).
`LocalDevice` is the host CPU; the phone over ADB implements the same interface.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hnas.errors import HnasError
from hnas.io import sha256_file
from latency.bench import BenchSettings, benchmark_command, benchmark_flags
from latency.runner import BEGIN, END

COND = "=== hnas-cond"


@dataclass
class BenchOutput:
    """What one benchmark invocation printed (stdout and stderr together), its exit status, and the
    device's condition (pinned core frequency, hottest thermal zone) before and after, when it reports them."""

    model: str
    rc: int
    text: str
    conditions: dict = field(default_factory=dict)


def _parse_cond(rest: str) -> tuple[str, dict]:
    when, *pairs = rest.split()
    values = {}
    for pair in pairs:
        k, _, v = pair.partition("=")
        try:
            values[k] = int(v)
        except ValueError:
            continue
    return when, values


def split_batch(lines) -> Iterator[BenchOutput]:
    """Cut a batch's output into one block per model using the `=== hnas-begin/end` framing lines."""
    model, buf, cond = None, [], {}
    for raw in lines:
        line = raw.rstrip("\r\n")
        if line.startswith(BEGIN):
            model, buf, cond = line[len(BEGIN) :].strip(), [], {}
        elif line.startswith(COND) and model is not None:
            when, values = _parse_cond(line[len(COND) :])
            cond[when] = values
        elif line.startswith(END) and model is not None:
            rest = line[len(END) :].strip()
            rc = int(rest.rsplit("rc=", 1)[1]) if "rc=" in rest else 1
            yield BenchOutput(model, rc, "\n".join(buf), cond)
            model = None
        elif model is not None:
            buf.append(line)


class Device(ABC):
    """A machine that runs TFLite models."""

    name: str

    @abstractmethod
    def describe(self) -> dict:
        """Fingerprint: model, CPU/SoC, core used and its max frequency, OS and kernel."""

    @abstractmethod
    def runtime(self) -> dict:
        """What measures: runner or binary, TFLite version, sha256."""

    @abstractmethod
    def push(self, local: Path) -> str:
        """Make a local file available on the device; returns its path there."""

    @abstractmethod
    def shell(self, argv: list[str], timeout: float = 600) -> tuple[int, str]:
        """Run a command on the device; returns (exit status, stdout+stderr)."""

    @abstractmethod
    def benchmark_batch(self, models: list[str], settings: BenchSettings) -> Iterator[BenchOutput]:
        """Benchmark device-side model paths in order, yielding each output as soon as it is complete."""

    def push_many(self, locals_: list[Path]) -> list[str]:
        """Push several files; devices with slow round trips compare checksums in one call."""
        return [self.push(p) for p in locals_]

    def throttled(self, out: BenchOutput) -> str | None:
        """Why a run must be re-measured (the core slowed down, the device ran hot), or None."""
        return None

    def busy(self) -> str | None:
        """Why other work competed with the last benchmark batch (the host: on its pinned core, during the batch),
        or None."""
        return None

    def cool_down(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Let the device cool before re-measuring."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release the connection, if any."""

    def set_performance(self) -> None:
        """Pin the core's governor to `performance` (phones with root only)."""
        raise HnasError(f"--performance sets a phone's cpufreq governor; it does not apply to {self.name}")

    def restore_governor(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Undo `set_performance`."""


def _host_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


class LocalDevice(Device):
    """The host CPU, one pinned core, measured by the project's runner or a real `benchmark_model`."""

    name = "local"

    def __init__(self, core: int | None = None, benchmark_binary: str | Path | None = None):
        cpus = _host_cpus()
        self.core = cpus[-1] if core is None else core
        if self.core not in cpus:
            raise HnasError(f"--core {self.core} is not available here; this process may use CPUs {cpus}")
        self.binary = Path(benchmark_binary) if benchmark_binary else None
        self._busy: str | None = None  # what competed with the last batch on the pinned core (`busy`)
        if self.binary is not None and not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise HnasError(f"--benchmark-binary {self.binary} is not an executable file")

    def describe(self) -> dict:
        cpu_model = "unknown"
        for line in (_read("/proc/cpuinfo") or "").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        max_khz = _read(f"/sys/devices/system/cpu/cpu{self.core}/cpufreq/cpuinfo_max_freq")
        mhz = None
        for line in (_read("/proc/cpuinfo") or "").splitlines():
            if line.startswith("cpu MHz"):
                mhz = float(line.split(":", 1)[1])
        identity = "|".join([_read("/etc/machine-id") or "", platform.release(), cpu_model, str(os.cpu_count())])
        return {
            "id": "local",
            "kind": "host",
            "model": f"{platform.machine()} host",
            "cpu": cpu_model,
            # which machine this is: the same CPU model on another machine (or kernel) is another device
            "machine": hashlib.sha256(identity.encode()).hexdigest()[:8],
            "cpus": len(_host_cpus()),
            "core": self.core,
            "core_max_khz": int(max_khz) if max_khz else (int(mhz * 1000) if mhz else None),
            "os": platform.platform(),
            "kernel": platform.release(),
        }

    def runtime(self) -> dict:
        if self.binary is not None:
            return {
                "kind": "binary",
                "name": self.binary.name,
                "tflite_version": "reported by the binary",
                "sha256": sha256_file(self.binary),
            }
        import ai_edge_litert

        from latency.runtime import runtime_version

        lib = Path(ai_edge_litert.__file__).parent / "_pywrap_litert_interpreter_wrapper.so"
        return {
            "kind": "runner",
            "name": "python -m latency.runner (ai-edge-litert interpreter, XNNPACK)",
            "tflite_version": runtime_version(),
            "sha256": sha256_file(lib) if lib.is_file() else None,
        }

    def push(self, local: Path) -> str:
        return str(Path(local).resolve())

    def busy(self) -> str | None:
        return self._busy

    def shell(self, argv: list[str], timeout: float = 600) -> tuple[int, str]:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HnasError(f"command timed out after {timeout:g} s: {shlex.join(argv)}") from None
        return proc.returncode, proc.stdout + proc.stderr

    def benchmark_batch(self, models: list[str], settings: BenchSettings) -> Iterator[BenchOutput]:
        from latency.stability import CoreWindow

        self._busy = None
        window = CoreWindow(self.core)  # what else ran on the pinned core while this batch ran (`busy`)
        if self.binary is not None:
            for model in models:
                argv = benchmark_command(str(self.binary), model, settings)
                proc = subprocess.run(
                    argv, capture_output=True, text=True, preexec_fn=lambda: os.sched_setaffinity(0, {self.core})
                )
                window.sample()
                yield BenchOutput(model, proc.returncode, proc.stdout + proc.stderr)
            self._busy = window.verdict()
            return
        import tempfile

        with tempfile.NamedTemporaryFile("w", suffix=".txt", prefix="hnas-batch-", delete=False) as fh:
            fh.write("\n".join(models) + "\n")
            listing = fh.name
        # the installed package's runner (`latency` is importable wherever this module is): no PYTHONPATH
        runner = [sys.executable, "-m", "latency.runner", f"--graph_list={listing}", f"--core={self.core}"]
        argv = [*runner, *benchmark_flags(settings)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        # pinned from exec, so that its start-up (Python, NumPy) runs on the core it is counted against
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            preexec_fn=lambda: os.sched_setaffinity(0, {self.core}),
        )
        try:
            for out in split_batch(proc.stdout):
                window.sample({proc.pid})
                yield out
            proc.wait()
            self._busy = window.verdict()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            os.unlink(listing)


def open_device(spec: str, core: int | None = None, benchmark_binary: str | None = None, **adb_options) -> Device:
    """`local` for the host; anything else is a phone: a USB serial or HOST:PORT (see `hnas devices`)."""
    if spec == "local":
        return LocalDevice(core=core, benchmark_binary=benchmark_binary)
    from latency.adb import AdbDevice

    return AdbDevice(spec, benchmark_binary=benchmark_binary, core=core, **adb_options)
