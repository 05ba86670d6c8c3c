"""A LUT build that converts in worker processes (on the CPUs besides the measuring core) while the first rounds
measure (a phone's always, the host's unless `--measure-alone`): the same entries and metadata as a serial build,
resumed after a kill, serial where it cannot overlap."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import latency.build as build_module
import latency.devices as devices_module
from latency.build import Ahead, build_many, conversion_cpus
from latency.defaults import MIN_ROUND
from latency.export import Exporter
from latency.items import items_for_space
from latency.lut import Lut
from latency.stability import Stability
from tests.harness import FAST, CountingDevice, adb_device, kill_and_resume
from tests.tiny import tiny_space

PROVENANCE = ("spec", "export_key", "model_sha256", "settings_id", "source", "runs", "repeats")
AGREEING = replace(FAST, stability=Stability(spread=1e9))  # no extra repeats: the same repeats in both builds


def assert_same_tables(a: Lut, b: Lut) -> None:
    """The same 9 entries, settled, with the same provenance."""
    assert a.entries.keys() == b.entries.keys() and len(a.entries) == 9 and not a.pending
    for key in a.entries:
        assert {f: a.entries[key][f] for f in PROVENANCE} == {f: b.entries[key][f] for f in PROVENANCE}


def test_an_overlapped_cold_build_has_the_serial_builds_entries_and_metadata(tmp_path):
    items = items_for_space(tiny_space())
    tables, runs = {}, {}
    for overlap in (True, False):
        dev, path = CountingDevice(), tmp_path / f"{overlap}.json"
        exporter = Exporter(tmp_path / f"cache-{overlap}")  # cold: every model is converted
        options = replace(AGREEING, overlap=overlap, beside_host=True)
        (report,) = build_many([(dev, path)], items, options, exporter).values()
        assert report.exported == 9 and report.cached == 0 and len(report.measured) == 9
        tables[overlap], runs[overlap] = Lut.load(path), [m.rsplit("/", 1)[1] for m in dev.runs]
    a, b = tables[True], tables[False]
    assert_same_tables(a, b)
    assert (a.device, a.data["settings"], a.data["runtime"]) == (b.device, b.data["settings"], b.data["runtime"])
    # the first round measures the first MIN_ROUND models in order, the rest when converted; every model its repeats
    assert runs[True][:MIN_ROUND] == runs[False][:MIN_ROUND]
    assert sorted(runs[True]) == sorted(runs[False]) and len(runs[False]) == 9 * AGREEING.repeats


def test_the_host_alone_or_with_no_cpu_besides_its_measuring_core_builds_serially(tmp_path, exporter, monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("nothing may convert in a worker here")

    monkeypatch.setattr(build_module, "Ahead", refuse)
    items = items_for_space(tiny_space())
    assert conversion_cpus([CountingDevice()], beside_host=False) == []  # `--measure-alone`
    measure_alone = replace(FAST, beside_host=False)
    (alone,) = build_many([(CountingDevice(), tmp_path / "alone.json")], items, measure_alone, exporter).values()
    monkeypatch.setattr(devices_module, "_host_cpus", lambda: [0])
    assert conversion_cpus([CountingDevice()]) == []
    (one_cpu,) = build_many([(CountingDevice(), tmp_path / "one.json")], items, FAST, exporter).values()
    assert len(one_cpu.measured) == len(alone.measured) == 9


def test_a_phone_measures_what_is_converted_while_the_rest_converts(phone_env, tmp_path, monkeypatch):
    """A phone does not take models as they come: its first round runs in batches, each of the models converted
    by then, while the host's CPUs convert the rest; the table is the serial build's."""
    phone, _, binary = phone_env
    items = items_for_space(tiny_space())
    started: list[Ahead] = []

    class Watched(Ahead):
        def __init__(self, *a):
            super().__init__(*a)
            started.append(self)

    monkeypatch.setattr(build_module, "Ahead", Watched)
    tables, batches, ready = {}, {}, []
    for overlap in (True, False):
        dev, path, seen = adb_device(phone, binary), tmp_path / f"{overlap}.json", []
        measure = dev.measure

        def spy(models, settings, measure=measure, seen=seen, overlap=overlap):
            seen.append([m.rsplit("/", 1)[1] for m in models])
            ready.extend(sum(f.done() for f in a.futures.values()) for a in started[-1:] if overlap)
            return measure(models, settings)

        dev.measure = spy
        exporter = Exporter(tmp_path / f"cache-{overlap}")  # cold: every model is converted
        (report,) = build_many([(dev, path)], items, replace(AGREEING, overlap=overlap), exporter).values()
        assert report.exported == 9 and len(report.measured) == 9
        tables[overlap], batches[overlap] = Lut.load(path), seen
    assert len(started) == 1  # the overlapped build converted in workers, the serial one did not
    assert_same_tables(tables[True], tables[False])
    assert [len(x) for x in batches[False]] == [9, 9]  # a serial build: two rounds of every model
    first_round = []
    for batch in batches[True]:
        if len(first_round) == 9:
            break
        first_round += batch
    assert sorted(first_round) == sorted(batches[False][0])  # each model once in the first round
    assert len(batches[True]) > 2 and ready[0] < 9  # in batches, the first while models were still converting


@pytest.mark.slow
def test_an_overlapped_build_killed_midway_resumes(tmp_path):
    if not {0, 1} <= set(devices_module._host_cpus()):
        pytest.skip("needs CPUs 0 and 1: one measures, the other converts")
    space_file = tmp_path / "tiny.json"
    tiny_space().save(space_file)
    out = tmp_path / "lut.json"
    args = ["lut", "build", "--device", "local", "--space", str(space_file), "--out", str(out)]
    args += ["--repeats", "3", "--runs", "1500", "--warmup", "1", "--core", "0"]

    def entries():
        try:
            return json.loads(out.read_text())["entries"]
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    env = {"HNAS_CACHE": str(tmp_path / "cache")}  # cold: the first run converts in its workers
    r = kill_and_resume(args, lambda: len(entries()) >= 1, lambda: 1 <= len(entries()) < 9, note=lambda: [out], env=env)
    killed, final = json.loads(r.noted[out]), json.loads(out.read_text())
    assert len(final["entries"]) == 9 and not final["pending"]
    for key, entry in killed["entries"].items():
        assert final["entries"][key] == entry
    assert f"measured {9 - len(killed['entries'])} entries" in r.again.stdout
