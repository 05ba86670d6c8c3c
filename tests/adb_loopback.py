"""A loopback ADB device for tests: a TCP server on 127.0.0.1 that speaks the device side of the ADB protocol.

It emulates a Google Pixel 3 (Snapdragon 845) well enough for the `adb-shell` Python client and Debian's `adb`:

    with LoopbackPhone(tmp_path / "phone", authorized_keys=[pub_text]) as phone:
        dev = AdbDeviceTcp("127.0.0.1", phone.port); dev.connect(rsa_keys=[signer])
        dev.shell("getprop ro.product.model")      # "Pixel 3\n"

Wire protocol: CNXN, AUTH (token, signature, RSA public key), OPEN/OKAY/WRTE/CLSE streams with one WRTE in
flight per stream, and the services `shell:`/`exec:` (plain v1 shell: stdout and stderr merged, streamed as
they are produced, no exit status) and `sync:` v1 (STAT, LIST, SEND, RECV, QUIT). The banner advertises no
shell_v2/stat_v2/sendrecv_v2/delayed_ack, so clients use the plain services.

The phone's storage is a folder: Android paths under /data, /sdcard and /sys live under `<root>/data…`,
`<root>/sdcard…`, `<root>/sys…` (shell command text and sync paths are rewritten, and `<root>` is removed from
shell output). `<root>/sys` holds a fake SDM845 sysfs; shims on the shell's PATH stand in for `getprop`,
`taskset` (which runs the host's `python -m latency.runner` when asked to run an aarch64 ELF, i.e. the
phone's benchmark_model), `id` (uid 2000 "shell" unless `rooted`) and `uname`. `faults` injects failures.
"""

from __future__ import annotations

import base64
import json
import os
import posixpath
import queue
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _wire(name: bytes) -> int:
    return struct.unpack("<I", name)[0]


A_CNXN, A_AUTH, A_OPEN, A_OKAY, A_WRTE, A_CLSE = (
    _wire(c) for c in (b"CNXN", b"AUTH", b"OPEN", b"OKAY", b"WRTE", b"CLSE")
)
AUTH_TOKEN, AUTH_SIGNATURE, AUTH_RSAPUBLICKEY = 1, 2, 3
VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
MAX_HOST_PAYLOAD = 1024 * 1024
SYNC_DATA_MAX = 64 * 1024
TOKEN_SIZE = 20
BANNER = b"device::ro.product.name=blueline;ro.product.model=Pixel 3;ro.product.device=blueline;features=cmd"

PIXEL3_PROPS = {
    "ro.product.model": "Pixel 3",
    "ro.product.manufacturer": "Google",
    "ro.product.board": "blueline",
    "ro.product.name": "blueline",
    "ro.product.device": "blueline",
    "ro.board.platform": "sdm845",
    "ro.soc.model": "SDM845",
    "ro.hardware": "blueline",
    "ro.product.cpu.abi": "arm64-v8a",
    "ro.build.version.release": "12",
    "ro.build.version.sdk": "31",
    "ro.serialno": "LOOPBACK01",
}
PIXEL3_KERNEL = "4.9.270-g862f51bac900-ab7613625"
# (capacity, max kHz) per core: cpu0-3 Kryo 385 Silver, cpu4-7 Kryo 385 Gold
SDM845_CORES = [(396, 1766400)] * 4 + [(1024, 2803200)] * 4
SDM845_ZONES = [("cpu0-silver-usr", 35000), ("cpu4-gold-usr", 36500), ("gpu0-usr", 34000), ("skin-therm", 38000)]

# An Android absolute path prefix, not inside another word or path: /data, /sdcard, /sys (not /system)
ANDROID_PATH = re.compile(r"(?<![\w./-])/(?:data|sdcard|sys)(?![\w.-])")

FAULT_NAMES = ("drop_after_bytes", "stall_s", "refuse_auth", "crash_benchmark", "garbage")


class _Closed(Exception):
    """The stream or the connection went away."""


class Faults:
    """Failures to inject, settable at any time.

    drop_after_bytes: int | None -- once the device has sent that many more bytes (counted from when this is
        set, over all connections), every client socket is reset; one-shot (it goes back to None), and the
        phone keeps listening so a reconnect works.
    stall_s: float -- the next `shell:`/`exec:` stream waits that long before answering its OPEN (one-shot).
    refuse_auth: bool -- a public key that is not authorized is never accepted and the phone stays silent
        (the user never taps Allow); authorized keys still work.
    crash_benchmark: bool -- the taskset shim prints `Segmentation fault` and exits 139 instead of running the
        benchmark binary.
    garbage: bool -- the taskset shim prints random text that is no benchmark output and exits 0.
    """

    def __init__(self, on_change=None):
        object.__setattr__(self, "_on_change", None)
        object.__setattr__(self, "_sent", 0)
        self.clear()
        object.__setattr__(self, "_on_change", on_change)

    def clear(self) -> None:
        """Back to a healthy phone."""
        self.drop_after_bytes = None
        self.stall_s = 0.0
        self.refuse_auth = False
        self.crash_benchmark = False
        self.garbage = False

    def __setattr__(self, name, value):
        if name not in FAULT_NAMES:
            raise AttributeError(f"unknown fault {name!r}; faults are {', '.join(FAULT_NAMES)}")
        object.__setattr__(self, name, value)
        if name == "drop_after_bytes":
            object.__setattr__(self, "_sent", 0)
        if self._on_change is not None:
            self._on_change()

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in FAULT_NAMES}


def parse_android_pubkey(text: str | bytes) -> rsa.RSAPublicKey:
    """Android's `adbkey.pub` format: base64 of (len, n0inv, n[len], rr[len], e) little-endian u32s, then a name."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    fields = text.replace("\0", " ").split()
    if not fields:
        raise ValueError("empty public key")
    blob = base64.b64decode(fields[0])
    (words,) = struct.unpack_from("<I", blob, 0)
    nbytes = 4 * words
    if words == 0 or len(blob) != 8 + 2 * nbytes + 4:
        raise ValueError(f"not an Android RSA public key ({len(blob)} bytes for {words} words)")
    n = int.from_bytes(blob[8 : 8 + nbytes], "little")
    (e,) = struct.unpack_from("<I", blob, 8 + 2 * nbytes)
    return rsa.RSAPublicNumbers(e, n).public_key()


def make_elf_aarch64(path: str | Path) -> Path:
    """Write a minimal executable whose ELF64 header says aarch64 (e_machine 183), like benchmark_model."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, version 1, System V ABI
    # e_type DYN (a PIE, as Android builds it), e_machine AARCH64, e_version 1, no entry/headers
    header = struct.pack("<16sHHIQQQIHHHHHH", ident, 3, 183, 1, 0, 0, 0, 0, 64, 56, 0, 64, 0, 0)
    path = Path(path)
    path.write_bytes(header)
    path.chmod(0o755)
    return path


def is_elf_aarch64(path: str | Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[:4] == b"\x7fELF" and struct.unpack_from("<H", head, 18)[0] == 183


class _Unroot:
    """Removes `<root>` from a byte stream, holding back a tail that may be the start of a split `<root>`."""

    def __init__(self, root: bytes):
        self.root, self.held = root, b""

    def feed(self, chunk: bytes) -> bytes:
        buf = (self.held + chunk).replace(self.root, b"")
        keep = 0
        for k in range(min(len(self.root) - 1, len(buf)), 0, -1):
            if self.root.startswith(buf[-k:]):
                keep = k
                break
        self.held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep]

    def flush(self) -> bytes:
        out, self.held = self.held, b""
        return out


class _Stream:
    """One ADB stream: device id `local`, host id `remote`."""

    def __init__(self, conn: _Connection, local: int, remote: int, service: str):
        self.conn, self.local, self.remote, self.service = conn, local, remote, service
        self.ready = threading.Event()  # may send the next WRTE
        self.ready.set()
        self.dead = False  # closed by the host or the connection is gone
        self.sent_close = False
        self.close_lock = threading.Lock()
        self.inbox: queue.Queue = queue.Queue()  # host data; None when closed
        self.proc: subprocess.Popen | None = None

    def write(self, data: bytes) -> None:
        step = self.conn.max_payload
        for i in range(0, len(data), step):
            self.ready.wait()
            if self.dead:
                raise _Closed
            self.ready.clear()
            self.conn.send(A_WRTE, self.local, self.remote, data[i : i + step])

    def close(self) -> None:
        """Device-side close (the host answers with its own CLSE)."""
        with self.close_lock:
            if self.sent_close or self.dead:
                return
            self.sent_close = True
        try:
            self.conn.send(A_CLSE, self.local, self.remote)
        except _Closed:
            pass

    def kill(self) -> None:
        self.dead = True
        self.ready.set()
        self.inbox.put(None)
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass


class _Connection:
    """One client (a host) connected to the phone; its reader runs in its own thread."""

    def __init__(self, phone: LoopbackPhone, sock: socket.socket):
        self.phone, self.sock = phone, sock
        self.send_lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}
        self.next_id = 1
        self.online = False
        self.version = VERSION
        self.max_payload = MAX_PAYLOAD
        self.token: bytes | None = None
        self.closed = False

    # -- transport --------------------------------------------------------------------------------------------
    def send(self, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        packet = struct.pack("<6I", cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF) + bytes(data)
        with self.send_lock:
            if self.closed:
                raise _Closed
            allowed = self.phone._charge(len(packet))
            try:
                if allowed is None:
                    self.sock.sendall(packet)
                    return
                self.sock.sendall(packet[:allowed])
            except OSError:
                self.abort()
                raise _Closed from None
        self.phone._drop_connections()
        raise _Closed

    def abort(self) -> None:
        """Reset the connection: wake the reader thread, whose close() then sends a TCP RST (no polite FIN)."""
        self.closed = True
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.shutdown(socket.SHUT_RD)
        except OSError:
            pass

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise _Closed
            buf += chunk
        return bytes(buf)

    def run(self) -> None:
        try:
            while not self.closed:
                cmd, arg0, arg1, length, _check, magic = struct.unpack("<6I", self._recv_exact(24))
                if magic != cmd ^ 0xFFFFFFFF or length > MAX_HOST_PAYLOAD:
                    break  # not ADB: hang up like adbd does
                # hosts at version >= 0x01000001 send data_check 0, so it is not verified
                self.handle(cmd, arg0, arg1, self._recv_exact(length) if length else b"")
        except (_Closed, OSError):
            pass
        finally:
            self.abort()
            for stream in list(self.streams.values()):
                stream.kill()
            self.streams.clear()
            try:
                self.sock.close()
            except OSError:
                pass
            self.phone._forget(self)

    # -- packets ----------------------------------------------------------------------------------------------
    def handle(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        if cmd == A_CNXN:
            for stream in list(self.streams.values()):
                stream.kill()
            self.streams.clear()
            self.online = False
            self.version = min(arg0, VERSION)
            self.max_payload = max(1024, min(arg1, MAX_PAYLOAD))
            self._send_token()
        elif cmd == A_AUTH:
            self._auth(arg0, data)
        elif not self.online:
            return  # adbd ignores everything else until the host is authorized
        elif cmd == A_OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif cmd == A_OKAY:
            stream = self.streams.get(arg1)
            if stream is not None:
                stream.ready.set()
        elif cmd == A_WRTE:
            stream = self.streams.get(arg1)
            if stream is None:
                self.send(A_CLSE, 0, arg0)
                return
            stream.inbox.put(data)
            self.send(A_OKAY, arg1, arg0)
        elif cmd == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream is not None:
                with stream.close_lock:
                    answer, stream.sent_close = not stream.sent_close, True
                if answer:
                    self.send(A_CLSE, stream.local, stream.remote)
                stream.kill()

    def _send_token(self) -> None:
        self.token = os.urandom(TOKEN_SIZE)
        self.send(A_AUTH, AUTH_TOKEN, 0, self.token)

    def _go_online(self) -> None:
        self.online = True
        self.token = None
        self.send(A_CNXN, self.version, MAX_PAYLOAD, BANNER)

    def _auth(self, kind: int, data: bytes) -> None:
        if self.online:
            return
        if kind == AUTH_SIGNATURE:
            if self.token is not None and self.phone._verify(self.token, data):
                self._go_online()
            else:
                self._send_token()
        elif kind == AUTH_RSAPUBLICKEY:
            if self.phone.faults.refuse_auth or not self.phone.accept_new_keys:
                return  # the user never taps "Allow": say nothing
            try:
                self.phone.authorize(data)
            except ValueError:
                return
            self._go_online()

    def _open(self, remote: int, service: str) -> None:
        local = self.next_id
        self.next_id += 1
        stream = _Stream(self, local, remote, service)
        kind, _, arg = service.partition(":")
        if kind in ("shell", "exec"):
            target = self.phone._run_shell
        elif kind == "sync":
            target = self.phone._run_sync
        elif kind == "root":
            target = self.phone._run_root
        else:
            self.send(A_CLSE, 0, remote)  # adbd's answer to an unknown service
            return
        self.streams[local] = stream
        threading.Thread(target=self.phone._serve, args=(target, stream, arg), daemon=True).start()


class LoopbackPhone:
    """A Pixel 3 on 127.0.0.1 speaking the device side of ADB (see the module docstring).

    root: the phone's storage folder (created). authorized_keys: Android public keys (adbkey.pub text) whose
    signatures are accepted. accept_new_keys: whether a new public key sent by a host is accepted ("Allow").
    """

    def __init__(self, root: str | Path, authorized_keys=(), accept_new_keys: bool = True):
        self.root = Path(root).resolve()
        self.accept_new_keys = accept_new_keys
        self.rooted = False  # `id -u` says 0 and `adb root` succeeds when True
        self.props = dict(PIXEL3_PROPS)
        self.port: int | None = None
        self.adbkey: Path | None = None  # the fixture's host private key (adbkey.pub beside it)
        self._keys: dict[tuple[int, int], rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()
        self._conns: set[_Connection] = set()
        self._listener: socket.socket | None = None
        self._accepting: threading.Thread | None = None
        self._stopping = threading.Event()
        self.shim_dir = self.root / ".loopback" / "bin"
        self.faults = Faults(self._write_faults)
        for key in authorized_keys:
            self.authorize(key)
        self._make_tree()

    # -- public ------------------------------------------------------------------------------------------------
    @property
    def serial(self) -> str:
        if self.port is None:
            raise RuntimeError("the phone is not started")
        return f"127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (a free port, or `port` to come back where a stopped phone was); returns it."""
        if self._listener is not None:
            return self.port
        self._write_shims()
        self._write_faults()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
        sock.settimeout(0.1)
        self._listener, self.port = sock, sock.getsockname()[1]
        self._stopping.clear()
        self._accepting = threading.Thread(target=self._accept_loop, name=f"adb-loopback-{self.port}", daemon=True)
        self._accepting.start()
        return self.port

    def stop(self) -> None:
        """The phone vanishes: the listener and every connection close, running commands are killed."""
        self._stopping.set()
        if self._accepting is not None:
            self._accepting.join(timeout=2)
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        self._drop_connections()

    def __enter__(self) -> LoopbackPhone:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def authorize(self, public_key: str | bytes) -> None:
        """Add an Android public key (adbkey.pub text) to the authorized keys."""
        key = parse_android_pubkey(public_key)
        numbers = key.public_numbers()
        with self._lock:
            self._keys[(numbers.n, numbers.e)] = key

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self._conns)

    def host_path(self, android_path: str) -> Path:
        """Where an absolute Android path lives on this machine (never outside the root)."""
        clean = posixpath.normpath("/" + android_path.lstrip("/"))
        return self.root / clean.lstrip("/")

    def to_host_text(self, text: str) -> str:
        """Rewrite Android paths (/data, /sdcard, /sys prefixes) in shell text to the root."""
        return ANDROID_PATH.sub(lambda m: str(self.root) + m.group(0), text)

    def cpu_dir(self, core: int) -> Path:
        return self.root / "sys" / "devices" / "system" / "cpu" / f"cpu{core}"

    def set_core_freq(self, core: int, khz: int) -> None:
        """Current frequency of a core (scaling_cur_freq), e.g. to emulate throttling."""
        (self.cpu_dir(core) / "cpufreq" / "scaling_cur_freq").write_text(f"{int(khz)}\n")

    def set_temp(self, zone: int, millicelsius: int) -> None:
        """Temperature of thermal_zoneN in millidegrees Celsius."""
        (self.root / "sys" / "class" / "thermal" / f"thermal_zone{zone}" / "temp").write_text(f"{int(millicelsius)}\n")

    def set_online(self, core: int, online: bool) -> None:
        (self.cpu_dir(core) / "online").write_text("1\n" if online else "0\n")

    def set_governor(self, core: int, governor: str) -> None:
        (self.cpu_dir(core) / "cpufreq" / "scaling_governor").write_text(governor + "\n")

    # -- device tree and shims -----------------------------------------------------------------------------------
    def _make_tree(self) -> None:
        for sub in ("data/local/tmp", "sdcard"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        cpus = self.root / "sys" / "devices" / "system" / "cpu"
        for core, (capacity, max_khz) in enumerate(SDM845_CORES):
            freq = self.cpu_dir(core) / "cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            (self.cpu_dir(core) / "online").write_text("1\n")
            (self.cpu_dir(core) / "cpu_capacity").write_text(f"{capacity}\n")
            files = {
                "cpuinfo_max_freq": max_khz,
                "cpuinfo_min_freq": 300000,
                "scaling_max_freq": max_khz,
                "scaling_min_freq": 300000,
                "scaling_cur_freq": max_khz,
                "scaling_governor": "schedutil",
                "scaling_available_governors": "performance powersave schedutil",
            }
            for name, value in files.items():
                (freq / name).write_text(f"{value}\n")
        last = len(SDM845_CORES) - 1
        for name in ("online", "possible", "present"):
            (cpus / name).write_text(f"0-{last}\n")
        for zone, (kind, temp) in enumerate(SDM845_ZONES):
            d = self.root / "sys" / "class" / "thermal" / f"thermal_zone{zone}"
            d.mkdir(parents=True, exist_ok=True)
            (d / "type").write_text(kind + "\n")
            (d / "temp").write_text(f"{temp}\n")

    def _write_shims(self) -> None:
        self.shim_dir.mkdir(parents=True, exist_ok=True)
        cases = "".join(f"  {_sh_quote(k)}) echo {_sh_quote(v)} ;;\n" for k, v in self.props.items())
        listing = "".join(f"[{k}]: [{v}]\n" for k, v in sorted(self.props.items()))
        getprop = (
            f"#!/bin/sh\nif [ $# -eq 0 ]; then\n  printf '%s' {_sh_quote(listing)}\n  exit 0\nfi\ncase \"$1\" in\n"
        )
        getprop += cases + '  *) echo "${2:-}" ;;\nesac\n'
        ident = (
            '#!/bin/sh\nuid=${HNAS_LOOPBACK_UID:-2000}\nname=shell\n[ "$uid" = 0 ] && name=root\n'
            'case "$1" in\n  -u) echo "$uid" ;;\n  -un|-nu) echo "$name" ;;\n'
            '  *) echo "uid=$uid($name) gid=$uid($name) groups=$uid($name) context=u:r:shell:s0" ;;\nesac\n'
        )
        uname = (
            '#!/bin/sh\ncase "$1" in\n  -r) echo ' + PIXEL3_KERNEL + " ;;\n  -m) echo aarch64 ;;\n"
            "  -a) echo 'Linux localhost " + PIXEL3_KERNEL + " #1 SMP PREEMPT aarch64 Toybox' ;;\n"
            "  *) echo Linux ;;\nesac\n"
        )
        taskset = _TASKSET_SHIM.format(
            python=sys.executable,
            root=str(self.root),
            project=str(PROJECT_ROOT),
            faults=str(self.shim_dir.parent / "faults.json"),
            pattern=ANDROID_PATH.pattern,
        )
        for name, text in (("getprop", getprop), ("id", ident), ("uname", uname), ("taskset", taskset)):
            path = self.shim_dir / name
            path.write_text(text)
            path.chmod(0o755)

    def _write_faults(self) -> None:
        target = self.shim_dir.parent / "faults.json"
        if not target.parent.is_dir():
            return
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.faults.as_dict()))
        tmp.replace(target)

    def _shell_env(self) -> dict:
        env = dict(os.environ)
        env.update(
            PATH=f"{self.shim_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            HOME=str(self.root / "data" / "local" / "tmp"),
            TMPDIR=str(self.root / "data" / "local" / "tmp"),
            HNAS_LOOPBACK_UID="0" if self.rooted else "2000",
            ANDROID_DATA="/data",
            EXTERNAL_STORAGE="/sdcard",
        )
        return env

    # -- connections -----------------------------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        listener = self._listener
        while not self._stopping.is_set():
            try:
                sock, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=conn.run, name=f"adb-loopback-conn-{self.port}", daemon=True).start()

    def _forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _drop_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.abort()
            for stream in list(conn.streams.values()):
                stream.kill()

    def _charge(self, n: int) -> int | None:
        """Count n bytes about to be sent; returns how many may go before the drop, or None for all."""
        with self._lock:
            limit = self.faults.drop_after_bytes
            if limit is None:
                return None
            left = int(limit) - self.faults._sent
            if n < left:
                object.__setattr__(self.faults, "_sent", self.faults._sent + n)
                return None
        self.faults.drop_after_bytes = None  # one-shot, so that a reconnect works
        return max(left, 0)

    def _verify(self, token: bytes, signature: bytes) -> bool:
        with self._lock:
            keys = list(self._keys.values())
        for key in keys:
            try:
                key.verify(signature, token, padding.PKCS1v15(), utils.Prehashed(hashes.SHA1()))
                return True
            except (InvalidSignature, ValueError):
                continue
        return False

    # -- services --------------------------------------------------------------------------------------------------
    def _serve(self, target, stream: _Stream, arg: str) -> None:
        try:
            target(stream, arg)
        except (_Closed, OSError):
            pass
        finally:
            stream.kill()

    def _run_root(self, stream: _Stream, _arg: str) -> None:
        stream.conn.send(A_OKAY, stream.local, stream.remote)
        msg = "adbd is already running as root\n" if self.rooted else "adbd cannot run as root in production builds\n"
        stream.write(msg.encode())
        stream.close()

    def _run_shell(self, stream: _Stream, command: str) -> None:
        stall = self.faults.stall_s
        if stall:
            self.faults.stall_s = 0.0
            time.sleep(float(stall))
        if stream.dead:
            return
        stream.conn.send(A_OKAY, stream.local, stream.remote)
        argv = ["/bin/sh", "-c", self.to_host_text(command)] if command.strip() else ["/bin/sh"]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=self._shell_env(),
            start_new_session=True,
        )
        stream.proc = proc
        if stream.dead:
            stream.kill()
        threading.Thread(target=_feed_stdin, args=(stream, proc), daemon=True).start()
        unroot = _Unroot(str(self.root).encode())
        fd = proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                out = unroot.feed(chunk)
                if out:
                    stream.write(out)
            tail = unroot.flush()
            if tail:
                stream.write(tail)
            proc.wait()
            stream.close()
        finally:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                proc.wait()
            proc.stdout.close()

    def _run_sync(self, stream: _Stream, _arg: str) -> None:
        stream.conn.send(A_OKAY, stream.local, stream.remote)
        buf = bytearray()

        def need(n: int) -> bytes:
            while len(buf) < n:
                item = stream.inbox.get()
                if item is None:
                    raise _Closed
                buf.extend(item)
            out = bytes(buf[:n])
            del buf[:n]
            return out

        def reply(rid: bytes, *words: int, data: bytes = b"") -> None:
            stream.write(rid + struct.pack(f"<{len(words)}I", *words) + data)

        def fail(message: str) -> None:
            msg = message.encode()
            reply(b"FAIL", len(msg), data=msg)

        while True:
            header = need(8)
            rid, length = header[:4], struct.unpack_from("<I", header, 4)[0]
            if rid == b"QUIT":
                stream.close()
                return
            if rid not in (b"STAT", b"LIST", b"SEND", b"RECV"):
                fail(f"unknown command {rid!r}")
                stream.close()
                return
            if length > 1024:
                fail("path too long")
                stream.close()
                return
            path = need(length).decode("utf-8", "replace")
            if rid == b"STAT":
                try:
                    st = os.lstat(self.host_path(path))
                    reply(b"STAT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF)
                except OSError:
                    reply(b"STAT", 0, 0, 0)
            elif rid == b"LIST":
                self._sync_list(path, reply)
            elif rid == b"RECV":
                self._sync_recv(path, stream, reply, fail)
            else:
                self._sync_send(path, need, reply, fail)

    def _sync_list(self, path: str, reply) -> None:
        target = self.host_path(path)
        try:
            names = [".", ".."] + sorted(os.listdir(target))
        except OSError:
            names = []
        for name in names:
            try:
                st = os.lstat(target / name)
            except OSError:
                continue
            raw = name.encode("utf-8", "surrogateescape")
            reply(b"DENT", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime) & 0xFFFFFFFF, len(raw), data=raw)
        reply(b"DONE", 0, 0, 0, 0)

    def _sync_recv(self, path: str, stream: _Stream, reply, fail) -> None:
        try:
            fh = open(self.host_path(path), "rb")
        except OSError as exc:
            fail(f"open failed: {exc.strerror}")
            return
        with fh:
            while True:
                try:
                    chunk = fh.read(SYNC_DATA_MAX)
                except OSError as exc:
                    fail(f"read failed: {exc.strerror}")
                    return
                if not chunk:
                    break
                reply(b"DATA", len(chunk), data=chunk)
        reply(b"DONE", 0)

    def _sync_send(self, spec: str, need, reply, fail) -> None:
        path, _, mode_text = spec.rpartition(",")
        if not path:
            path, mode_text = spec, "33188"
        try:
            mode = int(mode_text)
        except ValueError:
            mode = 0o100644
        target = self.host_path(path)
        error = None
        fh = None
        try:
            if target.is_dir():
                raise IsADirectoryError(21, "Is a directory")
            target.parent.mkdir(parents=True, exist_ok=True)
            fh = open(target, "wb")
        except OSError as exc:
            error = f"couldn't create file: {exc.strerror}"
        mtime = 0
        try:
            while True:  # the data comes whether or not the file opened; adbd reads it all
                header = need(8)
                rid, length = header[:4], struct.unpack_from("<I", header, 4)[0]
                if rid == b"DONE":
                    mtime = length
                    break
                if rid != b"DATA":
                    error = error or f"invalid data message {rid!r}"
                    break
                data = need(length)
                if fh is not None and error is None:
                    try:
                        fh.write(data)
                    except OSError as exc:
                        error = f"write failed: {exc.strerror}"
        finally:
            if fh is not None:
                fh.close()
        if error is not None:
            fail(error)
            return
        os.chmod(target, stat.S_IMODE(mode) or 0o644)
        if mtime:
            os.utime(target, (mtime, mtime))
        reply(b"OKAY", 0)


def _feed_stdin(stream: _Stream, proc: subprocess.Popen) -> None:
    """Host data written to a shell stream goes to the command's stdin."""
    try:
        while True:
            item = stream.inbox.get()
            if item is None:
                break
            proc.stdin.write(item)
            proc.stdin.flush()
    except (OSError, ValueError):
        pass
    finally:
        try:
            proc.stdin.close()
        except (OSError, ValueError):
            pass


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


_TASKSET_SHIM = '''#!{python}
"""taskset on the loopback phone: an aarch64 ELF (benchmark_model) runs as the host's latency.runner."""
import json, os, random, re, shutil, struct, sys

ROOT = {root!r}
PROJECT = {project!r}
FAULTS = {faults!r}
PATTERN = re.compile({pattern!r})


def is_elf_aarch64(path):
    try:
        with open(path, "rb") as fh:
            head = fh.read(20)
    except OSError:
        return False
    return len(head) == 20 and head[:4] == b"\\x7fELF" and struct.unpack_from("<H", head, 18)[0] == 183


def main(argv):
    while argv and argv[0] == "-a":
        argv = argv[1:]
    if len(argv) < 2 or argv[0].startswith("-"):
        sys.stderr.write("usage: taskset [-a] MASK COMMAND [ARGS...]\\n")
        return 1
    try:
        mask = int(argv[0], 16)
    except ValueError:
        sys.stderr.write("taskset: bad mask %r\\n" % argv[0])
        return 1
    cores = [i for i in range(64) if mask >> i & 1]
    if not cores:
        sys.stderr.write("taskset: sched_setaffinity: Invalid argument\\n")
        return 1
    host = sorted(os.sched_getaffinity(0))
    cpu = host[cores[0] % len(host)]
    cmd, args = argv[1], argv[2:]
    path = cmd if "/" in cmd else (shutil.which(cmd) or cmd)
    if not os.path.exists(path):
        sys.stderr.write("taskset: exec %s: No such file or directory\\n" % cmd)
        return 127
    if is_elf_aarch64(path):
        if not os.access(path, os.X_OK):
            sys.stderr.write("taskset: exec %s: Permission denied\\n" % cmd)
            return 126
        try:
            with open(FAULTS) as fh:
                faults = json.load(fh)
        except (OSError, ValueError):
            faults = {{}}
        if faults.get("crash_benchmark"):
            sys.stdout.write("Segmentation fault\\n")
            return 139
        if faults.get("garbage"):
            rng = random.Random()
            for _ in range(rng.randint(3, 12)):
                abc = "abcdefghijklmnopqrstuvwxyz0123456789#@%"
                words = ("".join(rng.choice(abc) for _ in range(rng.randint(1, 9))) for _ in range(rng.randint(1, 8)))
                sys.stdout.write(" ".join(words) + "\\n")
            return 0
        args = [PATTERN.sub(lambda m: ROOT + m.group(0), a) for a in args]
        env = dict(os.environ)
        env["PYTHONPATH"] = PROJECT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "latency.runner", "--core=%d" % cpu] + args, env)
    try:
        os.sched_setaffinity(0, {{cpu}})
    except OSError:
        pass
    try:
        os.execvp(path, [cmd] + args)
    except OSError as exc:
        sys.stderr.write("taskset: exec %s: %s\\n" % (cmd, exc.strerror))
        return 126


sys.exit(main(sys.argv[1:]))
'''


# -- helpers for tests -------------------------------------------------------------------------------------------------
def adb_shell_signer(key_path: str | Path):
    """An adb-shell signer for a private key written by `adb_shell.auth.keygen.keygen` (adbkey.pub beside it)."""
    from adb_shell.auth.sign_pythonrsa import PythonRSASigner

    key_path = Path(key_path)
    return PythonRSASigner(Path(f"{key_path}.pub").read_text(), key_path.read_text())


def connect_adb_shell(phone: LoopbackPhone, key_path: str | Path | None = None, timeout_s: float = 3.0):
    """A connected `adb_shell` AdbDeviceTcp for the phone (the fixture's key by default)."""
    from adb_shell.adb_device import AdbDeviceTcp

    dev = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=timeout_s)
    dev.connect(
        rsa_keys=[adb_shell_signer(key_path or phone.adbkey)], auth_timeout_s=timeout_s, read_timeout_s=timeout_s
    )
    return dev


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def debian_adb_env(home: str | Path, adbkey: str | Path | None = None) -> dict:
    """Environment for Debian's `adb` isolated in `home`: own ~/.android (with `adbkey` copied in when given),
    own TMPDIR (the server log) and own server port, so the user's adb server and keys are untouched."""
    home = Path(home)
    (home / ".android").mkdir(parents=True, exist_ok=True)
    if adbkey is not None:
        shutil.copy(adbkey, home / ".android" / "adbkey")
        shutil.copy(f"{adbkey}.pub", home / ".android" / "adbkey.pub")
    env = {k: v for k, v in os.environ.items() if k not in ("ADB_VENDOR_KEYS", "ANDROID_SERIAL", "ANDROID_USER_HOME")}
    env.update(HOME=str(home), ANDROID_SDK_HOME=str(home), TMPDIR=str(home), ANDROID_ADB_SERVER_PORT=str(free_port()))
    return env
