"""`hnas export` and `hnas verify --model`: a trained network of the tiny space shipped as TFLite files with a card.

The commands run in this process through the CLI's own entry point and error boundary (`cli`): the test process
has imported torch and TensorFlow once, which a fresh interpreter per command would pay again.
"""

import contextlib
import hashlib
import io
import json
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hnas.data import digits
from hnas.spec.arch import Architecture, parse_arch
from hnas.spec.network import Network
from hnas.supernet import proxy_space
from hnas.train import load_checkpoint
from latency.export import tflite_ops
from latency.lut import Lut
from latency.predict import LatencyPredictor
from latency.quantize import TfliteModel, op_tensor_types
from tests.harness import INT8_KERNELS
from tests.tiny import tiny_space

ARCH = "K3E1|K5E6-ID"
RES = 32  # the tiny space's own resolution at width 1: the LUT predicts the trained network itself


def cli(*args: str) -> SimpleNamespace:
    """`hnas ARGS` through `hnas.cli.main` (the entry point and its error boundary) in this process: returncode,
    stdout and stderr."""
    from hnas.cli import main

    out, err, saved = io.StringIO(), io.StringIO(), sys.argv
    sys.argv = ["hnas", *args]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = saved
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished `hnas train` folder of the tiny space (1 epoch on digits) and the space file."""
    root = tmp_path_factory.mktemp("ship")
    space_file = root / "tiny.json"
    tiny_space().save(space_file)
    args = ["--space", str(space_file), "--data", "digits", "--epochs", "1", "--resolution", str(RES)]
    out = cli("train", ARCH, *args, "--out", str(root / "sa"))
    assert out.returncode == 0, out.stderr
    return root / "sa"


@pytest.fixture(scope="module")
def shipped(trained, tiny_lut):  # noqa: F811
    """`hnas export` of that folder, measured on this CPU with the tiny LUT's settings, --max-drop 0."""
    out = cli("export", str(trained), "--out", str(trained / "ship"), "--lut", str(tiny_lut), "--max-drop", "0")
    return out, trained / "ship", json.loads((trained / "ship" / "card.json").read_text())


def _network(folder) -> torch.nn.Module:
    """The trained network, rebuilt here from the checkpoint (not by the code under test)."""
    space = proxy_space(tiny_space(), RES, 1.0, 10)
    net = Network(Architecture(space, parse_arch(ARCH, tiny_space()).ops))
    net.load_state_dict(load_checkpoint(folder / "checkpoint.pt")["model"])
    return net.eval()


def _test_images():
    x, y = digits(RES).test.tensors
    return x.permute(0, 2, 3, 1).numpy(), y.numpy()


def test_export_writes_both_files_and_a_card_that_matches_them(trained, shipped):
    out, ship, card = shipped
    assert sorted(p.name for p in ship.iterdir()) == sorted(
        ["model-float32.tflite", "model-int8.tflite", "model.onnx", "card.json", "card.md", "space.json"]
    )
    assert not [p for p in trained.iterdir() if p.name.startswith(".ship")]  # no temporary folder left
    md = (ship / "card.md").read_text()
    for name in ("model-float32.tflite", "model-int8.tflite", "model.onnx"):
        data = (ship / name).read_bytes()
        assert card["files"][name] == {**card["files"][name], "sha256": hashlib.sha256(data).hexdigest()}
        assert card["files"][name]["bytes"] == len(data) and card["files"][name]["sha256"] in md
    for name in ("model-float32.tflite", "model-int8.tflite"):
        assert card["files"][name]["op_sequence"] == tflite_ops(ship / name)
    assert (card["arch"], card["space"], card["data"]["spec"]) == (ARCH, "tiny", "digits")
    # --max-drop 0: any int8 drop fails the command, after the card is written
    drop = card["accuracy"]["int8_drop_points"]
    assert out.returncode == (1 if drop > 0 else 0), out.stderr
    if drop > 0:
        assert "more than --max-drop 0" in out.stderr and len(out.stderr.strip().splitlines()) == 1
    # the card's commands rebuild it: the training's (on the space file the export wrote) and the export's own
    train_cmd, export_cmd = card["commands"]
    assert train_cmd.startswith(f"hnas train '{ARCH}' --space space.json --data digits --epochs 1 ")
    assert export_cmd.startswith(f"hnas export {trained} --out {trained / 'ship'}")
    assert json.loads((ship / "space.json").read_text()) == tiny_space().to_dict()


def test_the_float32_file_and_the_onnx_file_compute_the_torch_networks_logits(trained, shipped):
    _, ship, card = shipped
    net = _network(trained)
    x, _ = _test_images()
    with torch.no_grad():
        want = net(torch.from_numpy(x[:64]).permute(0, 3, 1, 2)).numpy()
    got = TfliteModel(ship / "model-float32.tflite")(x[:64])
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    from onnx.reference import ReferenceEvaluator

    onnx_out = ReferenceEvaluator(str(ship / "model.onnx")).run(None, {"input": x[:2]})[0]
    np.testing.assert_allclose(onnx_out, want[:2], atol=1e-4, rtol=1e-4)
    assert card["checks"]["model-float32.tflite"]["max_abs_diff"] < 1e-4
    assert card["checks"]["model.onnx"]["max_abs_diff"] < 1e-4
    # the training's own test top-1 is the card's PyTorch figure; float32 TFLite is within a point of it
    result = json.loads((trained / "result.json").read_text())
    a = card["accuracy"]
    assert a["torch_top1"] == pytest.approx(result["test_top1"], abs=1e-12)
    assert abs(a["float32_top1"] - a["torch_top1"]) <= 0.01


def test_the_int8_file_holds_only_int8_kernels_and_its_top1_is_the_cards(shipped):
    _, ship, card = shipped
    ops = op_tensor_types(ship / "model-int8.tflite")
    assert {op for op, _, _ in ops} <= INT8_KERNELS
    for op, ins, outs in ops:
        assert ins[0] == "int8" and outs == ["int8"], (op, ins, outs)
        assert set(ins[1:]) <= {"int8", "int32"}, (op, ins)  # int8 weights, int32 biases
    x, y = _test_images()
    int8 = TfliteModel(ship / "model-int8.tflite")
    assert int8.interp.get_input_details()[0]["dtype"] == np.int8
    top1 = float(np.mean(int8(x).argmax(1) == y))
    a = card["accuracy"]
    assert a["images"] == len(y) and a["int8_top1"] == pytest.approx(top1, abs=1e-12)
    assert a["int8_drop_points"] == pytest.approx(100 * (a["float32_top1"] - a["int8_top1"]))
    q = card["input"]["int8"]
    scale, zero = int8.interp.get_input_details()[0]["quantization"]
    assert (q["io"], q["scale"], q["zero_point"]) == ("int8", pytest.approx(scale), zero)


def test_the_card_predicts_with_the_lut_and_measures_each_exact_file(shipped, tiny_lut):  # noqa: F811
    _, _, card = shipped
    table = Lut.load(tiny_lut)
    settings, repeats = table.bench_settings()
    f32, i8 = card["latency"]["files"]["model-float32.tflite"], card["latency"]["files"]["model-int8.tflite"]
    want = LatencyPredictor(table, tiny_space()).predict_arch(parse_arch(ARCH, tiny_space()))
    assert f32["predicted_ms"] == pytest.approx(want) and f32["same_device"] is True
    assert i8["predicted_ms"] is None and "float32 entries" in i8["why_not"]  # the tiny LUT is a float32 table
    for row in (f32, i8):
        assert row["measured_ms"] > 0 and len(row["repeat_medians_ms"]) >= repeats
        assert row["settings"] == settings.to_dict() and row["repeats"] == repeats
    assert card["latency"]["device"]["core"] == table.device["core"]


def test_float_io_quantizes_once_at_each_end(trained, exporter, tmp_path):
    from hnas.workflows.ship import export_trained, open_trained

    card = export_trained(open_trained(trained), tmp_path / "f", io="float", exporter=exporter, log=lambda _: None)
    path = tmp_path / "f" / "model-int8.tflite"
    ops = tflite_ops(path)
    assert ops[0] == "QUANTIZE" and ops[-1] == "DEQUANTIZE"
    assert ops.count("QUANTIZE") == 1 and ops.count("DEQUANTIZE") == 1
    model = TfliteModel(path)
    assert model.interp.get_input_details()[0]["dtype"] == np.float32
    assert model.interp.get_output_details()[0]["dtype"] == np.float32
    assert card["input"]["int8"]["io"] == "float" and card["latency"]["device"] is None
    x, y = _test_images()
    assert card["accuracy"]["int8_top1"] == pytest.approx(float(np.mean(model(x).argmax(1) == y)), abs=1e-12)
    assert card["files"]["model-int8.tflite"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_verify_model_measures_a_shipped_file(shipped, tiny_lut):  # noqa: F811
    _, ship, card = shipped
    out = cli("verify", "--model", str(ship / "model-int8.tflite"), "--lut", str(tiny_lut), "--json")
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["sha256"] == card["files"]["model-int8.tflite"]["sha256"] and r["precision"] == "int8"
    assert r["measured_ms"] > 0 and len(r["repeat_medians_ms"]) >= Lut.load(tiny_lut).bench_settings()[1]
    assert r["device"]["core"] == Lut.load(tiny_lut).device["core"]


def test_bad_input_is_one_line_and_writes_nothing(trained, tmp_path):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(trained, unfinished, ignore=shutil.ignore_patterns("result.json", "ship"))
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    out = tmp_path / "out"
    cases = [
        ((str(tmp_path / "missing"), "--out", str(out)), "does not exist"),
        ((str(unfinished), "--out", str(out), "--no-measure"), "unfinished training"),
        ((str(trained), "--out", str(out), "--space", "basic", "--no-measure"), "not of basic"),
        ((str(trained), "--out", str(busy)), "holds other files (notes.txt)"),
        ((str(trained), "--out", str(out), "--device", "127.0.0.1:1"), "cannot be reached"),
        ((str(trained), "--out", str(out), "--io", "uint8"), "--io uint8"),
    ]
    for args, text in cases:
        res = cli("export", *args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2 and len(lines) == 1 and text in lines[0], (args, res.stderr)
        assert not out.exists() and [p.name for p in busy.iterdir()] == ["notes.txt"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["busy", "unfinished"]
    res = cli("verify", "--model", str(busy / "notes.txt"))
    assert res.returncode == 2 and "is not a .tflite file" in res.stderr


def test_the_demo_ships_its_network_and_a_search_run_exports(trained, tiny_lut, tmp_path):  # noqa: F811
    lut = tmp_path / "host.json"
    shutil.copy(tiny_lut, lut)  # this CPU's table of the tiny space, complete: the demo measures nothing more
    run = tmp_path / "demo"
    args = ["--out", str(run), "--space", str(trained.parent / "tiny.json"), "--lut", str(lut), "--epochs", "1,1,1"]
    out = cli("demo", *args, "--population", "6", "--generations", "2")
    assert out.returncode == 0, out.stderr
    best = json.loads((run / "results.json").read_text())["best"][0]["arch"]
    card = json.loads((run / "ship" / "card.json").read_text())
    assert card["arch"] == best and card["source"]["kind"] == "train" and "model card:" in out.stdout
    assert card["source"]["identity"]["train"]["epochs"] == 1  # the first stage's epochs
    page = (run / "report" / "index.html").read_text()
    assert "href='../ship/card.md'" in page and card["files"]["model-int8.tflite"]["sha256"][:16] in page
    # a search run exports its best architecture's subnet (BatchNorm recomputed as one-shot evaluation does)
    ship = tmp_path / "from-search"
    out = cli("export", str(run), "--out", str(ship), "--no-measure", "--max-drop", "100", "--json")
    assert out.returncode == 0, out.stderr
    card = json.loads((ship / "card.json").read_text())
    assert card == json.loads(out.stdout) and card["arch"] == best and card["source"]["kind"] == "search"
    assert (
        card["latency"]["device"] is None
        and abs(card["accuracy"]["float32_top1"] - card["accuracy"]["torch_top1"]) <= 0.01
    )
