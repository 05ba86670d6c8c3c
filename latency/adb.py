"""Phones over ADB (adb-shell): USB by serial, TCP by host:port, the same key file as the platform `adb`.

`AdbDevice` implements `latency.devices.Device`: it pushes `device_scripts/` once, probes the phone, picks
its big core, pushes the user's Android arm64 `benchmark_model` once (sha256 compared with the copy on the
phone) and runs whole batches through `device_scripts/batch.sh`, so a LUT round costs one ADB round trip.
Frequency and temperature read before and after every model let the build re-measure throttled runs.
Transport errors reconnect with backoff and the batch goes on with the models not yet reported; a phone
that stays away ends in `PhoneGone`, whose message says how to resume.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shlex
import struct
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from hnas.errors import HnasError
from hnas.io import sha256_file
from latency.bench import BenchSettings, benchmark_flags
from latency.devices import BenchOutput, Device, split_batch

DEVICE_DIR = "/data/local/tmp/hnas"
SCRIPTS = Path(__file__).resolve().parents[1] / "device_scripts"
_RC = "__hnas_rc="
EM_AARCH64 = 183


class PhoneGone(HnasError):
    """The phone stopped answering and did not come back."""


class _TransportBroken(Exception):
    """Internal: the connection broke; reconnecting may help."""


def default_key_path() -> Path:
    """The platform adb's key: `$ADB_VENDOR_KEYS`-independent `~/.android/adbkey`."""
    return Path(os.environ.get("ANDROID_USER_HOME", Path.home() / ".android")) / "adbkey"


def load_signer(key_path: Path | None = None):
    """An RSA signer for the adb key file, creating the key pair (as `adb` would) when absent."""
    from adb_shell.auth.keygen import keygen
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    path = Path(key_path) if key_path else default_key_path()
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        keygen(str(path))
    pub = Path(str(path) + ".pub")
    return PythonRSASigner(pub.read_text() if pub.is_file() else None, path.read_text())


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


def parse_probe(text: str) -> dict[str, str]:
    """key=value lines of probe.sh."""
    out = {}
    for line in text.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def pick_big_core(facts: dict[str, str]) -> int:
    """Highest cpu_capacity, then highest max frequency, ties to the highest CPU id (online CPUs only)."""
    cpus = sorted({int(k[3:].split(".")[0]) for k in facts if k.startswith("cpu") and k[3:4].isdigit()})
    best = None
    for n in cpus:
        if facts.get(f"cpu{n}.online", "1") != "1":
            continue
        rank = (int(facts.get(f"cpu{n}.capacity", 0) or 0), int(facts.get(f"cpu{n}.max_khz", 0) or 0), n)
        best = rank if best is None or rank > best else best
    if best is None:
        raise HnasError("the phone reported no online CPU; is it an Android device?")
    return best[2]


def hottest_c(facts: dict[str, str]) -> float | None:
    """Hottest thermal zone in degrees C (zones report millidegrees, some degrees)."""
    temps = []
    for k, v in facts.items():
        if k.startswith("thermal_zone") and k.endswith(".temp"):
            try:
                temps.append(_celsius(int(v)))
            except ValueError:
                continue
    return max(temps) if temps else None


def _celsius(raw: int) -> float:
    return raw / 1000 if abs(raw) >= 1000 else float(raw)


class AdbDevice(Device):
    """An Android phone reached over ADB."""

    def __init__(
        self,
        spec: str,
        benchmark_binary: str | Path | None = None,
        core: int | None = None,
        key_path: str | Path | None = None,
        timeout_s: float = 10.0,
        command_timeout_s: float = 600.0,
        retries: int = 4,
        backoff_s: float = 1.0,
        cool_s: float = 0.0,
        cooldown_s: float = 30.0,
        min_freq_fraction: float = 0.9,
        max_temp_c: float = 45.0,
        sysfs: str = "/sys",
    ):
        self.spec = spec
        self.name = spec
        self.binary = Path(benchmark_binary) if benchmark_binary else None
        if self.binary is not None:
            check_aarch64_elf(self.binary)
        self._core_override = core
        self.key_path = key_path
        self.timeout_s = timeout_s
        self.command_timeout_s = command_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.cool_s = cool_s
        self.cooldown_s = cooldown_s
        self.min_freq_fraction = min_freq_fraction
        self.max_temp_c = max_temp_c
        self.sysfs = sysfs
        self._dev = None
        self._facts: dict[str, str] | None = None
        self._scripts_ready = False
        self._remote_binary: str | None = None

    # --- connection -------------------------------------------------------------------------------

    def _open(self):
        from adb_shell.adb_device import AdbDeviceTcp, AdbDeviceUsb

        if ":" in self.spec:
            host, port = self.spec.rsplit(":", 1)
            if not port.isdigit():
                raise HnasError(f"device {self.spec!r}: write a USB serial or HOST:PORT (e.g. 192.168.1.20:5555)")
            return AdbDeviceTcp(host, int(port), default_transport_timeout_s=self.timeout_s)
        try:
            return AdbDeviceUsb(serial=self.spec, default_transport_timeout_s=self.timeout_s)
        except Exception as exc:  # noqa: BLE001 - libusb missing or no such device
            raise HnasError(
                f"no phone with serial {self.spec} on USB ({type(exc).__name__}: {exc}): plug it in, enable USB "
                "debugging, and check `hnas devices`"
            ) from None

    def connect(self) -> None:
        """Connect and authenticate; errors name the cause and what to do."""
        from adb_shell import exceptions as ex

        dev = self._open()
        prompted = []  # adb-shell calls back when the phone must show the "Allow USB debugging?" prompt
        try:
            dev.connect(
                rsa_keys=[load_signer(self.key_path)],
                auth_timeout_s=self.timeout_s,
                transport_timeout_s=self.timeout_s,
                read_timeout_s=self.timeout_s,
                auth_callback=lambda _dev: prompted.append(True),
            )
        except ConnectionRefusedError:
            raise PhoneGone(
                f"no device answers at {self.spec} (connection refused): is the phone on the network "
                "with wireless debugging on, and is the port right?"
            ) from None
        except (ex.DeviceAuthError, ex.InvalidResponseError) as exc:
            raise HnasError(
                f"phone {self.spec} refused this computer's key ({exc}): unlock the phone and accept "
                "the 'Allow USB debugging?' prompt, then rerun"
            ) from None
        except (ex.TcpTimeoutException, ex.AdbTimeoutError, TimeoutError, OSError) as exc:
            msg = str(exc)
            if prompted or isinstance(exc, ex.AdbTimeoutError):
                raise HnasError(
                    f"phone {self.spec} is unauthorized: unlock it and accept the 'Allow USB "
                    f"debugging?' prompt for key {self.key_path or default_key_path()}, then rerun"
                ) from None
            raise PhoneGone(
                f"phone {self.spec} is offline or unreachable ({type(exc).__name__}: {msg}): reconnect it, then rerun"
            ) from None
        self._dev = dev

    def close(self) -> None:
        """Drop the connection."""
        if self._dev is not None:
            try:
                self._dev.close()
            except Exception:  # noqa: BLE001 - closing a broken transport
                pass
            self._dev = None

    def _reconnect(self, cause: Exception) -> None:
        """Reconnect with exponential backoff; PhoneGone when the phone stays away."""
        self.close()
        delay = self.backoff_s
        last = cause
        for _ in range(self.retries):
            time.sleep(delay)
            try:
                self.connect()
                return
            except PhoneGone as exc:
                last = exc
                delay *= 2
        raise PhoneGone(f"phone {self.spec} is gone ({last}); reconnect it and rerun the same command to resume")

    def _call(self, fn, *args, **kwargs):
        """Run an adb-shell call, reconnecting after transport errors."""
        from adb_shell import exceptions as ex

        transport_errors = (
            ex.TcpTimeoutException,
            ex.AdbConnectionError,
            ex.InvalidChecksumError,
            ex.InvalidCommandError,
            ex.InvalidResponseError,
            ConnectionError,
            BrokenPipeError,
            OSError,
            struct.error,
        )
        for attempt in range(self.retries + 1):
            if self._dev is None:
                self.connect()
            try:
                return fn(self._dev, *args, **kwargs)
            except ex.AdbTimeoutError:
                raise HnasError(f"command timed out on {self.spec} after {self.command_timeout_s:g} s") from None
            except transport_errors as exc:
                if attempt == self.retries:
                    raise PhoneGone(f"phone {self.spec} keeps dropping the connection ({exc})") from None
                self._reconnect(exc)
        raise AssertionError("unreachable")

    # --- Device interface -------------------------------------------------------------------------

    def shell(self, argv: list[str] | str, timeout: float | None = None) -> tuple[int, str]:
        cmd = argv if isinstance(argv, str) else shlex.join(argv)
        t = timeout or self.command_timeout_s
        out = self._call(
            lambda d: d.shell(f"{cmd}; echo {_RC}$?", timeout_s=t, read_timeout_s=t, transport_timeout_s=self.timeout_s)
        )
        body, _, rc = out.rpartition(_RC)
        try:
            return int(rc.strip()), body
        except ValueError:
            raise _TransportBroken(f"output of {cmd!r} lost its exit status") from None

    def _push_file(self, local: Path, remote: str) -> None:
        self._call(
            lambda d: d.push(
                str(local), remote, transport_timeout_s=self.timeout_s, read_timeout_s=self.command_timeout_s
            )
        )

    def _remote_sums(self, remotes: list[str]) -> dict[str, str]:
        if not remotes:
            return {}
        rc, out = self.shell("sha256sum " + " ".join(shlex.quote(r) for r in remotes) + " 2>/dev/null")
        sums = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and len(parts[0]) == 64:
                sums[parts[1]] = parts[0]
        return sums

    def push_many(self, locals_: list[Path], subdir: str = "models") -> list[str]:
        """Push files once: only those whose sha256 on the phone differs (one round trip to compare)."""
        self._ensure_dir()
        remotes = [posixpath.join(DEVICE_DIR, subdir, Path(p).name) for p in locals_]
        have = self._remote_sums(remotes)
        for local, remote in zip(locals_, remotes):
            if have.get(remote) != sha256_file(local):
                self._push_file(Path(local), remote)
        return remotes

    def push(self, local: Path) -> str:
        return self.push_many([Path(local)])[0]

    def _ensure_dir(self) -> None:
        if not self._scripts_ready:
            rc, out = self.shell(f"mkdir -p {DEVICE_DIR}/models {DEVICE_DIR}/bin")
            if rc != 0:
                raise HnasError(f"cannot create {DEVICE_DIR} on {self.spec}: {out.strip()}")
            self._scripts_ready = True
            self.push_many(sorted(SCRIPTS.glob("*.sh")), subdir="bin")

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
        f = self.facts()
        core = self.core
        return {
            "id": self.spec,
            "kind": "phone",
            "model": f.get("model"),
            "manufacturer": f.get("manufacturer"),
            "cpu": f.get("soc") or f.get("platform") or f.get("hardware"),
            "board": f.get("board"),
            "abi": f.get("abi"),
            "cpus": len([k for k in f if k.startswith("cpu") and k.endswith(".online")]),
            "core": core,
            "core_capacity": int(f.get(f"cpu{core}.capacity", 0) or 0) or None,
            "core_max_khz": int(f.get(f"cpu{core}.max_khz", 0) or 0) or None,
            "governor": f.get(f"cpu{core}.governor"),
            "os": f"Android {f.get('android')} (SDK {f.get('sdk')})",
            "kernel": f.get("kernel"),
        }

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
        while remaining:
            binary = self._binary_on_phone()
            listing = self._push_list(remaining)
            flags = benchmark_flags(settings)
            cmd = shlex.join(
                [
                    "sh",
                    f"{DEVICE_DIR}/bin/batch.sh",
                    binary,
                    str(self.core),
                    self.sysfs,
                    f"{self.cool_s:g}",
                    listing,
                    *flags,
                ]
            )
            try:
                for out in split_batch(self._stream_lines(cmd)):
                    if out.model in remaining:
                        remaining.remove(out.model)
                    yield out
                if remaining:  # the stream ended early: the connection closed under us
                    raise _TransportBroken("the batch stream ended before every model was reported")
            except _TransportBroken as exc:
                self._reconnect(exc)

    def _push_list(self, models: list[str]) -> str:
        text = "\n".join(models) + "\n"
        name = "list-" + hashlib.sha256(text.encode()).hexdigest()[:12] + ".txt"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / name
            local.write_text(text)
            (remote,) = self.push_many([local], subdir="bin")
        return remote

    def _stream_lines(self, cmd: str) -> Iterator[str]:
        from adb_shell import exceptions as ex

        if self._dev is None:
            self.connect()
        buf = ""
        try:
            for chunk in self._dev.streaming_shell(
                cmd, transport_timeout_s=self.timeout_s, read_timeout_s=self.command_timeout_s
            ):
                buf += chunk
                *lines, buf = buf.split("\n")
                yield from lines
        except ex.AdbTimeoutError:
            raise HnasError(
                f"the benchmark batch on {self.spec} timed out after {self.command_timeout_s:g} s"
            ) from None
        except (
            ex.TcpTimeoutException,
            ex.AdbConnectionError,
            ex.InvalidChecksumError,
            ex.InvalidCommandError,
            ex.InvalidResponseError,
            ConnectionError,
            OSError,
            struct.error,
        ) as exc:
            raise _TransportBroken(str(exc)) from None
        if buf:
            yield buf

    # --- measurement hygiene ----------------------------------------------------------------------

    def throttled(self, out: BenchOutput) -> str | None:
        """Why this run must be re-measured: the core slowed down or the phone ran hot."""
        max_khz = int(self.facts().get(f"cpu{self.core}.max_khz", 0) or 0)
        for when in ("before", "after"):
            cond = out.conditions.get(when)
            if not cond:
                continue
            freq = cond.get("freq_khz")
            if max_khz and freq is not None and 0 < freq < self.min_freq_fraction * max_khz:
                return f"core {self.core} ran at {freq} kHz {when} (max {max_khz})"
            temp = cond.get("temp_mc")
            if temp is not None and _celsius(temp) > self.max_temp_c:
                return f"hottest thermal zone at {_celsius(temp):.1f} C {when} (limit {self.max_temp_c:g} C)"
        return None

    def cool_down(self) -> None:
        """Wait for the phone to cool."""
        time.sleep(self.cooldown_s)

    def _governor(self, action: str) -> str:
        self._ensure_dir()
        state = f"{DEVICE_DIR}/governor-cpu{self.core}.saved"
        rc, out = self.shell(f"sh {DEVICE_DIR}/bin/governor.sh {action} {self.core} {state} {shlex.quote(self.sysfs)}")
        if rc != 0:
            raise HnasError(f"{self.spec}: {out.strip().splitlines()[-1] if out.strip() else 'governor.sh failed'}")
        return out.strip()

    def set_performance(self) -> None:
        """Root only: performance governor on the pinned core (the old one is saved on the phone)."""
        self._governor("set")

    def restore_governor(self) -> None:
        """Put back the governor saved by `set_performance`."""
        self._governor("restore")


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
            dev.connect()
            row["model"] = dev.facts().get("model")
        except PhoneGone:
            row["state"] = "offline"
        except HnasError as exc:
            row["state"] = "unauthorized" if "authoriz" in str(exc) or "key" in str(exc) else "error"
        finally:
            dev.close()
        rows.append(row)
    return rows
