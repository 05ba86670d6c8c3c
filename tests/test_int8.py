"""int8: full-integer quantized parts and networks, int8 tables, and their checks, on the tiny space."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from hnas.core.errors import HnasError
from hnas.core.precision import INT8
from hnas.data import digits
from hnas.spec.arch import sample
from hnas.spec.modules import canonical
from hnas.spec.parts import Part
from hnas.spec.space import basic
from hnas.workflows.demo import DEMO_PROXY
from latency.bench import BenchSettings, OpTiming
from latency.build import BuildOptions, build
from latency.export import Exporter, cache_key, export_network, tflite_ops
from latency.items import items_for_space
from latency.lut import Lut
from latency.predict import LatencyPredictor
from latency.quantize import CalibrationRecipe, TfliteModel, op_tensor_types
from latency.runtime import fully_delegated, load_interpreter, random_inputs
from latency.stability import Stability
from latency.verify import map_op_profile
from tests.harness import INT8_KERNELS, ROOT, CountingDevice, adb_device, run_cli, tflite_graph
from tests.tiny import tiny_space

FAST_INT8 = BuildOptions(
    BenchSettings(warmup_runs=1, num_runs=3), 2, stability=Stability(extra=1, pause_s=0), precision=INT8
)
# the kernels that must run quantized; an int8 graph of the space holds no other op


@pytest.fixture(scope="module")
def int8_lut(tmp_path_factory, exporter):
    path = tmp_path_factory.mktemp("lut") / "tiny-int8.json"
    build(CountingDevice(), items_for_space(tiny_space(), INT8), path, FAST_INT8, exporter)
    return path


def _arch(seed: int = 3):
    return sample(tiny_space(), 1, np.random.default_rng(seed))[0]


def test_the_int8_key_is_derived_from_the_same_spec():
    for part in items_for_space(tiny_space()):
        q = part.at(INT8)
        assert q.key == f"{part.key}:int8" and q != part and q.at("float32") == part
        assert q.to_spec() == {**part.to_spec(), "precision": "int8"} and "precision" not in part.to_spec()
        assert Part.from_spec(q.to_spec()) == q and Part.from_spec(part.to_spec()) == part
    assert [p.key for p in items_for_space(tiny_space(), INT8)] == [
        f"{p.key}:int8" for p in items_for_space(tiny_space())
    ]
    with pytest.raises(HnasError, match="float32, int8"):
        items_for_space(tiny_space())[0].at("fp16")


def test_the_shipped_float32_table_is_unchanged_and_refuses_int8():
    shipped = Lut.load(ROOT / "lut" / "local-amd-epyc.json")
    assert (
        "precision" not in shipped.data["settings"]
        and shipped.settings_id == shipped.data["calibration"]["settings_id"]
    )
    for key, entry in shipped.entries.items():
        assert Part.from_spec(entry["spec"]).key == key
    pred = LatencyPredictor(shipped, basic(), precision="float32")
    assert pred.precision == "float32" and pred.calibration is not None
    with pytest.raises(HnasError, match="holds float32 entries, not int8: pass --precision float32"):
        LatencyPredictor(shipped, basic(), "lut/local-amd-epyc.json", precision=INT8)


def _tensors(path):
    interp = load_interpreter(path, use_xnnpack=False)
    return interp, {t["index"]: t for t in interp.get_tensor_details()}


def test_int8_parts_and_networks_have_no_float_kernel(exporter):
    graphs = [exporter.export_part(p) for p in items_for_space(tiny_space(), INT8)]
    graphs.append(export_network(_arch(), exporter, INT8))
    for ex in graphs:
        ops = op_tensor_types(ex.path)
        assert ops and {op for op, _, _ in ops} <= INT8_KERNELS, ops  # no QUANTIZE / DEQUANTIZE at the ends
        for op, ins, outs in ops:
            assert ins[0] == "int8" and outs == ["int8"], (op, ins, outs)
            if op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                assert ins[1:] == ["int8", "int32"], (op, ins)  # int8 weights, int32 bias
        interp, tensors = _tensors(ex.path)
        assert interp.get_input_details()[0]["dtype"] == np.int8 == interp.get_output_details()[0]["dtype"]
        for d in interp._get_ops_details():  # noqa: SLF001 - the only op listing
            if d["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D"):
                weights = tensors[int(d["inputs"][1])]
                channels = weights["shape"][0] if d["op_name"] == "CONV_2D" else weights["shape"][-1]
                assert len(weights["quantization_parameters"]["scales"]) == channels > 1  # per channel


def test_an_int8_network_is_its_int8_parts_in_order_and_tracks_the_float_one(exporter):
    arch = _arch()
    net = export_network(arch, exporter, INT8)
    parts = [p.at(INT8) for p in arch.parts()]
    seqs = [tflite_ops(exporter.export_part(p).path) for p in parts if p.key]
    assert [op for s in seqs for op in s] == tflite_ops(net.path) == tflite_ops(export_network(arch, exporter).path)
    x = np.random.default_rng(1).standard_normal((8, 32, 32, 3)).astype(np.float32)
    yq, yf = TfliteModel(net.path)(x), TfliteModel(export_network(arch, exporter).path)(x)
    assert np.sqrt(np.mean((yq - yf) ** 2) / np.mean(yf**2)) < 0.05


def test_one_conversion_gives_both_models_and_the_recipe_is_in_the_key(tmp_path):
    part = items_for_space(tiny_space())[4]
    module = canonical(part.build)
    fresh = Exporter(tmp_path / "a")
    q = fresh.export_part(part.at(INT8))
    assert not q.cached and q.precision == INT8
    f = fresh.export_part(part)
    assert f.cached and f.cache_key == cache_key(module, part.input_shape)  # written by the int8 conversion
    again = Exporter(tmp_path / "b").export_part(part.at(INT8))
    assert again.cache_key == q.cache_key
    # deterministic calibration: the same graph, weights and quantization (TensorFlow's generated names aside)
    first, second = q.path.read_bytes(), again.path.read_bytes()
    assert tflite_graph(first) == tflite_graph(second) and _quantization(first) == _quantization(second)
    keys = {
        cache_key(module, part.input_shape, "", INT8, r.identity())
        for r in (CalibrationRecipe(), CalibrationRecipe(count=8), CalibrationRecipe(seed=1))
    }
    assert len(keys) == 3 and q.cache_key in keys and f.cache_key not in keys


def _quantization(flatbuffer: bytes) -> list:
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    (sg,) = fbu.convert_bytearray_to_object(bytearray(flatbuffer)).subgraphs
    q = [t.quantization for t in sg.tensors]
    return [None if x is None else (np.asarray(x.scale).tolist(), np.asarray(x.zeroPoint).tolist()) for x in q]


def test_the_host_runner_runs_int8_graphs_on_xnnpack_alone(exporter):
    for p in items_for_space(tiny_space(), INT8):
        assert fully_delegated(load_interpreter(exporter.export_part(p).path))
    net = export_network(_arch(), exporter, INT8).path
    assert not fully_delegated(load_interpreter(net, use_xnnpack=False))
    out = subprocess.run(
        [sys.executable, "-m", "latency.runner", f"--graph={net}", "--num_runs=3", "--warmup_runs=1", "--min_secs=0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the model graph will be completely executed by the delegate" in out.stdout and "count=3 " in out.stdout
    feeds = random_inputs(load_interpreter(net))
    (x,) = feeds.values()
    assert x.dtype == np.int8 and x.min() < -100 and x.max() > 100  # the whole int8 range, not rounded noise


def test_the_op_chain_runs_int8_graphs_on_quantized_tensors(exporter):
    from latency.opprofile import OpChain

    path = export_network(_arch(), exporter, INT8).path
    interp = load_interpreter(path)
    feeds = random_inputs(interp)
    for index, value in feeds.items():
        interp.set_tensor(index, value)
    interp.invoke()
    want = interp.get_tensor(interp.get_output_details()[0]["index"])
    chain = OpChain(path)
    times, store = chain.run(feeds)
    assert len(times) == len(chain.op_names) and "PAD" not in chain.op_names
    np.testing.assert_array_equal(store[chain.graph_outputs[0]], want)


# XNNPACK's quantized operators as benchmark_model names them on a phone (per-channel int8 convolutions)
_XNN_INT8 = {
    "CONV_2D": "Convolution (NHWC, QC8) IGEMM",
    "DEPTHWISE_CONV_2D": "Convolution (NHWC, QC8) DWConv",
    "ADD": "Add (ND, QS8)",
    "MEAN": "Mean (ND, QS8)",
    "FULLY_CONNECTED": "Fully Connected (NC, QS8) GEMM",
    "PAD": "Constant Pad (ND, X8)",
}


def test_a_phones_int8_op_profile_maps_onto_layers(exporter):
    arch = _arch()
    seqs = [(p.label, tflite_ops(exporter.export_part(p.at(INT8)).path) if p.key else []) for p in arch.parts()]
    flat = [op for _, ops in seqs for op in ops]
    kept = [op for op in flat if op != "PAD"]  # XNNPACK folds each explicit PAD into its convolution
    rows = [OpTiming(_XNN_INT8[op], f"n{i}", 0.0, 0.0, 0.1 * (i + 1), 0.0, 1) for i, op in enumerate(kept)]
    mapped = map_op_profile(rows, seqs)
    assert [m["layer"] for m in mapped] == [p.label for p in arch.parts()]
    assert [len(m["profiled"]) for m in mapped] == [len([o for o in ops if o != "PAD"]) for _, ops in seqs]
    assert sum(m["ms"] for m in mapped) == pytest.approx(sum(r.avg_ms for r in rows))


def test_an_int8_table_holds_int8_entries_only(int8_lut, tmp_path, exporter):
    lut = Lut.load(int8_lut)
    assert lut.data["settings"]["precision"] == "int8" and len(lut.entries) == 9 and not lut.pending
    for key, entry in lut.entries.items():
        part = Part.from_spec(entry["spec"])
        assert key.endswith(":int8") and part.key == key and part.precision == INT8
        assert entry["export_key"] == exporter.export_part(part).cache_key
    assert lut.bench_settings()[0] == FAST_INT8.settings
    sp = tiny_space()
    pred = LatencyPredictor(lut, sp)
    assert pred.precision == INT8 and LatencyPredictor(lut, sp, precision=INT8).precision == INT8
    arch = _arch()
    want = sum(lut.latency_ms(p.at(INT8).key) for p in arch.parts() if p.key)
    assert pred.predict_arch(arch) == pytest.approx(want) and pred.for_space(sp).precision == INT8
    with pytest.raises(HnasError, match="holds int8 entries, not float32"):
        LatencyPredictor(lut, sp, precision="float32")
    float_opts = BuildOptions(**{**FAST_INT8.__dict__, "precision": "float32"})
    copy = tmp_path / "copy.json"
    shutil.copy(int8_lut, copy)
    with pytest.raises(HnasError, match="never mixes precisions.*--precision int8"):
        build(CountingDevice(), items_for_space(sp), copy, float_opts, exporter)
    with pytest.raises(HnasError, match="another precision"):
        build(CountingDevice(), items_for_space(sp), copy, FAST_INT8, exporter)
    float_lut = tmp_path / "float.json"
    build(CountingDevice(), items_for_space(sp)[:1], float_lut, float_opts, exporter)
    with pytest.raises(HnasError, match=f"pass --out {tmp_path / 'float-int8.json'}"):
        build(CountingDevice(), items_for_space(sp, INT8), float_lut, FAST_INT8, exporter)
    assert "precision" not in Lut.load(float_lut).data["settings"]


@pytest.mark.slow
def test_int8_commands_on_the_tiny_space(int8_lut, tiny_lut, space_file, tmp_path, exporter):
    shown = run_cli("lut", "show", str(int8_lut), "--space", str(space_file))
    assert shown.returncode == 0, shown.stderr
    assert "precision: int8" in shown.stdout and "coverage of tiny: 9/9 entries" in shown.stdout
    diff = json.loads(run_cli("lut", "diff", str(tiny_lut), str(int8_lut), "--json").stdout)
    s = diff["summary"]
    assert (s["a_precision"], s["b_precision"], s["common"], s["only_a"], s["only_b"]) == ("float32", "int8", 9, 0, 0)
    for row in diff["rows"]:
        assert row["b_key"] == f"{row['a_key']}:int8" and row["ratio"] == pytest.approx(row["b_ms"] / row["a_ms"])
    assert sorted(g["op"] for g in diff["by_op"]) == sorted(
        ["Stem", "Conv1x1", "PoolFC", "IBConv_K3_E1", "IBConv_K5_E1", "IBConv_K3_E3", "IBConv_K5_E6"]
    )
    assert [g["median_ratio"] for g in diff["by_op"]] == sorted(g["median_ratio"] for g in diff["by_op"])
    table = run_cli("lut", "diff", str(tiny_lut), str(int8_lut))
    assert "int8 / float32 per op" in table.stdout and "int8 gains most over float32 on" in table.stdout
    arch = str(_arch())
    verify = run_cli(
        "verify", "--arch", arch, "--space", str(space_file), "--lut", str(int8_lut), "--op-profile", "--json"
    )
    assert verify.returncode == 0, verify.stderr
    r = json.loads(verify.stdout)
    assert r["precision"] == "int8" and r["measured_ms"] > 0
    for row in r["op_profile"]:
        assert row["profiled"] == [o for o in row["ops"] if o != "PAD"] and (row["ms"] > 0) == bool(row["ops"])
    lut_copy = tmp_path / "v-int8.json"
    shutil.copy(int8_lut, lut_copy)
    args = ["--lut", str(lut_copy), "--space", str(space_file), "-n", "5", "--fit", "3", "--out", str(tmp_path / "v")]
    val = run_cli("lut", "validate", *args, "--precision", "int8", "--spread", "100")  # microsecond nets: noisy
    assert val.returncode == 0, val.stderr
    assert json.loads((tmp_path / "v" / "validate.json").read_text())["precision"] == "int8"
    refresh = run_cli("lut", "refresh", "--lut", str(lut_copy), "--space", str(space_file))
    assert refresh.returncode == 0 and "measured 0 entries" in refresh.stdout, refresh.stderr
    prof = run_cli(
        "profile", "--op", "IBConv_K5_E6", "--in", "8x8x16", "--out-ch", "16", "--precision", "int8", "--runs", "3",
        "--repeats", "1", "--json",
    )  # fmt: skip
    assert prof.returncode == 0 and json.loads(prof.stdout)["model"] == "IBConv_K5_E6:8x8x16->8x8x16:s1:int8"
    int8_model = export_network(_arch(), exporter, INT8).path
    refusals = [
        (("lut", "show", str(int8_lut), "--precision", "float32"), "pass --precision int8"),
        (("lut", "diff", str(tiny_lut), str(int8_lut), "--precision", "int8"), "holds float32 entries"),
        (("verify", "--arch", arch, "--space", str(space_file), "--lut", str(tiny_lut), "--precision", "int8"), ""),
        (
            ("lut", "build", "--space", str(space_file), "--out", str(tiny_lut), "--core", "0", "--precision", "int8"),
            "-int8.json",
        ),
        (("lut", "build", "--space", str(space_file), "--precision", "fp16"), "--precision fp16: must be one of"),
        (("profile", str(int8_model), "--precision", "float32"), "is int8, not float32"),
        (("search", "--out", str(tmp_path / "s"), "--lut", str(int8_lut), "--precision", "float32"), "not float32"),
    ]
    for cli_args, text in refusals:
        out = run_cli(*cli_args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and text in lines[0], (cli_args, out.stderr)


@pytest.mark.slow
def test_int8_demo_searches_on_the_int8_table_and_reports_the_quantization_drop(space_file, tmp_path):
    lut, run = tmp_path / "host-int8.json", tmp_path / "demo"
    args = ["--out", str(run), "--space", str(space_file), "--lut", str(lut), "--epochs", "1,1,1"]
    out = run_cli("demo", *args, "--population", "6", "--generations", "2", "--precision", "int8")
    assert out.returncode == 0, out.stderr
    assert Lut.load(lut).data["settings"]["precision"] == "int8" and "int8 deployment accuracy" in out.stdout
    results = json.loads((run / "results.json").read_text())
    verify = json.loads((run / "verify.json").read_text())
    assert verify["precision"] == "int8" and verify["arch"] == results["best"][0]["arch"]
    acc = verify["int8_accuracy"]
    assert acc["split"] == "test" and acc["images"] == len(digits(16).test) > 300
    assert (acc["resolution"], acc["width"]) == (DEMO_PROXY.resolution, DEMO_PROXY.width)
    assert acc["calibration"]["distribution"] == "images" and acc["calibration"]["count"] == 256
    for key in ("torch_top1", "float32_top1", "int8_top1", "agreement"):
        assert 0 <= acc[key] <= 1
    # the TFLite float32 model computes what the torch network computes
    assert abs(acc["torch_top1"] - acc["float32_top1"]) <= 1 / acc["images"]
    assert acc["drop"] == pytest.approx(acc["float32_top1"] - acc["int8_top1"])
    # BatchNorm recalibrated exactly as one-shot evaluation does: the search's own accuracy on the val split
    assert acc["torch_val_top1"] == pytest.approx(results["best"][0]["accuracy"], abs=1e-12)
    page = (run / "report" / "index.html").read_text()
    assert "float32 -&gt; int8" in page or "float32 -> int8" in page
    again = run_cli("verify", str(run), "--precision", "int8", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["int8_accuracy"] == acc  # the same weights, calibration and models


def test_a_phone_measures_int8_models_with_the_same_flags(phone_env, tmp_path, exporter):
    phone, _, binary = phone_env
    path = tmp_path / "pixel3-int8.json"
    report = build(adb_device(phone, binary), items_for_space(tiny_space(), INT8), path, FAST_INT8, exporter)
    lut = Lut.load(path)
    assert len(report.measured) == len(lut.entries) == 9 and all(k.endswith(":int8") for k in lut.entries)
    assert lut.data["settings"]["precision"] == "int8" and lut.device["model"] == "Pixel 3"
    pushed = {p.name for p in phone.host_path("/data/local/tmp/hnas/models").iterdir()}
    assert {exporter.export_part(p).path.name for p in items_for_space(tiny_space(), INT8)} <= pushed
