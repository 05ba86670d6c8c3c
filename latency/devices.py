"""Devices behind one small interface: describe itself, receive files, measure a batch of models into parsed
figures.

A backend follows nn-Meter's split: a connector (how to reach the machine: a subprocess on the host,
`latency.connection` for a phone), a profiler (which command measures: `benchmark_flags` and `benchmark_command`,
or the phone's `batch.sh`; `benchmark_batch` runs it and yields each model's raw text) and one parser for every
`benchmark_model` era (`parse_benchmark_output`, applied by `Device.measure`). The build loop, `verify` and
`profile` ask `measure` for figures, never for text. `LocalDevice` is the host CPU; the phone over ADB
(`latency.adb`) implements the same interface; `latency.backends` finds a backend by the device's name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.io import sha256_file
from latency.bench import BenchResult, BenchSettings, benchmark_command, benchmark_flags, parse_benchmark_output
from latency.runner import BEGIN, END

COND = "=== hnas-cond"


@dataclass
class BenchOutput:
    """What one benchmark invocation printed (stdout and stderr together), its exit status, the device's
    condition (pinned core frequency, hottest thermal zone) before and after, when it reports them, and why the
    run must be re-measured when the backend judged so (`throttled`: the core slowed down, the device ran hot)."""

    model: str
    rc: int
    text: str
    conditions: dict = field(default_factory=dict)
    throttled: str | None = None


@dataclass
class Measurement:
    """One model's measurement as the device hands it over: its parsed figures (`result`, None when the run
    failed: `rc` is not 0 and `text` holds what it printed), the device's condition around it and, when the run
    must be re-measured (the core slowed down, the device ran hot), why (`throttled`)."""

    model: str
    rc: int
    text: str
    result: BenchResult | None
    conditions: dict = field(default_factory=dict)
    throttled: str | None = None

    def failure_tail(self, lines: int = 15) -> str:
        """The last `lines` lines of what a failed run printed."""
        return "\n".join(self.text.splitlines()[-lines:])


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
    """A machine that runs TFLite models: the connector and profiler are the backend's (`benchmark_batch`), the
    parser is everyone's (`measure`)."""

    name: str
    streams = False  # `benchmark_batch` takes models as they come (an iterator), so converting can overlap measuring

    @classmethod
    @abstractmethod
    def open(cls, spec: str, core: int | None = None, benchmark_binary: str | None = None, **options) -> Device:
        """The device `spec` names."""

    @abstractmethod
    def describe(self) -> dict:
        """Fingerprint: model, CPU/SoC, core used and its max frequency, OS and kernel."""

    @abstractmethod
    def runtime(self) -> dict:
        """What measures: runner or binary, TFLite version, sha256."""

    @abstractmethod
    def push_many(self, locals_: list[Path]) -> list[str]:
        """Make local files available on the device; returns their paths there."""

    @abstractmethod
    def benchmark_batch(self, models: list[str], settings: BenchSettings) -> Iterator[BenchOutput]:
        """Benchmark device-side model paths in order, yielding each raw output (and the backend's throttle
        verdict) as soon as it is complete (`models` may be an iterator that waits for each model when the device
        `streams`)."""

    def measure(self, models: list[str], settings: BenchSettings) -> Iterator[Measurement]:
        """Benchmark device-side model paths in order, yielding each one's parsed figures as soon as it is
        complete (and whether it must be re-measured, `throttled`)."""
        for out in self.benchmark_batch(models, settings):
            result = parse_benchmark_output(out.text) if out.rc == 0 else None
            throttled = out.throttled if result is not None else None
            yield Measurement(out.model, out.rc, out.text, result, out.conditions, throttled)

    def busy(self) -> str | None:
        """Why other work competed with the last benchmark batch (the host: on its pinned core, during the batch),
        or None."""
        return None

    def cool_down(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Let the device cool before re-measuring."""

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release the connection, if any."""

    @contextlib.contextmanager
    def performance(self) -> Iterator[None]:
        """The core's governor pinned to `performance` while the block runs (phones with root only)."""
        raise HnasError(f"--performance sets a phone's cpufreq governor; it does not apply to {self.name}")
        yield  # pragma: no cover - a generator, for contextmanager


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
    streams = True

    def __init__(self, core: int | None = None, benchmark_binary: str | Path | None = None):
        cpus = _host_cpus()
        self.core = cpus[-1] if core is None else core
        if self.core not in cpus:
            raise HnasError(f"--core {self.core} is not available here; this process may use CPUs {cpus}")
        self.binary = Path(benchmark_binary) if benchmark_binary else None
        self._busy: str | None = None  # what competed with the last batch on the pinned core (`busy`)
        if self.binary is not None and not (self.binary.is_file() and os.access(self.binary, os.X_OK)):
            raise HnasError(f"--benchmark-binary {self.binary} is not an executable file")

    @classmethod
    def open(cls, spec: str, core: int | None = None, benchmark_binary: str | None = None, **_options) -> Device:
        """The host (the phones' connection options do not apply)."""
        return cls(core=core, benchmark_binary=benchmark_binary)

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
        """The host reads the file where it is."""
        return str(Path(local).resolve())

    def push_many(self, locals_: list[Path]) -> list[str]:
        return [self.push(p) for p in locals_]

    def busy(self) -> str | None:
        return self._busy

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
        # the installed package's runner (`latency` is importable wherever this module is): no PYTHONPATH; it reads
        # the models from stdin one at a time, so a model converted meanwhile joins the batch when it is ready
        runner = [sys.executable, "-m", "latency.runner", "--graph_list=-", f"--core={self.core}"]
        argv = [*runner, *benchmark_flags(settings)]
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        # pinned from exec, so that its start-up (Python, NumPy) runs on the core it is counted against
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            preexec_fn=lambda: os.sched_setaffinity(0, {self.core}),
        )
        try:
            outputs = split_batch(proc.stdout)
            for model in models:
                try:
                    proc.stdin.write(model + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:  # the runner died: what it printed is the failure
                    break
                out = next(outputs, None)
                if out is None:  # the runner died: what it printed is the failure
                    break
                window.sample({proc.pid})
                yield out
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            for out in outputs:
                yield out
            proc.wait()
            self._busy = window.verdict()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
