"""Phones over ADB: `AdbDevice` composes a connection, measurement hygiene and the benchmark flags.

`AdbDevice` implements `latency.devices.Device`: it pushes `device_scripts/` once, probes the phone, picks its big
core, pushes the user's Android arm64 `benchmark_model` once (sha256 compared with the copy on the phone) and runs
whole batches through `device_scripts/batch.sh`, so a LUT round costs one ADB round trip. Reaching the phone
(reconnects, retries, `PhoneGone`) lives in `latency.connection`; probe facts, the big core, the throttle rule and
the governor in `latency.hygiene`; the flags in `latency.bench.benchmark_flags`.
"""

from __future__ import annotations

import contextlib
import hashlib
import posixpath
import shlex
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.io import sha256_file
from latency import defaults
from latency.bench import BenchSettings, benchmark_flags
from latency.connection import AdbConnection, PhoneGone
from latency.devices import BenchOutput, Device, split_batch
from latency.hygiene import Governor, ThrottleRule, fact_int, parse_probe, phone_fingerprint, pick_big_core

DEVICE_DIR = "/data/local/tmp/hnas"
EM_AARCH64 = 183


def device_scripts() -> list[Path]:
    """The phone's shell scripts (`device_scripts/*.sh`), package data of the installed package or the checkout."""
    from importlib.resources import files

    root = files("device_scripts")
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".sh"))


def check_aarch64_elf(path: str | Path) -> None:
    """Refuse anything but an ELF for aarch64 (what `benchmark_model` for Android arm64 is)."""
    p = Path(path)
    if not p.is_file():
        raise HnasError(f"--benchmark-binary {p} does not exist")
    head = p.read_bytes()[:20]
    if len(head) < 20 or head[:4] != b"\x7fELF":
        raise HnasError(f"--benchmark-binary {p} is not an ELF executable; use the Android arm64 benchmark_model")
    machine = struct.unpack("<H" if head[5] == 1 else ">H", head[18:20])[0]
    if head[4] != 2 or machine != EM_AARCH64:
        raise HnasError(
            f"--benchmark-binary {p} is an ELF for machine {machine}, not aarch64 (183): "
            "use the Android arm64 build of benchmark_model"
        )


class AdbDevice(Device):
    """An Android phone reached over ADB."""

    def __init__(
        self,
        spec: str,
        benchmark_binary: str | Path | None = None,
        core: int | None = None,
        key_path: str | Path | None = None,
        timeout_s: float = defaults.TIMEOUT_S,
        command_timeout_s: float = defaults.COMMAND_TIMEOUT_S,
        retries: int = defaults.RETRIES,
        backoff_s: float = defaults.BACKOFF_S,
        cool_s: float = defaults.COOL_S,
        cooldown_s: float = defaults.COOLDOWN_S,
        min_freq_fraction: float = defaults.MIN_FREQ_FRACTION,
        max_temp_c: float = defaults.MAX_TEMP_C,
        sysfs: str = "/sys",
    ):
        self.spec = spec
        self.name = spec
        self.binary = Path(benchmark_binary) if benchmark_binary else None
        if self.binary is not None:
            check_aarch64_elf(self.binary)
        self._core_override = core
        self.cool_s = cool_s
        self.sysfs = sysfs
        self.conn = AdbConnection(spec, key_path, timeout_s, command_timeout_s, retries, backoff_s)
        self.rule = ThrottleRule(min_freq_fraction, max_temp_c, cooldown_s)
        self._facts: dict[str, str] | None = None
        self._scripts_ready = False
        self._remote_binary: str | None = None

    @classmethod
    def open(cls, spec: str, core: int | None = None, benchmark_binary: str | None = None, **options) -> Device:
        return cls(spec, benchmark_binary=benchmark_binary, core=core, **options)

    def close(self) -> None:
        """Drop the connection."""
        self.conn.close()

    def shell(self, argv: list[str] | str, timeout: float | None = None) -> tuple[int, str]:
        return self.conn.shell(argv, timeout)

    def push_many(self, locals_: list[Path], subdir: str = "models") -> list[str]:
        """Push files once: only those whose sha256 on the phone differs (one round trip to compare)."""
        self._ensure_dir()
        return self.conn.push_many([Path(p) for p in locals_], posixpath.join(DEVICE_DIR, subdir))

    def _ensure_dir(self) -> None:
        if not self._scripts_ready:
            rc, out = self.shell(f"mkdir -p {DEVICE_DIR}/models {DEVICE_DIR}/bin")
            if rc != 0:
                raise HnasError(f"cannot create {DEVICE_DIR} on {self.spec}: {out.strip()}")
            self._scripts_ready = True
            self.conn.push_many(device_scripts(), f"{DEVICE_DIR}/bin")

    def facts(self) -> dict[str, str]:
        """probe.sh's key=value facts (cached)."""
        if self._facts is None:
            self._ensure_dir()
            rc, out = self.shell(f"sh {DEVICE_DIR}/bin/probe.sh {shlex.quote(self.sysfs)}")
            facts = parse_probe(out)
            if rc != 0 or facts.get("probe") != "done":
                raise HnasError(f"probe failed on {self.spec} (exit {rc}): {out.strip()[-300:]}")
            self._facts = facts
        return self._facts

    @property
    def core(self) -> int:
        """The pinned CPU: --core, else the big core."""
        return self._core_override if self._core_override is not None else pick_big_core(self.facts())

    def describe(self) -> dict:
        return phone_fingerprint(self.spec, self.facts(), self.core)

    def runtime(self) -> dict:
        if self.binary is None:
            raise HnasError("measuring on a phone needs --benchmark-binary PATH (the Android arm64 benchmark_model)")
        return {
            "kind": "binary",
            "name": self.binary.name,
            "tflite_version": "as built into the binary",
            "sha256": sha256_file(self.binary),
        }

    def _binary_on_phone(self) -> str:
        if self._remote_binary is None:
            if self.binary is None:
                self.runtime()
            (remote,) = self.push_many([self.binary], subdir="bin")
            rc, out = self.shell(f"chmod 755 {shlex.quote(remote)}")
            if rc != 0:
                raise HnasError(f"cannot make {remote} executable on {self.spec}: {out.strip()}")
            self._remote_binary = remote
        return self._remote_binary

    def benchmark_batch(self, models: list[str], settings: BenchSettings) -> Iterator[BenchOutput]:
        remaining = list(models)
        batch = self.conn.stream(
            "the benchmark batch", lambda: self._batch_command(remaining, settings), split_batch, lambda: not remaining
        )
        for out in batch:
            if out.model in remaining:
                remaining.remove(out.model)
            out.throttled = self.throttled(out)
            yield out

    def _batch_command(self, models: list[str], settings: BenchSettings) -> str:
        """batch.sh over `models` on the pinned core, the binary and the model list pushed first."""
        binary = self._binary_on_phone()
        listing = self._push_list(models)
        args = [binary, str(self.core), self.sysfs, f"{self.cool_s:g}", listing, *benchmark_flags(settings)]
        return shlex.join(["sh", f"{DEVICE_DIR}/bin/batch.sh", *args])

    def _push_list(self, models: list[str]) -> str:
        text = "\n".join(models) + "\n"
        name = "list-" + hashlib.sha256(text.encode()).hexdigest()[:12] + ".txt"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            local.write_text(text)
            (remote,) = self.push_many([local], subdir="bin")
        return remote

    def throttled(self, out: BenchOutput) -> str | None:
        """Why this run must be re-measured: the core slowed down or the phone ran hot."""
        max_khz = fact_int(self.facts(), f"cpu{self.core}.max_khz")
        return self.rule.reason(out.conditions, self.core, max_khz)

    def cool_down(self) -> None:
        """Wait for the phone to cool."""
        self.rule.cool_down()

    def _governor(self) -> Governor:
        self._ensure_dir()
        core = self.core
        state = f"{DEVICE_DIR}/governor-cpu{core}.saved"
        return Governor(self.shell, f"{DEVICE_DIR}/bin/governor.sh", core, state, self.sysfs, self.spec)

    @contextlib.contextmanager
    def performance(self) -> Iterator[None]:
        """Root only: performance governor on the pinned core while the block runs (the old one is saved on the
        phone, and put back after)."""
        self._governor().set_performance()
        try:
            yield
        finally:
            self._governor().restore()


def list_devices(tcp: list[str], key_path: str | Path | None = None, timeout_s: float = 3.0) -> list[dict]:
    """Phones on USB (when libusb is available) and at the given HOST:PORTs: serial, model, state."""
    rows = []
    specs = list(tcp)
    try:
        from adb_shell.transport.usb_transport import UsbTransport

        for handle in UsbTransport.find_all_adb_devices():
            specs.append(handle.serial_number)
    except Exception:  # noqa: BLE001 - no libusb or no permission: USB listing is skipped
        pass
    for spec in specs:
        dev = AdbDevice(spec, key_path=key_path, timeout_s=timeout_s, retries=0)
        row = {"serial": spec, "model": None, "state": "device", "transport": "tcp" if ":" in spec else "usb"}
        try:
            dev.conn.connect()
            row["model"] = dev.facts().get("model")
        except PhoneGone:
            row["state"] = "offline"
        except HnasError as exc:
            row["state"] = "unauthorized" if "authoriz" in str(exc) or "key" in str(exc) else "error"
        finally:
            dev.close()
        rows.append(row)
    return rows
