"""Reaching a phone over ADB (adb-shell): USB by serial, TCP by HOST:PORT, the same key file as the platform `adb`.

`AdbConnection` connects and authenticates, retries calls after transport errors (reconnecting with exponential
backoff), runs shell commands with their exit status, pushes only files whose sha256 on the phone differs, and
streams a command's output, running it again after a break. Every adb-shell and socket error stops here: callers
see `PhoneGone` (the phone went away; rerunning resumes) or `HnasError` (what to do), never a library exception.
"""

from __future__ import annotations

import os
import posixpath
import shlex
import struct
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from adb_shell import exceptions as ex
from adb_shell.adb_device import AdbDevice as AdbShellDevice
from adb_shell.adb_device import AdbDeviceTcp, AdbDeviceUsb
from adb_shell.auth.keygen import keygen
from adb_shell.auth.sign_pythonrsa import PythonRSASigner

from hnas.core.errors import DeviceGone, HnasError
from hnas.core.io import sha256_file
from latency import defaults

T = TypeVar("T")
_RC = "__hnas_rc="


class PhoneGone(DeviceGone):
    """The phone stopped answering and did not come back."""


class _TransportBroken(Exception):
    """Internal: the connection broke; reconnecting may help. Never leaves this module."""


# the connection broke under a call: reconnecting may help
_TRANSPORT_ERRORS = (
    _TransportBroken,
    ex.TcpTimeoutException,
    ex.AdbConnectionError,
    ex.InvalidChecksumError,
    ex.InvalidCommandError,
    ex.InvalidResponseError,
    ex.UsbReadFailedError,
    ex.UsbWriteFailedError,
    OSError,
    struct.error,
)
# the phone answered but refused the request: reconnecting will not help
_REFUSALS = (ex.AdbCommandFailureException, ex.PushFailedError, ex.DevicePathInvalidError)
# something answered the handshake, but not in ADB
_NOT_ADB = (ex.InvalidCommandError, ex.InvalidChecksumError)
# nothing answered the handshake in time, or the link failed
_NO_ANSWER = (ex.TcpTimeoutException, ex.AdbTimeoutError, ex.UsbReadFailedError, ex.UsbWriteFailedError, OSError)


def default_key_path() -> Path:
    """The platform adb's key: `$ADB_VENDOR_KEYS`-independent `~/.android/adbkey`."""
    return Path(os.environ.get("ANDROID_USER_HOME", Path.home() / ".android")) / "adbkey"


def load_signer(key_path: str | Path | None = None) -> PythonRSASigner:
    """An RSA signer for the adb key file, creating the key pair (as `adb` would) when absent."""
    path = Path(key_path) if key_path else default_key_path()
    if not path.is_file():
        create_key(path)
    pub = Path(str(path) + ".pub")
    return PythonRSASigner(pub.read_text() if pub.is_file() else None, path.read_text())


def create_key(path: Path) -> None:
    """A new adb key pair at `path` (private, mode 0600) and `path`.pub (0644), whatever the umask: its folder is
    created 0700 when absent, the pair is written in a private temporary folder beside it and moved into place, so
    the private key is never readable by others, not even for a moment. A key another process created meanwhile
    is kept."""
    folder = path.parent
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            folder.mkdir(mode=0o700)
            os.chmod(folder, 0o700)  # mkdir's mode is masked by the umask
        except FileExistsError:
            pass
    with tempfile.TemporaryDirectory(dir=folder, prefix=".adbkey-") as tmp:  # mkdtemp: mode 0700
        private = Path(tmp) / "adbkey"
        keygen(str(private))
        os.chmod(private, 0o600)
        os.chmod(str(private) + ".pub", 0o644)
        try:
            os.link(private, path)  # never replaces a key that appeared meanwhile
        except FileExistsError:
            return  # another process created the pair: keep it, with its public key
        except OSError:  # a file system without hard links
            os.replace(private, path)
        os.replace(str(private) + ".pub", str(path) + ".pub")


def _close_quietly(dev: AdbShellDevice) -> None:
    try:
        dev.close()
    except Exception:  # noqa: BLE001 - closing a broken transport
        pass


class AdbConnection:
    """One phone's ADB connection: connect, retrying calls, shell with exit status, checksummed push, streams."""

    def __init__(
        self,
        spec: str,
        key_path: str | Path | None = None,
        timeout_s: float = defaults.TIMEOUT_S,
        command_timeout_s: float = defaults.COMMAND_TIMEOUT_S,
        retries: int = defaults.RETRIES,
        backoff_s: float = defaults.BACKOFF_S,
    ):
        self.spec = spec
        self.key_path = key_path
        self.timeout_s = timeout_s
        self.command_timeout_s = command_timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self._dev: AdbShellDevice | None = None

    def _open(self) -> AdbShellDevice:
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
        dev = self._open()
        try:
            self._handshake(dev)
        except Exception:
            _close_quietly(dev)
            raise
        self._dev = dev

    def _handshake(self, dev: AdbShellDevice) -> None:
        signer = load_signer(self.key_path)
        prompted = []  # adb-shell calls back when the phone must show the "Allow USB debugging?" prompt
        try:
            dev.connect(
                rsa_keys=[signer],
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
        except _NOT_ADB as exc:
            raise HnasError(
                f"{self.spec} answered, but not as an ADB device ({type(exc).__name__}): is this the phone's "
                "wireless-debugging address (Developer options, or `adb tcpip 5555` over USB), and no other service?"
            ) from None
        except _NO_ANSWER as exc:
            if prompted or isinstance(exc, ex.AdbTimeoutError):
                raise HnasError(
                    f"phone {self.spec} is unauthorized: unlock it and accept the 'Allow USB "
                    f"debugging?' prompt for key {self.key_path or default_key_path()}, then rerun"
                ) from None
            raise PhoneGone(
                f"phone {self.spec} is offline or unreachable ({type(exc).__name__}: {exc}): reconnect it, then rerun"
            ) from None
        except Exception as exc:  # noqa: BLE001 - libusb's own errors (busy, access denied) when opening USB
            if ":" in self.spec:
                raise
            raise HnasError(
                f"phone {self.spec} on USB cannot be opened ({type(exc).__name__}: {exc}): stop any running adb "
                "server (`adb kill-server`), check that this user may open USB devices (udev rules), then rerun"
            ) from None

    def close(self) -> None:
        """Drop the connection."""
        if self._dev is not None:
            _close_quietly(self._dev)
            self._dev = None

    def reconnect(self, cause: Exception) -> None:
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

    def _device(self) -> AdbShellDevice:
        if self._dev is None:
            self.connect()
        assert self._dev is not None
        return self._dev

    def call(self, fn: Callable[[AdbShellDevice], T]) -> T:
        """Run an adb-shell call, reconnecting after transport errors; PhoneGone when they keep coming."""
        failures = 0
        while True:
            try:
                return fn(self._device())
            except ex.AdbTimeoutError:
                raise HnasError(f"command timed out on {self.spec} after {self.command_timeout_s:g} s") from None
            except _REFUSALS as exc:
                raise self._refused(exc) from None
            except _TRANSPORT_ERRORS as exc:
                failures += 1
                if failures > self.retries:
                    raise PhoneGone(f"phone {self.spec} keeps dropping the connection ({exc})") from None
                self.reconnect(exc)

    def _refused(self, exc: Exception) -> HnasError:
        return HnasError(
            f"phone {self.spec} refused the request ({type(exc).__name__}: {exc}): check that "
            f"`adb -s {self.spec} shell` works and that /data/local/tmp has free space"
        )

    def shell(self, cmd: str | list[str], timeout: float | None = None) -> tuple[int, str]:
        """Run a shell command; returns (exit status, stdout+stderr). A reply without its status is retried."""
        line = cmd if isinstance(cmd, str) else shlex.join(cmd)
        t = self.command_timeout_s if timeout is None else timeout

        def run(dev: AdbShellDevice) -> tuple[int, str]:
            out = dev.shell(f"{line}; echo {_RC}$?", timeout_s=t, read_timeout_s=t, transport_timeout_s=self.timeout_s)
            body, marker, rc = out.rpartition(_RC)
            if not marker or not rc.strip().isdigit():
                raise _TransportBroken(f"output of {line!r} lost its exit status")
            return int(rc.strip()), body

        return self.call(run)

    def push_many(self, locals_: list[Path], remote_dir: str) -> list[str]:
        """Push files into `remote_dir`, only those whose sha256 there differs (one round trip to compare)."""
        remotes = [posixpath.join(remote_dir, Path(p).name) for p in locals_]
        have = self._remote_sums(remotes)
        for local, remote in zip(locals_, remotes):
            if have.get(remote) != sha256_file(local):
                self._push_file(Path(local), remote)
        return remotes

    def _push_file(self, local: Path, remote: str) -> None:
        self.call(
            lambda d: d.push(
                str(local), remote, transport_timeout_s=self.timeout_s, read_timeout_s=self.command_timeout_s
            )
        )

    def _remote_sums(self, remotes: list[str]) -> dict[str, str]:
        if not remotes:
            return {}
        _, out = self.shell("sha256sum " + " ".join(shlex.quote(r) for r in remotes) + " 2>/dev/null")
        sums = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and len(parts[0]) == 64:
                sums[parts[1]] = parts[0]
        return sums

    def stream(
        self,
        what: str,
        command: Callable[[], str],
        parse: Callable[[Iterator[str]], Iterable[T]],
        finished: Callable[[], bool],
    ) -> Iterator[T]:
        """Items that `parse` reads from the output lines of `command()` as the phone prints them.

        When the connection breaks, or the output ends before `finished()`, it reconnects and runs `command()`
        again (which should skip what is done); PhoneGone after more than `retries` breaks with no item between.
        """
        failures = 0
        while not finished():
            progressed = False
            try:
                for item in parse(self._lines(what, command())):
                    progressed = True
                    yield item
                if finished():
                    return
                raise _TransportBroken(f"the output of {what} ended before it was complete")
            except _TransportBroken as exc:
                failures = 1 if progressed else failures + 1
                if failures > self.retries:
                    raise PhoneGone(
                        f"phone {self.spec} is gone: {what} broke {failures} times in a row ({exc}); reconnect "
                        "it and rerun the same command to resume"
                    ) from None
                self.reconnect(exc)

    def _lines(self, what: str, cmd: str) -> Iterator[str]:
        buf = ""
        try:
            for chunk in self._device().streaming_shell(
                cmd, transport_timeout_s=self.timeout_s, read_timeout_s=self.command_timeout_s
            ):
                buf += chunk
                *lines, buf = buf.split("\n")
                yield from lines
        except ex.AdbTimeoutError:
            raise HnasError(f"{what} on {self.spec} timed out after {self.command_timeout_s:g} s") from None
        except _REFUSALS as exc:
            raise self._refused(exc) from None
        except _TRANSPORT_ERRORS as exc:
            raise _TransportBroken(str(exc)) from None
        if buf:
            yield buf
