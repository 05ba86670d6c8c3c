"""benchmark_model command line and output parser, on real outputs of every era and synthetic edge cases."""

import json

import pytest

from hnas.core.errors import HnasError
from latency.bench import (
    BenchmarkParseError,
    BenchSettings,
    RunStats,
    benchmark_command,
    parse_benchmark_output,
)


def _read(shared_reference, name: str) -> str:
    return (shared_reference / "benchmark_model_output" / name).read_text()


# --------------------------------------------------------------------------------------------- real outputs


def test_tf2_info_prefix_percentiles(shared_reference):
    r = parse_benchmark_output(_read(shared_reference, "tf2_info_prefix_percentiles.txt"))
    assert r.runs.count == 50
    assert r.runs.avg == 1.24027e6
    assert r.runs.median == 1239807 and r.runs.p5 == 1238753 and r.runs.p95 == 1247415
    assert r.runs.first == 1249964 and r.runs.min == 1238588 and r.runs.max == 1252566 and r.runs.std == 2565
    assert r.runs.median_or_avg == 1239807
    assert r.warmup is not None and r.warmup.count == 1 and r.warmup.curr == 1357602
    assert r.init_us == 5579
    assert r.op_profile == []
    assert "Memory footprint" in r.raw_tail


def test_tf2x_op_profiling(shared_reference):
    r = parse_benchmark_output(_read(shared_reference, "tf2x_op_profiling_mobilenet_v1.txt"))
    assert r.runs.count == 50
    assert r.runs.avg == 2.95034e6
    assert r.runs.first == 2990275  # the measured runs, not `Timings (microseconds): count=50 first=2989660`
    assert r.runs.median is None and r.runs.median_or_avg == 2.95034e6
    assert r.warmup is not None and r.warmup.count == 1 and r.warmup.curr == 3512391
    assert r.init_us == 17187
    ops = r.op_profile
    assert len(ops) == 31
    assert ops[0].node_type == "CONV_2D" and ops[0].avg_ms == 60.957
    assert ops[0].name == "[MobilenetV1/MobilenetV1/Conv2d_0/Relu6]:0"
    assert (ops[0].start_ms, ops[0].first_ms, ops[0].percent, ops[0].times_called) == (0.066, 87.754, 2.066, 1)
    assert ops[-1].node_type == "SOFTMAX" and ops[-1].name == "[MobilenetV1/Predictions/Reshape_1]:30"
    assert all(op.node_type != "AllocateTensors" for op in ops)  # the init-profiling table is not taken
    assert sum(op.avg_ms for op in ops) == pytest.approx(2949.903)  # returned as printed, not normalised


def test_tf2x_init_profile_timings_line_is_not_a_stat_line(shared_reference):
    text = _read(shared_reference, "tf2x_op_profiling_mobilenet_v1.txt")
    # without the measured-runs line, the only stat line left is the warm-up one (then read as the runs);
    # neither `Timings (microseconds): count=1 curr=1356` nor `Memory (bytes): count=0` is picked up
    text = "\n".join(line for line in text.splitlines() if not line.startswith("count=50 "))
    r = parse_benchmark_output(text)
    assert r.warmup is None
    assert r.runs.count == 1 and r.runs.curr == 3512391 and r.runs.avg == 3512391


def test_tf1_13_legacy(shared_reference):
    r = parse_benchmark_output(_read(shared_reference, "tf1_13_legacy.txt"))
    assert r.warmup is None
    assert r.runs.count == 15 and r.runs.avg == 66767.6 and r.runs.std == 39
    assert r.runs.median is None and r.runs.p5 is None
    assert r.init_us == 9933


def test_android_logcat_prefix(shared_reference):
    r = parse_benchmark_output(_read(shared_reference, "android_logcat_prefix.txt"))
    assert r.warmup is None
    assert r.runs.count == 25 and r.runs.median == 141253 and r.runs.avg == 145528
    assert r.runs.median_ms == pytest.approx(141.253)
    assert r.init_us == 92318


def test_tf24_android_no_prefix(shared_reference):
    r = parse_benchmark_output(_read(shared_reference, "tf24_android_no_prefix.txt"))
    assert r.warmup is None
    assert r.runs.count == 50 and r.runs.avg == 249684
    assert r.runs.avg_ms == pytest.approx(249.684)
    assert r.init_us == 16242


def test_every_shared_output_parses(shared_reference):
    files = sorted((shared_reference / "benchmark_model_output").glob("*.txt"))
    assert len(files) >= 5
    for path in files:
        r = parse_benchmark_output(path.read_text())
        assert r.runs.count > 0 and r.runs.median_or_avg > 0, path.name


# --------------------------------------------------------------------------------------------- synthetic

WARMUP = "count=5 first=1200 curr=1100 min=1050 max=1200 avg=1120 std=50"
RUNS = "count=20 first=1000 curr=990 min=980 max=1010 avg=995.5 std=8 p5=981 median=994 p95=1008"
INIT = "Inference timings in us: Init: 2500, First inference: 1200, Warmup (avg): 1120, Inference (avg): 995.5"


def test_all_same_line():
    for line in ("count=20 curr=1500(all same)", "count=20 curr=1500 (all same)"):
        r = parse_benchmark_output(f"count=5 curr=1600(all same)\n{line}\n")
        assert r.runs.count == 20 and r.runs.curr == 1500
        assert r.runs.avg == r.runs.min == r.runs.max == r.runs.first == 1500 and r.runs.std == 0
        assert r.runs.median is None and r.runs.median_or_avg == 1500
        assert r.warmup is not None and r.warmup.count == 5 and r.warmup.avg == 1600


def test_scientific_notation():
    r = parse_benchmark_output("count=3 first=2.5e+06 curr=2.4e+06 min=2.4e+06 max=2.5e+06 avg=2.45e+06 std=5e+04\n")
    assert r.runs.avg == 2.45e6 and r.runs.std == 5e4 and r.runs.median_or_avg_ms == pytest.approx(2450.0)


def test_count_zero_is_an_error():
    with pytest.raises(BenchmarkParseError, match="count=0"):
        parse_benchmark_output(f"{WARMUP}\ncount=0\n")


def test_garbage_is_an_error_quoting_the_tail():
    text = "\n".join(f"garbage line {i}" for i in range(40))
    with pytest.raises(BenchmarkParseError) as info:
        parse_benchmark_output(text)
    message = str(info.value)
    assert "expected" in message and "count=" in message
    assert "garbage line 39" in message and "garbage line 25" in message
    assert "garbage line 24" not in message  # only the last 15 lines are quoted
    assert isinstance(info.value, ValueError) and isinstance(info.value, HnasError)


def test_empty_output_is_an_error():
    with pytest.raises(BenchmarkParseError, match="no output"):
        parse_benchmark_output("")


def test_error_output_is_an_error():
    text = (
        "INFO: STARTING!\n"
        "ERROR: Could not open '/data/local/tmp/missing.tflite'.\n"
        "Failed to mmap model /data/local/tmp/missing.tflite\n"
        "Benchmarking failed.\n"
    )
    with pytest.raises(BenchmarkParseError, match="Could not open") as info:
        parse_benchmark_output(text)
    assert "Benchmarking failed." in str(info.value)


def test_benchmarking_failed_after_stats_is_an_error():
    with pytest.raises(BenchmarkParseError, match="Benchmarking failed"):
        parse_benchmark_output(f"{WARMUP}\n{RUNS}\nBenchmarking failed.\n")


def test_logcat_timestamped_lines():
    text = "\n".join(
        f"11-28 07:17:35.{i:03d}  1234  1234 I tflite  : {line}"
        for i, line in enumerate(["Running benchmark for at least 5 iterations", WARMUP, RUNS, INIT])
    )
    r = parse_benchmark_output(text)
    assert r.warmup is not None and r.warmup.count == 5 and r.warmup.avg == 1120
    assert r.runs.count == 20 and r.runs.median == 994 and r.runs.avg == 995.5
    assert r.init_us == 2500


def test_logcat_brief_lines():
    text = f"I/tflite  ( 4321): {WARMUP}\nI/tflite  ( 4321): {RUNS}\nI/tflite  ( 4321): {INIT}\n"
    r = parse_benchmark_output(text)
    assert r.runs.count == 20 and r.warmup is not None and r.init_us == 2500


def test_stderr_and_stdout_in_any_order():
    stderr = f"INFO: STARTING!\nINFO: {WARMUP}\nINFO: {RUNS}\n"
    stdout = f"{INIT}\n"
    for text in (stderr + stdout, stdout + stderr):
        r = parse_benchmark_output(text)
        assert r.warmup is not None and r.warmup.count == 5
        assert r.runs.count == 20 and r.init_us == 2500


def test_legacy_init_line():
    r = parse_benchmark_output(
        "count=15 avg=66767.6\n\nAverage inference timings in us: Warmup: 76605.9, Init: 9933, no stats: 1\n"
    )
    assert r.init_us == 9933 and r.warmup is None


def test_missing_init_is_none():
    r = parse_benchmark_output(f"{WARMUP}\n{RUNS}\n")
    assert r.init_us is None and r.op_profile == []


def test_run_stats_helpers():
    s = RunStats(count=2, avg=1500.0, p95=2000.0)
    assert s.median_or_avg == 1500.0 and s.median_or_avg_ms == 1.5 and s.ms("p95") == 2.0 and s.ms("p5") is None
    with pytest.raises(HnasError, match="no timing field"):
        s.ms("count")
    with pytest.raises(HnasError, match="neither"):
        _ = RunStats(count=0).median_or_avg


# --------------------------------------------------------------------------------------------- command, settings


def test_command_defaults():
    argv = benchmark_command("/data/local/tmp/benchmark_model", "/data/local/tmp/op.tflite", BenchSettings())
    assert argv == [
        "/data/local/tmp/benchmark_model",
        "--graph=/data/local/tmp/op.tflite",
        "--num_threads=1",
        "--warmup_runs=5",
        "--warmup_min_secs=0",
        "--num_runs=20",
        "--min_secs=0",
        "--max_secs=150",
        "--use_xnnpack=true",
    ]


def test_command_options():
    s = BenchSettings(num_threads=4, min_secs=0.5, max_secs=30, use_xnnpack=False, enable_op_profiling=True)
    argv = benchmark_command("bm", "g.tflite", s)
    assert "--num_threads=4" in argv and "--min_secs=0.5" in argv and "--max_secs=30" in argv
    assert "--use_xnnpack=false" in argv
    assert argv[-1] == "--enable_op_profiling=true"


def test_settings_round_trip_through_json():
    s = BenchSettings(num_threads=2, warmup_runs=3, num_runs=50, min_secs=0.25, enable_op_profiling=True)
    back = BenchSettings.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    assert BenchSettings.from_dict({}) == BenchSettings()
    assert BenchSettings.from_dict({"max_secs": 60}).max_secs == 60.0


def test_settings_errors():
    with pytest.raises(HnasError, match="unknown benchmark setting"):
        BenchSettings.from_dict({"num_thread": 2})
    with pytest.raises(HnasError, match="true or false"):
        BenchSettings.from_dict({"use_xnnpack": "yes"})
    with pytest.raises(HnasError, match="whole number"):
        BenchSettings.from_dict({"num_runs": 2.5})
    with pytest.raises(HnasError, match="num_runs"):
        BenchSettings(num_runs=0)
