import subprocess
import sys

from latency.bench import BenchSettings, benchmark_command, parse_benchmark_output
from latency.devices import LocalDevice, split_batch
from latency.items import items_for_space
from tests.conftest import ROOT
from tests.tiny import tiny_space


def _model(exporter, i=3):
    item = items_for_space(tiny_space())[i]
    return exporter.export(item.build(), item.input_shape).path


def test_runner_prints_benchmark_model_format_that_the_parser_reads(exporter):
    path = _model(exporter)
    argv = benchmark_command("-", str(path), BenchSettings(warmup_runs=2, num_runs=7))[1:]
    out = subprocess.run(
        [sys.executable, "-m", "latency.runner", *argv, "--core=0"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "INFO: count=7 " in out.stdout and "median=" in out.stdout
    res = parse_benchmark_output(out.stdout)
    assert res.warmup.count == 2 and res.runs.count == 7
    assert 0 < res.runs.min <= res.runs.median <= res.runs.max
    assert res.init_us > 0


def test_local_device_batch_frames_each_model_and_reports_failures(exporter, tmp_path):
    dev = LocalDevice(core=0)
    good = dev.push(_model(exporter))
    missing = str(tmp_path / "missing.tflite")
    outs = list(dev.benchmark_batch([good, missing, good], BenchSettings(warmup_runs=1, num_runs=3)))
    assert [o.model for o in outs] == [good, missing, good]
    assert [o.rc for o in outs] == [0, 1, 0]
    assert "doesn't exist" in outs[1].text
    assert parse_benchmark_output(outs[2].text).runs.count == 3


def test_runner_is_pinned_to_one_core(exporter):
    path = _model(exporter)
    for core in (0, 1):
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "latency.runner",
                f"--graph={path}",
                "--num_runs=2",
                "--min_secs=0",
                f"--core={core}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert f"INFO: CPU affinity: [{core}]" in out.stdout, out.stdout
    desc = LocalDevice(core=0).describe()
    assert desc["core"] == 0 and desc["cpu"] and desc["kernel"]


def test_split_batch_ignores_noise_outside_frames():
    text = ["noise\n", "=== hnas-begin a.tflite\n", "INFO: count=1 curr=5\n", "=== hnas-end a.tflite rc=0\n"]
    (one,) = list(split_batch(text))
    assert one.model == "a.tflite" and one.rc == 0 and one.text == "INFO: count=1 curr=5"
