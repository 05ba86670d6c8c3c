import struct
import subprocess

import pytest

from hnas.errors import HnasError
from latency.adb import check_aarch64_elf, hottest_c, parse_probe, pick_big_core
from latency.devices import split_batch
from tests.conftest import ROOT

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
