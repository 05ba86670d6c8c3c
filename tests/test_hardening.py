"""Settings are checked before anything is written, a resumed run refuses changed settings, and a measurement
is trusted only when it is stable (one rule for builds, verify, validate and profile)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from hnas.core.errors import HnasError
from latency.bench import BenchSettings
from latency.build import BuildOptions, build_many
from latency.devices import BenchOutput, LocalDevice
from latency.lut import Lut
from latency.stability import Stability, spread_of
from tests.harness import run_cli
from tests.tiny import tiny_space


def _output(avg_us: float) -> str:
    """What benchmark_model prints for one run of `avg_us` (warm-up, then 10 runs at that median)."""
    return (
        "INFO: Running benchmark for at least 1 iterations and at least 0 seconds\n"
        f"INFO: count=1 curr={avg_us:.0f}\n"
        "INFO: Running benchmark for at least 10 iterations and at least 0 seconds\n"
        f"INFO: count=10 first={avg_us:.0f} curr={avg_us:.0f} min={avg_us:.0f} max={avg_us:.0f} avg={avg_us:.0f} "
        f"std=1 median={avg_us:.0f}\n"
    )


class Scripted(LocalDevice):
    """The host's identity, but the figures come from a script: one list of medians (us) per model, in order."""

    def __init__(self, medians: dict[str, list[float]]):
        super().__init__(core=0)
        self.script = {k: list(v) for k, v in medians.items()}
        self.calls: list[str] = []

    def busy(self):
        return None

    def benchmark_batch(self, models, settings):
        for m in models:
            key = next(k for k in self.script if k in m)
            self.calls.append(key)
            yield BenchOutput(m, 0, _output(self.script[key].pop(0)))


def test_the_stability_rule():
    rule = Stability(spread=0.10, extra=2, pause_s=0)
    assert spread_of([100, 105, 109]) == pytest.approx(0.09) and rule.agrees([100, 105, 109])
    assert rule.again([100, 130], 0) and rule.again([100, 130], 1) and not rule.again([100, 130], 2)
    assert rule.verdict([100, 130]) == {"stable": False, "spread": 0.3}
    with pytest.raises(HnasError, match="--spread"):
        Stability(spread=0)


def test_unstable_networks_are_measured_again_then_marked_and_verify_reports_no_error(tiny_lut, tmp_path):
    from hnas.spec.arch import sample
    from latency.export import Exporter
    from latency.verify import measure_networks

    lut = Lut.load(tiny_lut)
    _, repeats = lut.bench_settings()
    a, b = sample(tiny_space(), 2, np.random.default_rng(3))
    from latency.export import export_network

    ex = Exporter()
    ka, kb = export_network(a, ex).cache_key, export_network(b, ex).cache_key
    calm = [1000.0] * (repeats + 4)
    wild = [1000.0, 2000.0] * 6  # never within 10 %
    dev = Scripted({ka: calm, kb: wild})
    rows = measure_networks(dev, [a, b], lut, ex, stability=Stability(extra=3, pause_s=0))
    assert rows[0]["stable"] and rows[0]["spread"] == 0.0 and len(rows[0]["repeat_medians_ms"]) == repeats
    assert not rows[1]["stable"] and len(rows[1]["repeat_medians_ms"]) == repeats + 3  # 3 extra, then marked
    assert dev.calls.count(kb) == repeats + 3 and dev.calls.count(ka) == repeats


def test_a_build_marks_entries_whose_repeats_keep_disagreeing(tmp_path):
    from hnas.spec.modules import canonical
    from latency.export import Exporter, cache_key
    from latency.items import items_for_space

    items = items_for_space(tiny_space())[:2]
    keys = [cache_key(canonical(p.build), p.input_shape) for p in items]
    dev = Scripted({keys[0]: [500.0] * 10, keys[1]: [500.0, 900.0] * 10})
    options = BuildOptions(BenchSettings(warmup_runs=1, num_runs=3), 2, Stability(extra=2, pause_s=0))
    fresh = Exporter(tmp_path / "cache")  # an empty cache: the report counts the conversions it made
    (report,) = build_many([(dev, tmp_path / "l.json")], items, options, fresh).values()
    table = Lut.load(tmp_path / "l.json")
    stable, shaky = (table.entries[p.key] for p in items)
    assert stable["stable"] and stable["repeats"] == 2
    assert not shaky["stable"] and shaky["repeats"] == 4 and shaky["spread"] == pytest.approx(0.8)
    assert report.unstable == [items[1].key] and (report.exported, report.cached) == (2, 0)


class Killed(Exception):
    """Stands for SIGKILL in the middle of a build."""


def test_a_part_faster_than_the_tools_resolution_is_stored_loads_and_resumes(tmp_path):
    """benchmark_model prints whole microseconds: a tiny part's fastest run reads min=0 on a fast core (seen on an
    Intel host). What the build stores must load, so a build killed after such a repeat resumes."""
    from hnas.spec.modules import canonical
    from latency.export import Exporter, cache_key
    from latency.items import items_for_space
    from latency.lut import check_repeat

    items = items_for_space(tiny_space())[:2]
    keys = [cache_key(canonical(p.build), p.input_shape) for p in items]
    fast = _output(1.0).replace("min=1", "min=0")

    class Fast(Scripted):
        def __init__(self, stop_after):
            super().__init__({k: [] for k in keys})
            self.stop_after = stop_after

        def benchmark_batch(self, models, settings):
            for m in models:
                if len(self.calls) == self.stop_after:
                    raise Killed
                self.calls.append(m)
                yield BenchOutput(m, 0, fast)

    options = BuildOptions(BenchSettings(warmup_runs=1, num_runs=3), 2, Stability(extra=0, pause_s=0))
    out, cache = tmp_path / "l.json", Exporter(tmp_path / "cache")
    with pytest.raises(Killed):
        build_many([(Fast(stop_after=3), out)], items, options, cache)
    half = Lut.load(out)  # killed between repeats: one entry done, one pending, both with min_us 0
    assert len(half.entries) == 1 and [r["min_us"] for r in half.pending[items[1].key]["repeats"]] == [0.0]
    build_many([(Fast(stop_after=99), out)], items, options, cache)
    done = Lut.load(out)
    assert set(done.entries) == {p.key for p in items} and not done.pending
    assert all(done.entries[p.key]["min_ms"] == 0.0 and done.entries[p.key]["median_ms"] == 0.001 for p in items)
    with pytest.raises(HnasError, match=r"the measurement of X: median_us: expected a finite number above 0, got 0"):
        check_repeat({"count": 3, "avg_us": 0.4, "std_us": 0.1, "min_us": 0.0, "median_us": 0.0}, "X")


def test_a_busy_host_core_is_noticed_during_the_measurement_not_before(tiny_lut):
    from latency.export import Exporter
    from latency.items import items_for_space

    model = str(Exporter().export_part(items_for_space(tiny_space())[1]).path)
    dev = LocalDevice(core=0)
    hog = subprocess.Popen(
        ["taskset", "-c", "0", sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 30: pass"]
    )
    try:
        time.sleep(0.3)
        (out,) = dev.benchmark_batch([model], BenchSettings(warmup_runs=1, num_runs=20))
        assert out.rc == 0
        why = dev.busy()
        assert why is not None and re.search(r"other work took \d+% of core 0 during the measurement", why), why
    finally:
        hog.kill()
        hog.wait()
    # what ran before (a training a minute ago, in the load average) is not counted: only the core's busy time
    # during the measurement beyond our own CPU time is
    from latency.stability import contention

    assert contention(0, busy_s=1.98, ours_s=1.95, wall_s=2.0) is None
    assert contention(0, busy_s=1.9, ours_s=1.0, wall_s=2.0, names=["stress"]) == (
        "other work took 45% of core 0 during the measurement: stress"
    )
    assert Stability().verdict([1.0]) == {"stable": False, "spread": None}  # one repeat cannot be judged


def test_a_table_of_another_machine_is_never_written_to(tmp_path):
    from latency.build import open_lut

    path = tmp_path / "other.json"
    desc = {**LocalDevice(core=0).describe(), "machine": "0000dead"}
    Lut.new(desc, {}, {}, path).save()
    before = path.read_bytes()
    with pytest.raises(HnasError, match=r"machine 0000dead.*never mixes two devices' measurements"):
        open_lut(path, LocalDevice(core=0), {})
    assert path.read_bytes() == before
    from latency.build import default_lut_path  # it names this machine: a shipped table of this CPU is left alone

    here = LocalDevice(core=0).describe()
    name = default_lut_path(here).name  # e.g. "Intel(R) Xeon(R) Processor" -> local-intel-r-xeon-r-processor-<machine>
    assert re.fullmatch(rf"local-[a-z0-9]+(-[a-z0-9]+)*-{here['machine']}\.json", name), name
    words = re.findall(r"[a-z0-9]+", here["cpu"].lower())
    assert name.removeprefix("local-").startswith("-".join(words) + "-"), (name, words)


def test_an_empty_band_and_a_missing_lut_are_refused_before_anything_is_written(tiny_lut, tmp_path):
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    out = tmp_path / "run"
    for args, message in (
        (["--lut", str(tiny_lut), "--lat", "500:600"], "no architecture of space 'tiny' has a latency inside"),
        (["--lut", str(tiny_lut), "--lat", "9:7"], "inverted"),
        (["--lut", str(tmp_path / "none.json"), "--lat", "0:9"], "does not exist"),
        (["--lut", str(tiny_lut), "--lat", "0:1000", "--data", "imagenet:/nowhere"], "ImageNet layout"),
    ):
        res = run_cli("search", "--space", str(space), "--out", str(out), *args)
        assert res.returncode == 2 and message in res.stderr, res.stderr
        assert not out.exists()


def test_a_resumed_run_names_the_settings_that_differ(tiny_lut, tmp_path):
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    out = tmp_path / "run"
    args = ["search", "--lut", str(tiny_lut), "--space", str(space), "--stages", "2", "--lat", "0:1000"]
    args += ["--epochs", "1", "--lr", "0.05", "--population", "4", "--generations", "1", "--batch-size", "128"]
    args += ["--resolution", "16", "--bn-images", "32", "--out", str(out)]
    assert run_cli(*args).returncode == 0
    config = (out / "config.json").read_text()
    again = run_cli("search", "--out", str(out))  # nothing given: resumes (here: already finished)
    assert again.returncode == 0 and "resuming" in again.stdout
    changed = run_cli("search", "--out", str(out), "--population", "8", "--lat", "0:900", "--resolution", "16")
    assert changed.returncode == 2
    assert "--population 4 (given 8)" in changed.stderr and "--lat 0:1000 (given 0:900)" in changed.stderr
    assert "--resolution" not in changed.stderr  # given, but the same as saved
    assert (out / "config.json").read_text() == config and json.loads(config)["search"]["population"] == 4
