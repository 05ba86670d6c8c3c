"""The phone path end to end: AdbDevice and `hnas` commands over the loopback Pixel 3 (real ADB protocol)."""

import json
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from hnas.core.io import sha256_file
from latency.build import build
from latency.items import items_for_space
from latency.lut import Lut
from tests.adb_loopback import LoopbackPhone
from tests.harness import FAST, adb_device, kill_and_resume, run_cli
from tests.tiny import tiny_space


def _space_file(tmp_path) -> Path:
    path = tmp_path / "tiny.json"
    tiny_space().save(path)
    return path


def test_devices_and_profile_over_adb(phone_env):
    phone, env, binary = phone_env
    rows = json.loads(run_cli("devices", "--tcp", phone.serial, "--json", env=env).stdout)
    assert {"serial": phone.serial, "model": "Pixel 3", "state": "device", "transport": "tcp"} in rows
    out = run_cli(
        "profile",
        "--device",
        phone.serial,
        "--benchmark-binary",
        str(binary),
        "--op",
        "IBConv_K5_E6",
        "--in",
        "8x8x16",
        "--out-ch",
        "16",
        "--runs",
        "5",
        "--repeats",
        "2",
        "--json",
        env=env,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["device"] == "Pixel 3" and data["core"] == 7 and data["median_ms"] > 0


def test_lut_build_over_adb_records_the_phone(phone_env, tmp_path, exporter):
    phone, _, binary = phone_env
    path = tmp_path / "pixel3.json"
    dev = adb_device(phone, binary)
    report = build(dev, items_for_space(tiny_space()), path, FAST, exporter)
    lut = Lut.load(path)
    assert len(lut.entries) == 9 and not lut.pending and not report.throttled
    d = lut.device
    assert (d["model"], d["cpu"], d["core"], d["core_max_khz"], d["abi"]) == (
        "Pixel 3",
        "SDM845",
        7,
        2803200,
        "arm64-v8a",
    )
    assert d["os"].startswith("Android 12") and d["kernel"]
    assert lut.data["runtime"]["sha256"] == sha256_file(binary)
    e = next(iter(lut.entries.values()))
    assert e["conditions"]["freq_khz_min"] == 2803200 and e["conditions"]["temp_c_max"] == 38.0
    # binary, scripts and models were pushed once; a second build pushes and measures nothing
    pushed = sorted(p.name for p in phone.host_path("/data/local/tmp/hnas/models").iterdir())
    assert len(pushed) == 9
    again = build(adb_device(phone, binary), items_for_space(tiny_space()), path, FAST, exporter)
    assert again.measured == [] and again.skipped_fresh == 9


def test_connection_dropped_mid_build_reconnects_and_finishes(phone_env, tmp_path, exporter):
    phone, _, binary = phone_env
    path = tmp_path / "lut.json"
    dev = adb_device(phone, binary)
    dev.describe()  # connected and probed
    phone.faults.drop_after_bytes = 6000  # inside the first round of benchmark output
    build(dev, items_for_space(tiny_space()), path, FAST, exporter)
    assert phone.faults.drop_after_bytes is None  # it fired
    lut = Lut.load(path)
    assert len(lut.entries) == 9 and not lut.pending


def test_throttled_runs_cool_down_and_are_measured_again(phone_env, tmp_path, exporter):
    phone, _, binary = phone_env
    phone.set_temp(1, 61000)  # a hot phone: runs are refused until it has cooled down
    dev = adb_device(phone, binary)
    cooled = []
    dev.cool_down = lambda: (cooled.append(1), phone.set_temp(1, 36500))  # the pause lets the phone cool
    report = build(dev, items_for_space(tiny_space()), tmp_path / "l.json", FAST, exporter)
    assert cooled
    assert report.throttled and "61.0 C" in report.throttled[0]
    lut = Lut.load(tmp_path / "l.json")
    assert len(lut.entries) == 9
    assert all(e["conditions"]["temp_c_max"] <= 45 for e in lut.entries.values())


def test_low_frequency_is_detected(phone_env):
    phone, _, binary = phone_env
    dev = adb_device(phone, binary)
    from latency.devices import BenchOutput

    slow = BenchOutput("m", 0, "", {"before": {"freq_khz": 1200000, "temp_mc": 35000}})
    assert "1200000 kHz" in dev.throttled(slow)
    ok = BenchOutput("m", 0, "", {"before": {"freq_khz": 2803200, "temp_mc": 35000}})
    assert dev.throttled(ok) is None


def test_phone_gone_exits_with_the_resume_command_and_resume_loses_nothing(phone_env, tmp_path, exporter):
    phone, env, binary = phone_env
    for it in items_for_space(tiny_space()):
        exporter.export_part(it)
    out = tmp_path / "lut.json"
    args = [
        "lut",
        "build",
        "--device",
        phone.serial,
        "--benchmark-binary",
        str(binary),
        "--space",
        str(_space_file(tmp_path)),
        "--out",
        str(out),
        "--repeats",
        "3",
        "--runs",
        "1500",
        "--warmup",
        "1",
        "--retries",
        "1",
        "--backoff",
        "0.2",
    ]

    def entries():
        try:
            return json.loads(out.read_text())["entries"]
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    port = phone.port

    def unplug(proc):
        phone.stop()
        proc.wait(timeout=120)

    def gone_with_the_resume_command(killed) -> list[str]:
        err = killed.stderr
        assert killed.returncode == 2, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "gone" in lines[0] and "Traceback" not in err
        resume = lines[0].split("resume with: ", 1)[1]
        assert resume.startswith("hnas lut build --device 127.0.0.1:") and "--out" in resume
        phone.start(port)  # the phone is back where it was
        return shlex.split(resume)[1:]

    r = kill_and_resume(
        args, lambda: len(entries()) >= 2, lambda: 2 <= len(entries()) < 9, note=lambda: [out],
        interrupt=unplug, rerun=gone_with_the_resume_command, env=env, timeout=120,
    )  # fmt: skip
    killed = json.loads(r.noted[out])
    final = json.loads(out.read_text())
    assert len(final["entries"]) == 9 and not final["pending"]
    for key, entry in killed["entries"].items():
        assert final["entries"][key] == entry


def test_benchmark_crash_and_garbage_are_clear_errors(phone_env, tmp_path, exporter):
    phone, env, binary = phone_env
    space = _space_file(tmp_path)
    out = tmp_path / "lut.json"
    base = [
        "lut",
        "build",
        "--device",
        phone.serial,
        "--benchmark-binary",
        str(binary),
        "--space",
        str(space),
        "--out",
        str(out),
        "--repeats",
        "1",
        "--runs",
        "2",
        "--warmup",
        "1",
    ]
    phone.faults.crash_benchmark = True
    crashed = run_cli(*base, env=env)
    assert crashed.returncode == 2 and "failed (exit 139)" in crashed.stderr
    assert "Segmentation fault" in crashed.stderr and "Traceback" not in crashed.stderr
    phone.faults.crash_benchmark = False
    phone.faults.garbage = True
    garbled = run_cli(*base, env=env)
    assert garbled.returncode == 2 and "Traceback" not in garbled.stderr
    assert "benchmark_model" in garbled.stderr or "count=" in garbled.stderr
    phone.faults.garbage = False
    fine = run_cli(*base, env=env)
    assert fine.returncode == 0, fine.stderr
    assert len(json.loads(out.read_text())["entries"]) == 9


def test_unauthorized_and_unreachable_phones(phone_env, tmp_path):
    phone, _, binary = phone_env
    phone.faults.refuse_auth = True
    stranger = tmp_path / "stranger"
    stranger.mkdir()  # no key: one is created, sent, and never accepted
    env = {"ANDROID_USER_HOME": str(stranger)}
    out = run_cli(
        "lut",
        "build",
        "--device",
        phone.serial,
        "--benchmark-binary",
        str(binary),
        "--space",
        "basic",
        env=env,
        timeout=120,
    )
    assert out.returncode == 2 and "accept the 'Allow USB debugging?' prompt" in out.stderr
    assert (stranger / "adbkey").is_file() and (stranger / "adbkey.pub").is_file()
    rows = json.loads(run_cli("devices", "--tcp", phone.serial, "--json", env=env).stdout)
    assert [r["state"] for r in rows if r["serial"] == phone.serial] == ["unauthorized"]
    gone = run_cli(
        "profile",
        "--device",
        "127.0.0.1:9",
        "--benchmark-binary",
        str(binary),
        "--op",
        "K3E3",
        "--in",
        "8x8x8",
        "--out-ch",
        "8",
        env=env,
    )
    assert gone.returncode == 2 and "no device answers at 127.0.0.1:9" in gone.stderr
    not_arm = tmp_path / "x86"
    not_arm.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00" + bytes(44))
    bad = run_cli("lut", "build", "--device", phone.serial, "--benchmark-binary", str(not_arm), env=env)
    assert bad.returncode == 2 and "not aarch64" in bad.stderr


def test_two_phones_build_in_parallel(phone_env, tmp_path, exporter):
    phone, env, binary = phone_env
    second = LoopbackPhone(tmp_path / "phone2", authorized_keys=[Path(f"{phone.adbkey}.pub").read_text()])
    second.props["ro.serialno"] = "LOOPBACK02"
    second.start()
    try:
        out = run_cli(
            "lut",
            "build",
            "--device",
            phone.serial,
            "--device",
            second.serial,
            "--benchmark-binary",
            str(binary),
            "--space",
            str(_space_file(tmp_path)),
            "--repeats",
            "1",
            "--runs",
            "3",
            "--warmup",
            "1",
            cwd=tmp_path,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        luts = sorted((tmp_path / "lut").glob("*.json"))
        assert len(luts) == 2
        assert {Lut.load(p).device["id"] for p in luts} == {phone.serial, second.serial}
        assert all(len(Lut.load(p).entries) == 9 for p in luts)
    finally:
        second.stop()


def test_debian_adb_and_our_client_see_the_same_phone(phone_env, tmp_path):
    if shutil.which("adb") is None:
        pytest.skip("Debian's adb is not installed (apt-get install adb; .ci/run does)")
    from tests.adb_loopback import debian_adb_env

    phone, _, _ = phone_env
    env = debian_adb_env(tmp_path / "adb-home", phone.adbkey)
    try:
        subprocess.run(
            ["adb", "connect", phone.serial],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        probe = subprocess.run(
            ["adb", "-s", phone.serial, "shell", "getprop", "ro.product.model"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        assert probe.stdout.strip() == "Pixel 3"
        assert adb_device(phone, None).facts()["model"] == "Pixel 3"
    finally:
        subprocess.run(["adb", "kill-server"], env=env, capture_output=True, timeout=30)
