import subprocess
import sys

import pytest

from latency.bench import BenchSettings, benchmark_flags, parse_benchmark_output
from latency.devices import LocalDevice, split_batch
from latency.items import items_for_space
from tests.harness import ROOT
from tests.tiny import tiny_space


def _model(exporter, i=3):
    item = items_for_space(tiny_space())[i]
    return exporter.export_part(item).path


def test_runner_prints_benchmark_model_format_that_the_parser_reads(exporter):
    path = _model(exporter)
    argv = [f"--graph={path}", *benchmark_flags(BenchSettings(warmup_runs=2, num_runs=7))]
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


def test_host_op_profile_runs_the_networks_own_ops_in_order_and_reproduces_its_output(exporter):
    import numpy as np

    from hnas.spec.arch import from_vector
    from latency.export import export_network, tflite_ops
    from latency.opprofile import OpChain
    from latency.runtime import load_interpreter

    sp = tiny_space()
    # the first op everywhere: a PAD before the strided depthwise conv, a residual ADD, and the head
    arch = from_vector(sp, [0] * len(sp.layers))
    path = export_network(arch, exporter).path
    chain = OpChain(path)
    ops = tflite_ops(path)
    assert {"PAD", "ADD", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"} <= set(ops)
    # every PAD runs in one graph with the convolution that reads it, as XNNPACK fuses it; the rest alone
    assert chain.op_names == [o for o in ops if o != "PAD"]
    assert [f for f in chain.fused if f] == [["PAD"]] * ops.count("PAD")
    assert OpChain(path, use_xnnpack=False).op_names == ops
    full = load_interpreter(path)
    (inp,) = full.get_input_details()
    x = np.random.default_rng(0).standard_normal(inp["shape"]).astype(np.float32)
    full.set_tensor(inp["index"], x)
    full.invoke()
    want = full.get_tensor(full.get_output_details()[0]["index"])
    _, tensors = chain.run({inp["index"]: x})
    np.testing.assert_array_equal(tensors[chain.graph_outputs[0]], want)

    argv = [f"--graph={path}", *benchmark_flags(BenchSettings(num_runs=5, enable_op_profiling=True))]
    out = subprocess.run(
        [sys.executable, "-m", "latency.runner", *argv, "--core=0"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
    res = parse_benchmark_output(out.stdout)
    assert [r.node_type for r in res.op_profile] == chain.op_names
    assert sum("(+PAD fused)" in r.name for r in res.op_profile) == ops.count("PAD")
    assert all(r.avg_ms > 0 and r.times_called == 1 for r in res.op_profile)
    starts = [r.start_ms for r in res.op_profile]
    assert starts == sorted(starts) and starts[0] == 0
    assert sum(r.percent for r in res.op_profile) == pytest.approx(100, abs=0.05)
    assert res.runs.count == 5  # the timed runs are the ordinary ones: profiling comes after them
