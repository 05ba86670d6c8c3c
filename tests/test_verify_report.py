import json
import re
import shutil

import numpy as np
import pytest

from hnas.spec.arch import sample
from latency.bench import OpTiming
from latency.export import export_network, tflite_ops
from latency.lut import Lut
from latency.predict import LatencyPredictor
from latency.validate import error_stats, fit_calibration
from latency.verify import map_op_profile
from tests.harness import run_cli
from tests.tiny import tiny_space


@pytest.mark.slow
def test_verify_measures_the_whole_network_with_the_luts_settings(tiny_lut, space_file):
    arch = str(sample(tiny_space(), 1, np.random.default_rng(4))[0])
    tiny_nets_are_noisy = ("--spread", "100")  # microseconds: only a wide spread keeps the repeat count exact
    out = run_cli(
        "verify", "--arch", arch, "--space", str(space_file), "--lut", str(tiny_lut), "--json", *tiny_nets_are_noisy
    )
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    settings = Lut.load(tiny_lut).data["settings"]
    assert len(r["repeat_medians_ms"]) == settings["repeats"]
    assert r["measured_ms"] > 0 and r["predicted_ms"] > 0
    assert r["error"] == pytest.approx((r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"])
    assert r["device"]["core"] == settings["core"]
    prof = run_cli(
        "verify",
        "--arch",
        arch,
        "--space",
        str(space_file),
        "--lut",
        str(tiny_lut),
        "--op-profile",
        "--json",
        *tiny_nets_are_noisy,
    )
    assert prof.returncode == 0, prof.stderr
    p = json.loads(prof.stdout)
    assert len(p["repeat_medians_ms"]) == settings["repeats"]  # the profiling pass is not one of the repeats
    rows = p["op_profile"]
    parts = sample(tiny_space(), 1, np.random.default_rng(4))[0].parts()
    assert [r["layer"] for r in rows] == [p.label for p in parts]
    lut = Lut.load(tiny_lut)
    assert [r["lut_ms"] for r in rows] == [lut.latency_ms(p.key) if p.key else 0.0 for p in parts]
    for r in rows:
        assert r["profiled"] == [o for o in r["ops"] if o != "PAD"]  # builtin names; each PAD runs with its conv
        assert (r["ms"] > 0) == bool(r["ops"]) and r["lut_ms"] >= 0
    assert p["op_profile_total_ms"] == pytest.approx(sum(r["ms"] for r in rows))
    assert "each op of the network run as its own graph" in p["op_profile_method"]
    table = run_cli("verify", "--arch", arch, "--space", str(space_file), "--lut", str(tiny_lut), "--op-profile")
    assert table.returncode == 0 and "network - LUT" in table.stdout and "measured end to end" in table.stdout


def test_op_profile_maps_onto_layers_with_the_layers_own_op_sequences(exporter):
    sp = tiny_space()
    arch = sample(sp, 1, np.random.default_rng(2))[0]
    net_ops = tflite_ops(export_network(arch, exporter).path)
    parts = arch.parts()
    assert [p.label for p in parts] == ["stem"] + [
        f"layer {L.index} {op.short}" for L, op in zip(sp.layers, arch.ops)
    ] + [
        "conv1x1",
        "pool+fc",
    ]
    seqs = [(p.label, tflite_ops(exporter.export_part(p).path) if p.key else []) for p in parts]
    assert [o for _, s in seqs for o in s] == net_ops  # a network's graph is its layers' graphs in order
    rows = [OpTiming(t, f"n{i}", 0.0, 0.0, 0.1 * (i + 1), 0.0, 1) for i, t in enumerate(net_ops)]
    mapped = map_op_profile(rows, seqs)
    assert [m["layer"] for m in mapped] == [n for n, _ in seqs]
    assert sum(m["ms"] for m in mapped) == pytest.approx(sum(r.avg_ms for r in rows))
    conv = next(i for i, r in enumerate(rows) if r.node_type == "CONV_2D")
    with pytest.raises(Exception, match="does not follow"):
        map_op_profile(rows[:conv] + rows[conv + 1 :], seqs)  # a convolution cannot vanish
    no_pad = map_op_profile([r for r in rows if r.node_type != "PAD"], seqs)  # a PAD can (fused)
    assert [m["ops"] for m in no_pad] == [m["ops"] for m in mapped]
    with pytest.raises(Exception, match="after the network's last layer"):
        map_op_profile(rows + rows[-1:], seqs)


# XNNPACK operator names in the form benchmark_model prints them for a delegated graph (TFLite >= 2.9.1)
_XNN = {
    "CONV_2D": "Convolution (NHWC, F32) IGEMM",
    "DEPTHWISE_CONV_2D": "Convolution (NHWC, F32) DWConv",
    "ADD": "Add (ND, F32)",
    "MEAN": "Global Average Pooling (NWC, F32)",
    "FULLY_CONNECTED": "Fully Connected (NC, F32) GEMM",
    "PAD": "Constant Pad (ND, X32)",
    "RESHAPE": "Copy (NC, X32)",
}


def test_op_profile_from_a_phone_with_xnnpack_maps_by_operator_family():
    seqs = [
        ("stem", ["PAD", "CONV_2D"]),
        ("layer 1", ["CONV_2D", "PAD", "DEPTHWISE_CONV_2D", "CONV_2D"]),
        ("layer 2", ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "ADD"]),
        ("layer 3", []),
        ("head", ["MEAN", "RESHAPE", "FULLY_CONNECTED"]),
    ]
    flat = [op for _, ops in seqs for op in ops]
    # XNNPACK fused the stem's PAD into its convolution and elided the RESHAPE; the delegate's row is a summary
    kept = [op for i, op in enumerate(flat) if i != 0 and op != "RESHAPE"]
    rows = [OpTiming("TfLiteXNNPackDelegate", "delegate", 0.0, 0.0, 9.0, 0.0, 1)] + [
        OpTiming(_XNN[op], f"Delegate/{_XNN[op]}:{i}", 0.0, 0.0, 0.5 + i, 0.0, 1) for i, op in enumerate(kept)
    ]
    mapped = map_op_profile(rows, seqs)
    assert [len(m["profiled"]) for m in mapped] == [1, 4, 4, 0, 2]
    assert [m["ms"] for m in mapped][3] == 0
    assert sum(m["ms"] for m in mapped) == pytest.approx(sum(r.avg_ms for r in rows[1:]))
    wrong = list(rows)
    wrong[3] = OpTiming(_XNN["ADD"], "x", 0.0, 0.0, 1.0, 0.0, 1)  # an ADD where layer 1's PAD/depthwise must be
    with pytest.raises(Exception, match="does not follow the network's layers at layer 1"):
        map_op_profile(wrong, seqs)
    with pytest.raises(Exception, match="XNNPACK delegate as one node"):
        map_op_profile(rows[:1], seqs)


def test_calibration_fit_and_error_figures():
    pred = np.array([10.0, 20.0, 30.0, 40.0])
    meas = 1.5 + 1.1 * pred
    cal = fit_calibration(pred, meas)
    assert cal.offset_ms == pytest.approx(1.5) and cal.scale == pytest.approx(1.1)
    st = error_stats(cal.apply(pred), meas)
    assert st["mape"] == pytest.approx(0, abs=1e-9) and st["within_5"] == 1 and st["kendall_tau"] == pytest.approx(1)
    raw = error_stats(pred, meas)
    assert raw["within_5"] == 0 and raw["mape"] > 0.1


def test_the_calibration_fits_relative_error_and_its_networks_span_the_space():
    from hnas.spec.arch import sample, sample_across_sizes
    from hnas.spec.cost import arch_cost
    from hnas.spec.space import load_space

    # a line fitted on big networks must not wreck a small one: relative least squares keeps both near
    pred = np.array([4.0, 30.0, 40.0, 50.0, 60.0])
    meas = np.array([4.1, 31.5, 41.0, 52.5, 61.0])
    cal = fit_calibration(pred, meas)
    assert abs(cal.apply(4.0) / 4.1 - 1) < 0.03
    space = load_space("basic")
    spread = [arch_cost(a).macs for a in sample_across_sizes(space, 40, np.random.default_rng(0))]
    uniform = [arch_cost(a).macs for a in sample(space, 40, np.random.default_rng(0))]
    assert min(spread) < 0.75 * min(uniform) and max(spread) > 1.2 * max(uniform)
    again = sample_across_sizes(space, 40, np.random.default_rng(0))
    assert [str(a) for a in again] == [str(a) for a in sample_across_sizes(space, 40, np.random.default_rng(0))]


@pytest.mark.slow
def test_lut_validate_calibrates_and_reports(tiny_lut, space_file, tmp_path):
    lut = tmp_path / "lut.json"
    shutil.copy(tiny_lut, lut)
    out = run_cli(
        "lut",
        "validate",
        "--lut",
        str(lut),
        "--space",
        str(space_file),
        "-n",
        "6",
        "--fit",
        "3",
        "--out",
        str(tmp_path / "v"),
        "--spread",
        "100",
    )
    assert out.returncode == 0, out.stderr
    assert "raw LUT sum" in out.stdout and "calibrated" in out.stdout and "Kendall" in out.stdout
    rep = json.loads((tmp_path / "v" / "validate.json").read_text())
    assert len(rep["networks"]) == 6 and rep["held_out_raw"]["n"] == 3
    assert (tmp_path / "v" / "validate.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # data: test_figures
    table = Lut.load(lut)
    cal = table.data["calibration"]
    pred = LatencyPredictor(table, tiny_space())
    raw = LatencyPredictor(table, tiny_space(), calibrated=False)
    a = sample(tiny_space(), 1, np.random.default_rng(0))[0]
    # kept only when it beats the raw LUT sums on the held-out networks (`test_trust` checks the rule itself)
    better = rep["held_out_calibrated"]["mape"] < rep["held_out_raw"]["mape"]
    assert rep["calibration_applied"] == better and rep["calibration_note"] in " ".join(out.stdout.split())
    if better:
        assert cal["fitted_on"] == 3 and cal["space"] == "tiny" and "stored in" in out.stdout
        assert pred.predict_arch(a) == pytest.approx(cal["offset_ms"] + cal["scale"] * raw.predict_arch(a))
    else:
        assert cal is None and pred.predict_arch(a) == raw.predict_arch(a) and "not stored" in out.stdout
    assert [r["predicted_ms"] for r in rep["networks"]] == [
        r["predicted_calibrated_ms"] if better else r["predicted_raw_ms"] for r in rep["networks"]
    ]
    bad = run_cli("lut", "validate", "--lut", str(lut), "--space", str(space_file), "-n", "5", "--fit", "5")
    assert bad.returncode == 2 and "--fit" in bad.stderr


@pytest.mark.slow
def test_demo_runs_the_whole_job_and_writes_the_report(tiny_lut, space_file, tmp_path):
    lut = tmp_path / "host.json"
    shutil.copy(tiny_lut, lut)
    run = tmp_path / "demo"
    out = run_cli(
        "demo",
        "--out",
        str(run),
        "--space",
        str(space_file),
        "--lut",
        str(lut),
        "--epochs",
        "1,1,1",
        "--population",
        "6",
        "--generations",
        "2",
    )
    assert out.returncode == 0, out.stderr
    for step in ("1/5", "2/5", "3/5", "4/5", "5/5"):
        assert step in out.stdout
    results = json.loads((run / "results.json").read_text())
    assert len(results["stages"]) == 4
    verify = json.loads((run / "verify.json").read_text())
    assert verify["arch"] == results["best"][0]["arch"] and verify["measured_ms"] > 0
    page = (run / "report" / "index.html").read_text()
    assert [r["layer"] for r in verify["op_profile"]][0] == "stem" and verify["op_profile_total_ms"] > 0
    figs = ("pareto.png", "op_distribution.png", "space_size.png", "latency.png", "supernet_accuracy.png", "layers.png")
    for fig in figs:
        assert fig in page and (run / "report" / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # data: test_figures
    assert "Predicted against measured" in page and "stage 4" in page and "layer by layer" in page
    assert re.search(r"latency band \[\d+\.\d\d, \d+\.\d\d\] ms", page)
