"""The loopback ADB phone speaks ADB well enough for adb-shell and Debian's adb, and emulates a Pixel 3."""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from adb_shell.auth.keygen import keygen
from adb_shell.exceptions import AdbConnectionError, AdbTimeoutError, InvalidChecksumError, TcpTimeoutException

from latency.items import items_for_space
from tests.adb_loopback import (
    LoopbackPhone,
    adb_shell_signer,
    connect_adb_shell,
    debian_adb_env,
    make_elf_aarch64,
)
from tests.harness import ROOT
from tests.tiny import tiny_space

TMP = "/data/local/tmp"


def _new_key(tmp_path: Path, name: str) -> Path:
    key = tmp_path / name
    keygen(str(key))
    return key


def test_adb_shell_connects_authenticates_and_runs_shell(loopback_phone):
    phone = loopback_phone
    dev = connect_adb_shell(phone)
    try:
        assert dev.available
        assert dev.shell("echo hi") == "hi\n"
        assert dev.shell("getprop ro.product.model") == "Pixel 3\n"
        assert "[ro.board.platform]: [sdm845]" in dev.shell("getprop")
        # Android paths are the phone's storage, and the host root never shows in the output
        out = dev.shell(f"echo data > {TMP}/a.txt; cat {TMP}/a.txt; ls {TMP}/missing; echo {TMP}/a.txt")
        assert (phone.root / "data/local/tmp/a.txt").read_text() == "data\n"
        assert out.startswith("data\n") and f"{TMP}/missing" in out and out.endswith(f"{TMP}/a.txt\n")
        assert str(phone.root) not in out
        # output streams as it is produced, not at exit
        t0, stamps = time.monotonic(), []
        for chunk in dev.streaming_shell("echo first; sleep 1; echo second"):
            stamps.append((time.monotonic() - t0, chunk))
        assert stamps[0][1] == "first\n" and stamps[0][0] < 0.8 and stamps[-1][1].endswith("second\n")
        # a second connection beside the first, both busy at once
        other = connect_adb_shell(phone)
        slow = threading.Thread(target=other.shell, args=("sleep 1; echo slow",))
        slow.start()
        time.sleep(0.2)
        t0 = time.monotonic()
        assert dev.shell("echo fast") == "fast\n"
        assert time.monotonic() - t0 < 0.6
        slow.join()
        other.close()
    finally:
        dev.close()


def _packet(cmd: bytes, arg0: int, arg1: int, data: bytes = b"") -> bytes:
    (c,) = struct.unpack("<I", cmd)
    return struct.pack("<6I", c, arg0, arg1, len(data), sum(data), c ^ 0xFFFFFFFF) + data


def _read_packet(sock: socket.socket) -> tuple[bytes, int, int, bytes]:
    def exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = sock.recv(n - len(buf))
            assert chunk, "the phone hung up"
            buf += chunk
        return buf

    cmd, arg0, arg1, length, check, magic = struct.unpack("<6I", exact(24))
    data = exact(length) if length else b""
    assert magic == cmd ^ 0xFFFFFFFF and check == sum(data)
    return struct.pack("<I", cmd), arg0, arg1, data


def test_raw_protocol_runs_two_streams_at_once_on_one_connection(loopback_phone):
    phone = loopback_phone
    with socket.create_connection(("127.0.0.1", phone.port), timeout=3) as sock:
        sock.sendall(_packet(b"CNXN", 0x01000001, 1 << 20, b"host::\0"))
        cmd, kind, _, token = _read_packet(sock)
        assert (cmd, kind, len(token)) == (b"AUTH", 1, 20)
        sock.sendall(_packet(b"AUTH", 2, 0, b"\0" * 256))  # a bad signature: a new token comes back
        cmd, kind, _, token2 = _read_packet(sock)
        assert (cmd, kind) == (b"AUTH", 1) and token2 != token
        sock.sendall(_packet(b"AUTH", 2, 0, adb_shell_signer(phone.adbkey).Sign(token2)))
        cmd, version, maxdata, banner = _read_packet(sock)
        assert (cmd, version, maxdata) == (b"CNXN", 0x01000001, 256 * 1024)
        assert banner.startswith(b"device::") and b"ro.product.model=Pixel 3" in banner and b"shell_v2" not in banner
        sock.sendall(_packet(b"OPEN", 7, 0, b"shell:sleep 1; echo slow\0"))
        sock.sendall(_packet(b"OPEN", 8, 0, b"exec:echo fast\0"))
        t0, seen, ids = time.monotonic(), [], {}
        while len([p for p in seen if p[0] == b"CLSE"]) < 2:
            cmd, arg0, arg1, data = _read_packet(sock)
            seen.append((cmd, arg1, data, time.monotonic() - t0))
            if cmd == b"OKAY":
                ids[arg1] = arg0
            elif cmd == b"WRTE":
                sock.sendall(_packet(b"OKAY", arg1, arg0))
            elif cmd == b"CLSE":
                sock.sendall(_packet(b"CLSE", arg1, arg0))
        writes = [(arg1, data, t) for cmd, arg1, data, t in seen if cmd == b"WRTE"]
        assert [(a, d) for a, d, _ in writes] == [(8, b"fast\n"), (7, b"slow\n")]
        assert writes[0][2] < 0.5 and writes[1][2] >= 0.9 and len(set(ids.values())) == 2
        sock.sendall(_packet(b"OPEN", 9, 0, b"no-such-service:\0"))
        assert _read_packet(sock)[:3] == (b"CLSE", 0, 9)


def test_push_pull_round_trip_and_stat(loopback_phone, tmp_path):
    phone = loopback_phone
    data = os.urandom(300_000)  # several WRTE packets and sync DATA chunks both ways
    src, back = tmp_path / "blob.bin", tmp_path / "back.bin"
    src.write_bytes(data)
    dev = connect_adb_shell(phone)
    try:
        dev.push(str(src), f"{TMP}/blob.bin")
        assert (phone.root / "data/local/tmp/blob.bin").read_bytes() == data
        dev.pull(f"{TMP}/blob.bin", str(back))
        assert back.read_bytes() == data
        mode, size, mtime = dev.stat(f"{TMP}/blob.bin")
        assert size == len(data) and mode & 0o170000 == 0o100000 and mtime > 0
        assert dev.stat(f"{TMP}/missing.bin") == (0, 0, 0)
        names = {bytes(e.filename).decode() for e in dev.list(TMP)}
        assert {"blob.bin", ".", ".."} <= names
        assert dev.shell(f"wc -c < {TMP}/blob.bin").strip() == str(len(data))
    finally:
        dev.close()


def test_new_keys_are_accepted_or_refused(loopback_phone, tmp_path):
    from adb_shell.adb_device import AdbDeviceTcp

    phone = loopback_phone

    def connect(key: Path) -> AdbDeviceTcp:
        dev = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=1.0)
        dev.connect(rsa_keys=[adb_shell_signer(key)], auth_timeout_s=1.0, read_timeout_s=1.0)
        return dev

    accepted = _new_key(tmp_path, "accepted")
    dev = connect(accepted)  # the user taps "Allow"
    assert dev.shell("echo ok") == "ok\n"
    dev.close()
    phone.accept_new_keys = False
    connect(accepted).close()  # now authorized: its signature is enough
    t0 = time.monotonic()
    with pytest.raises((TcpTimeoutException, AdbTimeoutError)):
        connect(_new_key(tmp_path, "refused"))
    assert time.monotonic() - t0 < 3
    phone.accept_new_keys = True
    phone.faults.refuse_auth = True
    with pytest.raises((TcpTimeoutException, AdbTimeoutError)):
        connect(_new_key(tmp_path, "ignored"))


def test_drop_after_bytes_breaks_a_running_shell_and_a_reconnect_works(loopback_phone):
    phone = loopback_phone
    dev = connect_adb_shell(phone, timeout_s=2.0)
    phone.faults.drop_after_bytes = 600
    t0 = time.monotonic()
    with pytest.raises((OSError, AdbConnectionError, AdbTimeoutError, TcpTimeoutException, InvalidChecksumError)):
        dev.shell("while true; do echo tick; sleep 0.01; done", timeout_s=10, read_timeout_s=2.0)
    assert time.monotonic() - t0 < 4
    assert phone.faults.drop_after_bytes is None  # one-shot
    dev.close()
    again = connect_adb_shell(phone)
    assert again.shell("echo back") == "back\n"
    again.close()


def test_stall_delays_the_next_shell_only(loopback_phone):
    phone = loopback_phone
    dev = connect_adb_shell(phone)
    try:
        phone.faults.stall_s = 0.6
        t0 = time.monotonic()
        assert dev.shell("echo late") == "late\n"
        assert time.monotonic() - t0 >= 0.6
        t0 = time.monotonic()
        assert dev.shell("echo now") == "now\n"
        assert time.monotonic() - t0 < 0.5
    finally:
        dev.close()


def test_probe_script_sees_a_pixel3_with_eight_cores(loopback_phone):
    phone = loopback_phone
    phone.set_core_freq(4, 1_209_600)  # throttled big core
    phone.set_temp(1, 71_000)
    dev = connect_adb_shell(phone)
    try:
        dev.push(str(ROOT / "device_scripts" / "probe.sh"), f"{TMP}/probe.sh")
        out = dev.shell(f"sh {TMP}/probe.sh /sys")
    finally:
        dev.close()
    facts = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    assert facts["model"] == "Pixel 3" and facts["manufacturer"] == "Google" and facts["soc"] == "SDM845"
    assert facts["abi"] == "arm64-v8a" and facts["sdk"] == "31" and facts["uid"] == "2000"
    caps = [int(facts[f"cpu{n}.capacity"]) for n in range(8)]
    assert caps == [396] * 4 + [1024] * 4 and "cpu8.online" not in facts
    assert all(facts[f"cpu{n}.online"] == "1" and facts[f"cpu{n}.governor"] == "schedutil" for n in range(8))
    assert facts["cpu0.max_khz"] == "1766400" and facts["cpu7.max_khz"] == "2803200"
    assert facts["cpu4.cur_khz"] == "1209600" and facts["cpu5.cur_khz"] == "2803200"
    assert facts["thermal_zone1.temp"] == "71000" and facts["thermal_zone3.temp"] == "38000"
    assert facts["probe"] == "done"


def test_taskset_shim_runs_the_host_runner_for_an_aarch64_binary(loopback_phone, exporter, tmp_path):
    phone = loopback_phone
    item = items_for_space(tiny_space())[3]
    model = exporter.export_part(item).path
    binary = make_elf_aarch64(tmp_path / "benchmark_model")
    (tmp_path / "list.txt").write_text(f"{TMP}/m.tflite\n")
    dev = connect_adb_shell(phone, timeout_s=30)
    try:
        for local, remote in ((model, "m.tflite"), (binary, "benchmark_model"), (tmp_path / "list.txt", "list.txt")):
            dev.push(str(local), f"{TMP}/{remote}")
        dev.push(str(ROOT / "device_scripts" / "batch.sh"), f"{TMP}/batch.sh")
        flags = "--num_threads=1 --warmup_runs=1 --warmup_min_secs=0 --num_runs=3 --min_secs=0"
        out = dev.shell(f"sh {TMP}/batch.sh {TMP}/benchmark_model 4 /sys 0 {TMP}/list.txt {flags}", timeout_s=60)
        assert f"=== hnas-begin {TMP}/m.tflite" in out and f"=== hnas-end {TMP}/m.tflite rc=0" in out, out
        assert "INFO: count=3 " in out and f"Graph: [{TMP}/m.tflite]" in out
        assert "=== hnas-cond before freq_khz=2803200 temp_mc=38000" in out
        run = f"taskset 10 {TMP}/benchmark_model --graph={TMP}/m.tflite; echo rc=$?"
        phone.faults.crash_benchmark = True
        assert dev.shell(run) == "Segmentation fault\nrc=139\n"
        phone.faults.crash_benchmark = False
        phone.faults.garbage = True
        junk = dev.shell(run)
        assert junk.endswith("rc=0\n") and "INFO:" not in junk and len(junk.splitlines()) > 1
        phone.faults.garbage = False
        assert dev.shell("taskset 1 echo plain") == "plain\n"  # not an ELF: runs as is
    finally:
        dev.close()


def test_stop_makes_the_phone_vanish(tmp_path):
    key = _new_key(tmp_path, "adbkey")
    with LoopbackPhone(tmp_path / "phone", authorized_keys=[Path(f"{key}.pub").read_text()]) as phone:
        phone.adbkey = key
        dev = connect_adb_shell(phone)
        assert phone.connections == 1
    with pytest.raises((OSError, AdbConnectionError, AdbTimeoutError, TcpTimeoutException)):
        dev.shell("echo gone", read_timeout_s=1.0)
    with pytest.raises(OSError):
        connect_adb_shell(phone, key, timeout_s=1.0)


@pytest.mark.skipif(shutil.which("adb") is None, reason="Debian's adb is not installed (apt-get install adb)")
def test_debian_adb_connects_lists_shells_and_pushes(loopback_phone, tmp_path):
    phone = loopback_phone
    env = debian_adb_env(tmp_path / "adb-home", adbkey=phone.adbkey)

    def adb(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["adb", *args], env=env, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL
        )

    try:
        out = adb("connect", phone.serial)
        assert f"connected to {phone.serial}" in out.stdout, out.stdout + out.stderr
        listing = adb("devices", "-l").stdout
        line = next(x for x in listing.splitlines() if x.startswith(phone.serial))
        assert line.split()[1] == "device" and "model:Pixel_3" in line and "product:blueline" in line
        out = adb("-s", phone.serial, "shell", "echo hi; getprop ro.board.platform")
        assert out.stdout == "hi\nsdm845\n", out.stdout + out.stderr
        data = os.urandom(100_000)
        (tmp_path / "x.bin").write_bytes(data)
        out = adb("-s", phone.serial, "push", str(tmp_path / "x.bin"), f"{TMP}/x")
        assert "1 file pushed" in out.stdout, out.stdout + out.stderr
        assert (phone.root / "data/local/tmp/x").read_bytes() == data
    finally:
        adb("kill-server")
