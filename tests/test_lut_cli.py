import json
import os

import numpy as np
import pytest

from hnas.spec.arch import sample
from hnas.spec.space import proxyless
from latency.lut import Lut
from latency.predict import LatencyPredictor
from tests.harness import ROOT, run_cli
from tests.tiny import tiny_space


def test_show_diff_and_arch_info_with_lut(tiny_lut, tmp_path):
    space_file = tmp_path / "tiny.json"
    tiny_space().save(space_file)
    out = run_cli("lut", "show", str(tiny_lut), "--space", str(space_file))
    assert out.returncode == 0, out.stderr
    assert "coverage of tiny: 9/9 entries" in out.stdout and "IBConv_K5_E6:8x8x16->8x8x16:s1" in out.stdout
    data = json.loads(run_cli("lut", "show", str(tiny_lut), "--json").stdout)
    assert data["schema"] == "hnas.lut/1" and len(data["entries"]) == 9
    other = tmp_path / "other.json"
    scaled = json.loads(tiny_lut.read_text())
    for e in scaled["entries"].values():
        e["median_ms"] *= 2
    other.write_text(json.dumps(scaled))
    diff = json.loads(run_cli("lut", "diff", str(tiny_lut), str(other), "--json").stdout)
    assert diff["summary"]["common"] == 9 and abs(diff["summary"]["median_ratio"] - 2) < 1e-9
    arch = str(sample(tiny_space(), 1, np.random.default_rng(0))[0])
    info = json.loads(
        run_cli("arch", "info", arch, "--space", str(space_file), "--lut", str(tiny_lut), "--json").stdout
    )
    want = LatencyPredictor(Lut.load(tiny_lut), tiny_space()).predict_arch(
        sample(tiny_space(), 1, np.random.default_rng(0))[0]
    )
    assert abs(info["latency_ms"] - want) < 1e-9


def test_import_proxylessnas_table_predicts_the_proxyless_space(shared_reference, tmp_path):
    out_path = tmp_path / "pixel1.json"
    src = shared_reference / "luts" / "proxylessnas_mobile_trim.yaml"
    out = run_cli("lut", "import", str(src), "--format", "proxylessnas", "--out", str(out_path))
    assert out.returncode == 0, out.stderr
    assert "72 entries mapped" in out.stdout and "not mapped (0)" in out.stdout and "(0): none" in out.stdout
    lut = Lut.load(out_path)
    assert lut.device["model"] == "Google Pixel 1" and lut.entries["Stem_K3:224x224x3->112x112x32:s2"]["source"] == (
        "imported:proxylessnas"
    )
    pred = LatencyPredictor(lut, proxyless())
    lat = pred.predict(np.stack([a.to_vector() for a in sample(proxyless(), 100, np.random.default_rng(0))]))
    assert lat.min() > 30 and lat.max() < 300  # Pixel 1 phones: tens to hundreds of ms
    refused = run_cli("lut", "refresh", "--lut", str(out_path))
    assert refused.returncode == 2 and "re-import" in refused.stderr


def test_import_lists_what_did_not_map(shared_reference, tmp_path):
    src = shared_reference / "luts" / "ofa_note10_224_lookup_table.yaml"
    out = run_cli("lut", "import", str(src), "--format", "ofa", "--space", "basic", "--out", str(tmp_path / "n.json"))
    assert out.returncode == 0, out.stderr
    assert "6 entries mapped" in out.stdout and "AvgPool2D-input:7x7x1152-output:1x1x1152" in out.stdout


def test_profile_an_op_and_a_model(exporter):
    out = run_cli(
        "profile",
        "--device",
        "local",
        "--op",
        "IBConv_K5_E6",
        "--in",
        "8x8x16",
        "--out-ch",
        "16",
        "--stride",
        "1",
        "--runs",
        "5",
        "--repeats",
        "2",
        "--spread",
        "100",  # an 8x8 block takes microseconds: its repeats agree only within a wide spread on a busy VM
        "--json",
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["model"] == "IBConv_K5_E6:8x8x16->8x8x16:s1" and len(data["repeats"]) == 2
    assert data["median_ms"] > 0
    from latency.items import items_for_space

    item = items_for_space(tiny_space())[0]
    path = exporter.export_part(item).path
    table = run_cli("profile", str(path), "--runs", "5", "--repeats", "1")
    assert table.returncode == 0 and "median of repeat medians" in table.stdout


@pytest.mark.slow
def test_bad_lut_input_is_one_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    cases = [
        ("lut", "show", str(tmp_path / "none.json")),
        ("lut", "show", str(broken)),
        ("lut", "import", str(broken), "--format", "tflite"),
        ("profile", "--op", "IBConv_K5_E6", "--in", "28x14x40", "--out-ch", "40"),
        ("profile", "nothing.tflite"),
        ("profile",),
        ("lut", "build", "--device", "pixel9", "--space", "basic"),
        ("lut", "build", "--core", "64", "--space", "basic"),
        ("lut", "refresh", "--lut", str(ROOT / "lut" / "local-amd-epyc.json"), "--max-age", "soon"),
    ]
    for args in cases:
        out = run_cli(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, out.stderr)
    assert "--max-age 'soon'" in out.stderr  # the last case fails on its duration, not on the table


def test_two_builds_of_one_table_never_measure_together(tmp_path):
    from hnas.core.io import exclusive

    space_file = tmp_path / "tiny.json"
    tiny_space().save(space_file)
    out = tmp_path / "lut.json"
    with exclusive(out, "a latency table being built"):  # a first build holds the table
        second = run_cli("lut", "build", "--space", str(space_file), "--out", str(out), "--repeats", "1")
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert f"being built by another process (pid {os.getpid()})" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.json"]  # no table, no lock file left


def test_a_table_of_another_machine_is_refused_before_anything_is_converted(tiny_lut, tmp_path):
    other = json.loads(tiny_lut.read_text())
    other["device"]["machine"] = "0000dead"
    path = tmp_path / "other.json"
    path.write_text(json.dumps(other))
    cache = tmp_path / "cache"
    for args in (["refresh", "--lut", str(path)], ["build", "--space", "basic", "--out", str(path)]):
        done = run_cli("lut", *args, env={"HNAS_CACHE": str(cache)})
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "machine 0000dead" in lines[0], done.stderr
        assert "`hnas lut build --out NEW.json`" in lines[0]  # an option the commands have
        assert not cache.exists()  # refused before a single model was converted
    assert json.loads(path.read_text()) == other


def test_a_build_on_a_busy_host_names_a_command_that_re_measures():
    from latency.build import BuildReport, report_line

    report = BuildReport(ROOT / "lut" / "x.json", {"k": "missing"}, ["k"], [], 0, busy=["load average 3"])
    line = report_line(report)
    assert f"`hnas lut refresh --lut {report.path} --max-age 0s`" in line
