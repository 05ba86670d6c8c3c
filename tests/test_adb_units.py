import json
import os
import socket
import struct
import subprocess
import threading
import time

import pytest

from hnas.core.errors import HnasError
from latency.adb import check_aarch64_elf
from latency.connection import AdbConnection, PhoneGone
from latency.devices import split_batch
from latency.hygiene import Governor, ThrottleRule, hottest_c, parse_probe, pick_big_core
from tests.harness import ROOT, run_cli

PIXEL3 = {
    **{f"cpu{n}.online": "1" for n in range(8)},
    **{f"cpu{n}.capacity": "396" for n in range(4)},
    **{f"cpu{n}.capacity": "1024" for n in range(4, 8)},
    **{f"cpu{n}.max_khz": "1766400" for n in range(4)},
    **{f"cpu{n}.max_khz": "2803200" for n in range(4, 8)},
}


def _elf(path, machine: int, klass: int = 2):
    header = b"\x7fELF" + bytes([klass, 1, 1]) + bytes(9) + struct.pack("<HH", 2, machine)
    path.write_bytes(header + bytes(44))
    return path


def test_big_core_rule():
    assert pick_big_core(PIXEL3) == 7  # Snapdragon 845: cpu4-7 big, ties to the highest id
    assert pick_big_core({**PIXEL3, "cpu7.online": "0"}) == 6
    # a prime core (higher max frequency at the same capacity) wins
    assert pick_big_core({**PIXEL3, "cpu5.max_khz": "2900000"}) == 5
    # capacity first, frequency second
    assert pick_big_core({**PIXEL3, "cpu0.max_khz": "3000000"}) == 7
    with pytest.raises(HnasError):
        pick_big_core({"cpu0.online": "0"})


def test_aarch64_elf_check(tmp_path):
    check_aarch64_elf(_elf(tmp_path / "ok", 183))
    with pytest.raises(HnasError, match="not aarch64"):
        check_aarch64_elf(_elf(tmp_path / "x86", 62))
    (tmp_path / "script").write_text("#!/bin/sh\n")
    with pytest.raises(HnasError, match="not an ELF"):
        check_aarch64_elf(tmp_path / "script")
    with pytest.raises(HnasError, match="does not exist"):
        check_aarch64_elf(tmp_path / "missing")


def _sysfs(root, temps=(35000, 41000)):
    for n in range(8):
        d = root / "devices" / "system" / "cpu" / f"cpu{n}"
        (d / "cpufreq").mkdir(parents=True)
        (d / "online").write_text("1\n")
        (d / "cpu_capacity").write_text("1024\n" if n >= 4 else "396\n")
        (d / "cpufreq" / "cpuinfo_max_freq").write_text("2803200\n" if n >= 4 else "1766400\n")
        (d / "cpufreq" / "scaling_cur_freq").write_text("2803200\n" if n >= 4 else "300000\n")
        (d / "cpufreq" / "scaling_governor").write_text("schedutil\n")
    for i, t in enumerate(temps):
        z = root / "class" / "thermal" / f"thermal_zone{i}"
        z.mkdir(parents=True)
        (z / "type").write_text(f"zone{i}\n")
        (z / "temp").write_text(f"{t}\n")


def _fake_getprop(bindir):
    bindir.mkdir()
    g = bindir / "getprop"
    g.write_text(
        '#!/bin/sh\ncase "$1" in ro.product.model) echo "Pixel 3";; ro.board.platform) echo sdm845;; '
        'ro.product.cpu.abi) echo arm64-v8a;; *) echo "";; esac\n'
    )
    g.chmod(0o755)


def test_probe_script_reads_a_sysfs_tree(tmp_path):
    _sysfs(tmp_path / "sys")
    _fake_getprop(tmp_path / "bin")
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin"}
    out = subprocess.run(
        ["sh", str(ROOT / "device_scripts" / "probe.sh"), str(tmp_path / "sys")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    facts = parse_probe(out.stdout)
    assert facts["model"] == "Pixel 3" and facts["platform"] == "sdm845" and facts["probe"] == "done"
    assert facts["cpu7.capacity"] == "1024" and facts["cpu0.cur_khz"] == "300000"
    assert pick_big_core(facts) == 7 and hottest_c(facts) == 41.0


def test_batch_script_frames_runs_and_reads_conditions(tmp_path):
    _sysfs(tmp_path / "sys", temps=(35000, 52000))
    fake = tmp_path / "benchmark_model"
    fake.write_text(
        '#!/bin/sh\necho "INFO: count=3 curr=10 (all same)"\ncase "$1" in *bad*) echo "ERROR: boom"; exit 3;; esac\n'
    )
    fake.chmod(0o755)
    listing = tmp_path / "list.txt"
    listing.write_text("/data/a.tflite\n/data/bad.tflite\n")
    out = subprocess.run(
        [
            "sh",
            str(ROOT / "device_scripts" / "batch.sh"),
            str(fake),
            "1",
            str(tmp_path / "sys"),
            "0",
            str(listing),
            "--num_threads=1",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    a, bad = list(split_batch(out.stdout.splitlines()))
    assert (a.model, a.rc, bad.model, bad.rc) == ("/data/a.tflite", 0, "/data/bad.tflite", 3)
    assert a.conditions["before"] == {"freq_khz": 300000, "temp_mc": 52000} == a.conditions["after"]
    assert "count=3" in a.text and "ERROR: boom" in bad.text


def test_governor_script_needs_root_and_restores(tmp_path):
    _sysfs(tmp_path / "sys")
    gov = tmp_path / "sys/devices/system/cpu/cpu7/cpufreq/scaling_governor"
    script = str(ROOT / "device_scripts" / "governor.sh")
    state = str(tmp_path / "saved")
    out = subprocess.run(["sh", script, "set", "7", state, str(tmp_path / "sys")], capture_output=True, text=True)
    import os

    if os.geteuid() != 0:
        assert out.returncode == 1 and "root is needed" in out.stderr
        return
    assert out.returncode == 0 and gov.read_text().strip() == "performance"
    out = subprocess.run(["sh", script, "restore", "7", state, str(tmp_path / "sys")], capture_output=True, text=True)
    assert out.returncode == 0 and gov.read_text().strip() == "schedutil"


def test_governor_runs_the_script_and_reports_its_last_line(tmp_path):
    _sysfs(tmp_path / "sys")
    gov_file = tmp_path / "sys/devices/system/cpu/cpu7/cpufreq/scaling_governor"

    def local_shell(cmd: str) -> tuple[int, str]:
        out = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
        return out.returncode, out.stdout + out.stderr

    script = str(ROOT / "device_scripts" / "governor.sh")
    gov = Governor(local_shell, script, 7, str(tmp_path / "saved"), str(tmp_path / "sys"), "pixel")
    if os.geteuid() != 0:
        with pytest.raises(HnasError, match="^pixel: governor: root is needed"):
            gov.set_performance()
        return
    gov.set_performance()
    assert gov_file.read_text().strip() == "performance"
    gov.restore()
    assert gov_file.read_text().strip() == "schedutil"
    with pytest.raises(HnasError, match="^pixel: governor: nothing saved"):
        gov.restore()


def test_throttle_rule_names_the_slow_core_or_the_hot_zone():
    rule = ThrottleRule(min_freq_fraction=0.9, max_temp_c=45.0)
    assert rule.reason({"before": {"freq_khz": 2803200, "temp_mc": 35000}}, 7, 2803200) is None
    slow = {"before": {"freq_khz": 2803200}, "after": {"freq_khz": 1209600}}
    assert rule.reason(slow, 7, 2803200) == "core 7 ran at 1209600 kHz after (max 2803200)"
    hot = {"before": {"freq_khz": 2803200, "temp_mc": 61000}}
    assert rule.reason(hot, 7, 2803200) == "hottest thermal zone at 61.0 C before (limit 45 C)"
    assert rule.reason({"before": {"temp_mc": 52}}, 7, 2803200) == "hottest thermal zone at 52.0 C before (limit 45 C)"
    assert rule.reason({"before": {"freq_khz": 1209600}}, 7, 0) is None  # max unknown: frequency is not judged
    assert rule.reason({}, 7, 2803200) is None


class _NotAdb:
    """A TCP server on 127.0.0.1 that answers every connection with an HTTP error, for `timeout_s` at most."""

    def __init__(self, timeout_s: float = 30.0):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.deadline = time.monotonic() + timeout_s
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self.done.is_set() and time.monotonic() < self.deadline:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(4096)
                    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + b"x" * 64)
                    conn.recv(4096)  # until the client hangs up
                except OSError:
                    pass

    def __enter__(self) -> "_NotAdb":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join(timeout=10)
        self.sock.close()


def test_a_port_that_is_not_adb_is_one_clear_line_not_a_traceback(tmp_path):
    env = {"ANDROID_USER_HOME": str(tmp_path / "android")}
    with _NotAdb() as server:
        spec = f"127.0.0.1:{server.port}"
        conn = AdbConnection(spec, key_path=tmp_path / "adbkey", timeout_s=3, retries=0)
        with pytest.raises(HnasError, match="answered, but not as an ADB device") as caught:
            conn.connect()
        assert type(caught.value) is HnasError and "\n" not in str(caught.value)
        out = run_cli("devices", "--tcp", spec, "--json", env=env, timeout=60)
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    rows = json.loads(out.stdout)
    assert [r["state"] for r in rows if r["serial"] == spec] == ["error"]


class _ScriptedPhone:
    """Stands in for adb-shell's device: shell replies and streamed outputs come from lists, exceptions raised."""

    def __init__(self, replies: list, streams: list):
        self.replies, self.streams, self.connects = replies, streams, 0

    def connect(self, **_):
        self.connects += 1

    def shell(self, cmd: str, **_) -> str:
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def streaming_shell(self, cmd: str, **_):
        chunks = self.streams.pop(0)
        if isinstance(chunks, Exception):
            raise chunks
        yield from chunks

    def close(self):
        pass


def test_connection_reruns_a_reply_without_status_and_gives_up_on_a_stream_that_keeps_breaking(tmp_path):
    phone = _ScriptedPhone(
        replies=["hi\n", ConnectionResetError("reset"), "hi\n__hnas_rc=0\n"],
        streams=[["a\nb"], OSError("reset"), [], ["never read"]],
    )
    conn = AdbConnection("phone:5555", key_path=tmp_path / "adbkey", retries=2, backoff_s=0)
    conn._open = lambda: phone
    assert conn.shell("echo hi") == (0, "hi\n")  # the lost status and the reset: reconnected, ran again
    assert phone.connects == 3
    seen = []
    with pytest.raises(PhoneGone, match="the test stream broke 3 times in a row"):
        for line in conn.stream("the test stream", lambda: "cmd", iter, lambda: len(seen) == 3):
            seen.append(line)
    assert seen == ["a", "b"] and phone.streams == [["never read"]]


def test_devices_are_opened_by_name_and_hand_over_parsed_figures():
    """`local` is the host's backend, any other name a phone's; a lost phone is the core's DeviceGone (the CLI
    adds the resume line); `measure` parses what the backend's batch printed, whatever the backend."""
    from hnas.core.errors import DeviceGone
    from latency.adb import AdbDevice
    from latency.backends import BACKENDS, PHONES, open_device
    from latency.devices import BenchOutput, LocalDevice

    assert BACKENDS == {"local": LocalDevice} and PHONES is AdbDevice and issubclass(PhoneGone, DeviceGone)
    host = open_device("local", retries=0)  # a phone's options do not apply to the host
    assert isinstance(host, LocalDevice)
    text = "INFO: count=3 first=100 curr=100 min=90 max=110 avg=100 std=8 median=99\n"

    class Printed(LocalDevice):
        def benchmark_batch(self, models, settings):
            yield BenchOutput(models[0], 0, text, {"before": {"freq_khz": 1}}, throttled="hot")
            yield BenchOutput(models[1], 1, "one\ntwo\nfailed")

    ok, failed = Printed(core=host.core).measure(["a.tflite", "b.tflite"], None)
    assert ok.result.runs.median == 99 and ok.throttled == "hot" and ok.conditions == {"before": {"freq_khz": 1}}
    assert failed.result is None and failed.rc == 1 and failed.failure_tail(2) == "two\nfailed"
