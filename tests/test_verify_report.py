import json
import shutil

import numpy as np
import pytest

from hnas.arch import sample
from latency.bench import OpTiming
from latency.export import export_network, tflite_ops
from latency.items import LutItem
from latency.lut import Lut
from latency.predict import LatencyPredictor
from latency.verify import error_stats, fit_calibration, map_op_profile
from tests.conftest import run_cli
from tests.test_predict import tiny_lut  # noqa: F401 - fixture
from tests.tiny import tiny_space


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "tiny.json"
    tiny_space().save(path)
    return path


def test_verify_measures_the_whole_network_with_the_luts_settings(tiny_lut, space_file):  # noqa: F811
    arch = str(sample(tiny_space(), 1, np.random.default_rng(4))[0])
    out = run_cli("verify", "--arch", arch, "--space", str(space_file), "--lut", str(tiny_lut), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    settings = Lut.load(tiny_lut).data["settings"]
    assert len(r["repeat_medians_ms"]) == settings["repeats"]
    assert r["measured_ms"] > 0 and r["predicted_ms"] > 0
    assert r["error"] == pytest.approx((r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"])
    assert r["device"]["core"] == settings["core"]
    prof = run_cli("verify", "--arch", arch, "--space", str(space_file), "--lut", str(tiny_lut), "--op-profile")
    assert prof.returncode == 2 and "--enable_op_profiling is not supported by the host runner" in prof.stderr


def test_op_profile_maps_onto_layers_with_the_layers_own_op_sequences(exporter):
    sp = tiny_space()
    arch = sample(sp, 1, np.random.default_rng(2))[0]
    net_ops = tflite_ops(export_network(arch, exporter).path)
    parts = [LutItem(part=p) for p in sp.skeleton.fixed_parts]
    items = (
        [("stem", parts[0])]
        + [
            (f"layer {L.index}", None if op.is_identity else LutItem(op=op, shape=L.shape))
            for L, op in zip(sp.layers, arch.ops)
        ]
        + [("conv", parts[1]), ("head", parts[2])]
    )
    seqs = [(n, tflite_ops(exporter.export(it.build(), it.input_shape).path) if it else []) for n, it in items]
    assert [o for _, s in seqs for o in s] == net_ops  # a network's graph is its layers' graphs in order
    rows = [OpTiming(t, f"n{i}", 0.0, 0.0, 0.1 * (i + 1), 0.0, 1) for i, t in enumerate(net_ops)]
    mapped = map_op_profile(rows, seqs)
    assert [m["layer"] for m in mapped] == [n for n, _ in seqs]
    assert sum(m["ms"] for m in mapped) == pytest.approx(sum(r.avg_ms for r in rows))
    with pytest.raises(Exception, match="does not follow"):
        map_op_profile(rows[1:], seqs)


def test_calibration_fit_and_error_figures():
    pred = np.array([10.0, 20.0, 30.0, 40.0])
    meas = 1.5 + 1.1 * pred
    cal = fit_calibration(pred, meas)
    assert cal.offset_ms == pytest.approx(1.5) and cal.scale == pytest.approx(1.1)
    st = error_stats(cal.apply(pred), meas)
    assert st["mape"] == pytest.approx(0, abs=1e-9) and st["within_5"] == 1 and st["kendall_tau"] == pytest.approx(1)
    raw = error_stats(pred, meas)
    assert raw["within_5"] == 0 and raw["mape"] > 0.1


def test_lut_validate_calibrates_and_reports(tiny_lut, space_file, tmp_path):  # noqa: F811
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
    )
    assert out.returncode == 0, out.stderr
    assert "raw LUT sum" in out.stdout and "calibrated" in out.stdout and "Kendall" in out.stdout
    rep = json.loads((tmp_path / "v" / "validate.json").read_text())
    assert len(rep["networks"]) == 6 and rep["held_out_raw"]["n"] == 3
    assert (tmp_path / "v" / "validate.png").stat().st_size > 1000
    table = Lut.load(lut)
    cal = table.data["calibration"]
    assert cal["fitted_on"] == 3 and cal["space"] == "tiny"
    pred = LatencyPredictor(table, tiny_space())
    raw = LatencyPredictor(table, tiny_space(), calibrated=False)
    a = sample(tiny_space(), 1, np.random.default_rng(0))[0]
    assert pred.predict_arch(a) == pytest.approx(cal["offset_ms"] + cal["scale"] * raw.predict_arch(a))
    bad = run_cli("lut", "validate", "--lut", str(lut), "--space", str(space_file), "-n", "5", "--fit", "5")
    assert bad.returncode == 2 and "--fit" in bad.stderr


def test_demo_runs_the_whole_job_and_writes_the_report(tiny_lut, space_file, tmp_path):  # noqa: F811
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
    for step in ("1/4", "2/4", "3/4", "4/4"):
        assert step in out.stdout
    results = json.loads((run / "results.json").read_text())
    assert len(results["stages"]) == 4
    verify = json.loads((run / "verify.json").read_text())
    assert verify["arch"] == results["best"][0]["arch"] and verify["measured_ms"] > 0
    page = (run / "report" / "index.html").read_text()
    for fig in ("pareto.png", "op_distribution.png", "space_size.png", "latency.png", "supernet_accuracy.png"):
        assert fig in page and (run / "report" / fig).stat().st_size > 1000
    assert "Predicted against measured" in page and "stage 4" in page
