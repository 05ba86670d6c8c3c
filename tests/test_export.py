import numpy as np
import pytest
import torch

from hnas.spec.arch import sample
from hnas.spec.modules import canonical
from hnas.spec.network import build_network
from hnas.spec.parts import Part
from latency.export import NHWC, cache_key, export_network, tflite_io, tflite_ops
from latency.items import items_for_space
from latency.runtime import load_interpreter
from tests.harness import tflite_graph
from tests.tiny import tiny_space


def _run_tflite(path, x_nhwc: np.ndarray) -> np.ndarray:
    interp = load_interpreter(path)
    interp.set_tensor(interp.get_input_details()[0]["index"], x_nhwc)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def test_items_cover_the_space_once():
    items = items_for_space(tiny_space())
    keys = [it.key for it in items]
    assert len(keys) == len(set(keys)) == 3 + 2 + 2 + 2
    # execution order: the stem, each layer's ops, the final 1x1 conv, pool + fc
    assert keys[0] == "Stem_K3:32x32x3->16x16x8:s2"
    assert keys[-2:] == ["Conv1x1:8x8x16->8x8x32:s1", "PoolFC:8x8x32->10"]
    assert "IBConv_K5_E6:16x16x8->8x8x16:s2" in keys and not any(k.startswith("Identity") for k in keys)
    for it in items:
        assert Part.from_spec(it.to_spec()) == it


def test_exported_ops_are_nhwc_without_transpose_and_match_torch(exporter):
    for item in items_for_space(tiny_space()):
        module = canonical(item.build).eval()
        ex = exporter.export(module, item.input_shape)
        ops = tflite_ops(ex.path)
        assert "TRANSPOSE" not in ops, (item.key, ops)
        c, h, w = item.input_shape
        inp, out = tflite_io(ex.path)
        assert inp == [1, h, w, c]
        x = np.random.default_rng(0).standard_normal((1, h, w, c)).astype(np.float32)
        with torch.no_grad():
            want = NHWC(module)(torch.from_numpy(x)).numpy()
        assert list(want.shape) == out
        np.testing.assert_allclose(_run_tflite(ex.path, x), want, rtol=1e-4, atol=1e-4)
        if item.op is not None and item.op.expand > 1:
            assert ops.count("CONV_2D") == 2 and "DEPTHWISE_CONV_2D" in ops


def test_cache_is_content_addressed(exporter):
    item = items_for_space(tiny_space())[4]
    first = exporter.export_part(item)
    again = exporter.export_part(item)
    assert again.cached and again.path == first.path and again.sha256 == first.sha256
    for part in (item, items_for_space(tiny_space(), "int8")[4]):  # the key known without converting
        assert exporter.part_key(part) == exporter.export_part(part).cache_key
    other = items_for_space(tiny_space())[5]
    assert cache_key(canonical(other.build), other.input_shape) != first.cache_key


def test_a_parts_model_has_the_same_bytes_whatever_the_process_converted_before(tmp_path):
    """The LUT records each model's sha256: a part converts to the same bytes first in a process or after others
    (Keras names layers from process-wide counters; the names go into the .tflite)."""
    from latency.export import Exporter

    first, second = items_for_space(tiny_space())[4:6]
    after_another = Exporter(tmp_path / "a")
    after_another.export_part(first)
    alone = Exporter(tmp_path / "b")
    assert after_another.export_part(second).sha256 == alone.export_part(second).sha256


def test_whole_network_exports_without_transpose(exporter):
    arch = sample(tiny_space(), 1, np.random.default_rng(3))[0]
    ex = export_network(arch, exporter)
    ops = tflite_ops(ex.path)
    assert "TRANSPOSE" not in ops and ops[-1] == "FULLY_CONNECTED"
    assert tflite_io(ex.path) == ([1, 32, 32, 3], [1, 10])
    torch.manual_seed(0)
    net = build_network(arch).eval()
    x = np.random.default_rng(1).standard_normal((1, 32, 32, 3)).astype(np.float32)
    with torch.no_grad():
        want = NHWC(net)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_run_tflite(ex.path, x), want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("kind", ["ops", "net"])
def test_conversion_works_offline_for_three_channel_inputs(exporter, tmp_path, kind, monkeypatch):
    # the stem (and a network) has a 4-D 3-channel input: onnx2tf would download sample images;
    # any attempt to reach the network fails this test
    import socket

    def no_network(*a, **k):
        raise AssertionError("conversion tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    from latency.export import Exporter

    fresh = Exporter(tmp_path / "cache")
    if kind == "ops":
        stem = items_for_space(tiny_space())[0]
        ex = fresh.export_part(stem)
    else:
        ex = export_network(sample(tiny_space(), 1, np.random.default_rng(0))[0], fresh)
    assert not ex.cached and ex.path.is_file()


def test_conversion_is_onnx2tfs_own_float32_graph(exporter, tmp_path, monkeypatch):
    """The exporter skips onnx2tf's SavedModel and float16 outputs; the float32 graph must be the same."""
    import onnx2tf

    from latency.export import _quiet

    calibration = "calibration_image_sample_data_20x128x128x3_float32.npy"  # what onnx2tf reads from the cwd

    item = next(it for it in items_for_space(tiny_space()) if it.key.startswith("IBConv_K5_E6"))
    wrapper = NHWC(canonical(item.build)).eval()
    c, h, w = item.input_shape
    onnx_path = tmp_path / "model.onnx"
    with torch.no_grad(), _quiet():
        torch.onnx.export(
            wrapper, (torch.randn(1, h, w, c),), str(onnx_path), input_names=["input"], opset_version=13, dynamo=False
        )
    np.save(tmp_path / calibration, np.zeros((20, 128, 128, 3), dtype=np.float32))
    monkeypatch.chdir(tmp_path)
    with _quiet():
        onnx2tf.convert(
            input_onnx_file_path=str(onnx_path),
            output_folder_path=str(tmp_path / "full"),
            non_verbose=True,
            keep_nwc_or_nhwc_or_ndhwc_input_names=["input"],
            not_use_onnxsim=True,
        )
    theirs = (tmp_path / "full" / "model_float32.tflite").read_bytes()
    (tmp_path / "ours").mkdir()
    ours = exporter._convert(onnx_path, tmp_path / "ours").read_bytes()  # noqa: SLF001 - the conversion step
    assert tflite_graph(ours) == tflite_graph(theirs)
