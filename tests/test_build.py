import json

import pytest

from hnas.core.errors import HnasError
from latency.bench import BenchSettings
from latency.build import BuildOptions, build
from latency.items import items_for_space
from latency.lut import Lut
from latency.stability import Stability
from tests.harness import FAST, CountingDevice, kill_and_resume
from tests.tiny import tiny_space


def test_build_fills_every_entry_with_its_provenance(tmp_path, exporter):
    path = tmp_path / "lut.json"
    report = build(CountingDevice(), items_for_space(tiny_space()), path, FAST, exporter)
    lut = Lut.load(path)
    assert len(report.measured) == len(lut.entries) == 9 and not lut.pending
    e = lut.entries["IBConv_K5_E6:8x8x16->8x8x16:s1"]
    for field in ("median_ms", "mean_ms", "std_ms", "min_ms", "runs", "repeats", "measured_at", "model_sha256"):
        assert e[field] is not None, field
    assert e["repeats"] >= 2 and e["runs"] == 3 * e["repeats"] and e["min_ms"] <= e["median_ms"]
    assert e["spec"] == {"op": "IBConv_K5_E6", "shape": {"in_size": 8, "in_ch": 16, "out_ch": 16, "stride": 1}}
    assert lut.device["core"] == 0 and lut.data["runtime"]["kind"] == "runner"
    assert lut.data["settings"]["repeats"] == 2 and lut.data["settings"]["num_threads"] == 1


def test_interrupted_build_resumes_without_remeasuring(tmp_path, exporter):
    path = tmp_path / "lut.json"
    items = items_for_space(tiny_space())
    # repeats always agree here, so round 2's first 4 results finish 4 entries (3-run medians on a busy machine
    # can differ by more than the spread threshold, which would make them wait for an extra repeat)
    agreeing = BuildOptions(**{**FAST.__dict__, "stability": Stability(spread=1e9)})
    with pytest.raises(KeyboardInterrupt):
        build(CountingDevice(stop_after=13), items, path, agreeing, exporter)
    before = Lut.load(path)
    done = dict(before.entries)
    partial = {k: len(p["repeats"]) for k, p in before.pending.items()}
    assert len(done) == 4 and len(partial) == 5
    second = CountingDevice()
    build(second, items, path, agreeing, exporter)
    after = Lut.load(path)
    assert len(after.entries) == 9 and not after.pending
    for key, entry in done.items():
        assert after.entries[key] == entry  # finished entries untouched
    finished_models = {str(exporter.path_for(e["export_key"]).resolve()) for e in done.values()}
    assert second.runs and not set(second.runs) & finished_models
    # every repeat taken before the interruption was kept
    for key, n in partial.items():
        assert after.entries[key]["repeats"] >= n


def test_refresh_remeasures_only_stale_entries(tmp_path, exporter):
    path = tmp_path / "lut.json"
    items = items_for_space(tiny_space())
    build(CountingDevice(), items, path, FAST, exporter)
    data = json.loads(path.read_text())
    stale = "IBConv_K3_E3:8x8x16->8x8x16:s1"
    data["entries"][stale]["settings_id"] = "other"
    path.write_text(json.dumps(data))
    dev = CountingDevice()
    report = build(dev, items, path, FAST, exporter)
    assert report.measured == [stale] and report.skipped_fresh == 8
    aged = build(CountingDevice(), items, path, BuildOptions(**{**FAST.__dict__, "max_age_s": 0.0}), exporter)
    assert len(aged.measured) == 9 and set(aged.planned.values()) == {"older than --max-age"}
    other = BuildOptions(settings=BenchSettings(warmup_runs=1, num_runs=4), repeats=2)
    changed = build(CountingDevice(), items, path, other, exporter)
    assert set(changed.planned.values()) == {"settings or runtime changed"}


def test_a_lut_of_another_device_is_refused(tmp_path, exporter):
    path = tmp_path / "lut.json"
    build(CountingDevice(), items_for_space(tiny_space())[:1], path, FAST, exporter)
    data = json.loads(path.read_text())
    data["device"]["cpu"] = "Snapdragon 845"
    path.write_text(json.dumps(data))
    with pytest.raises(HnasError, match="a new table with `hnas lut build --out NEW.json`"):
        build(CountingDevice(), items_for_space(tiny_space()), path, FAST, exporter)


def test_cli_build_killed_halfway_loses_nothing(tmp_path, exporter):
    space_file = tmp_path / "tiny.json"
    tiny_space().save(space_file)
    for it in items_for_space(tiny_space()):  # models are in the cache: the build starts measuring at once
        exporter.export_part(it)
    out = tmp_path / "lut.json"
    args = [
        "lut",
        "build",
        "--device",
        "local",
        "--space",
        str(space_file),
        "--out",
        str(out),
        "--repeats",
        "3",
        "--runs",
        "1500",
        "--warmup",
        "1",
        "--core",
        "0",
    ]

    def entries():
        try:
            return json.loads(out.read_text())["entries"]
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    r = kill_and_resume(args, lambda: len(entries()) >= 2, lambda: 2 <= len(entries()) < 9, note=lambda: [out])
    killed, again = json.loads(r.noted[out]), r.again
    final = json.loads(out.read_text())
    assert len(final["entries"]) == 9 and not final["pending"]
    for key, entry in killed["entries"].items():
        assert final["entries"][key] == entry
    assert f"measured {9 - len(killed['entries'])} entries" in again.stdout
