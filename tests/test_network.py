import numpy as np
import pytest
import torch

from hnas.spec.arch import parse_arch, sample
from hnas.spec.cost import arch_cost
from hnas.spec.modules import IBConv, Identity, SameConv2d
from hnas.spec.network import build_network, count_module
from hnas.spec.ops import LayerShape, OpSpec
from hnas.spec.parts import block
from hnas.spec.space import basic, large, proxyless


def test_ibconv_structure():
    e1 = block(OpSpec(3, 1), LayerShape(16, 32, 16, 1)).build()
    assert isinstance(e1, IBConv) and e1.expand is None and not e1.residual
    e6 = block(OpSpec(5, 6), LayerShape(28, 40, 40, 1)).build()
    assert e6.residual and e6.expand[0].out_channels == 240
    assert e6.depthwise[0].kernel_size == (5, 5) and e6.depthwise[0].groups == 240
    assert isinstance(e6.expand[2], torch.nn.ReLU6) and len(e6.project) == 2  # linear bottleneck
    s2 = block(OpSpec(7, 3), LayerShape(28, 40, 80, 2)).build()
    assert not s2.residual
    assert s2(torch.zeros(2, 40, 28, 28)).shape == (2, 80, 14, 14)
    assert isinstance(block(OpSpec(), LayerShape(14, 96, 96, 1)).build(), Identity)


def test_residual_is_added():
    module = block(OpSpec(3, 3), LayerShape(8, 4, 4, 1)).build().eval()
    for p in module.project.parameters():
        torch.nn.init.zeros_(p)
    x = torch.randn(1, 4, 8, 8)
    assert torch.allclose(module(x), x)


@pytest.mark.parametrize("make", [basic, large, proxyless])
def test_cost_from_spec_matches_counted_module(make):
    sp = make()
    for arch in sample(sp, 3, np.random.default_rng(7)):
        net = build_network(arch)
        res = sp.skeleton.resolution
        assert count_module(net, (3, res, res)) == arch_cost(arch)


def test_network_runs_at_proxy_resolution():
    sp = basic().with_skeleton(resolution=32, num_classes=10)
    net = build_network(sample(sp, 1, np.random.default_rng(0))[0])
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_mobilenetv2_like_block_cost():
    # 1x1 expand 40->240 at 28x28, 5x5 depthwise, 1x1 project 240->40: the textbook count
    cost = block(OpSpec(5, 6), LayerShape(28, 40, 40, 1)).cost()
    assert cost.macs == 28 * 28 * (40 * 240 + 240 * 25 + 240 * 40)
    assert cost.params == 40 * 240 + 240 * 25 + 240 * 40 + 2 * (240 + 240 + 40)


def test_identity_layers_cost_nothing():
    sp = basic()
    deep = parse_arch("K3E1|K3E6-K3E6-K3E6-K3E6|" + "|".join(["K3E6-K3E6-K3E6-K3E6"] * 4) + "|K3E6", sp)
    shallow = parse_arch("K3E1|K3E6-ID-ID-ID|" + "|".join(["K3E6-ID-ID-ID"] * 4) + "|K3E6", sp)
    assert arch_cost(shallow).macs < arch_cost(deep).macs


@pytest.mark.parametrize("size", [1, 2, 3, 4])
@pytest.mark.parametrize(("kernel", "stride", "depthwise"), [(7, 1, True), (5, 2, True), (3, 1, False), (7, 2, False)])
def test_a_kernel_wider_than_its_input_skips_taps_meeting_only_padding(size, kernel, stride, depthwise, monkeypatch):
    """The same output and gradients as torch's full KxK convolution, from the taps that can meet the input."""
    ch = 6
    same = SameConv2d(ch, ch, kernel, stride, kernel // 2, groups=ch if depthwise else 1, bias=False)
    full = torch.nn.Conv2d(ch, ch, kernel, stride, kernel // 2, groups=ch if depthwise else 1, bias=False)
    full.load_state_dict(same.state_dict())
    assert repr(same) == repr(full)  # what a LUT's cache key reads
    x = torch.randn(3, ch, size, size, requires_grad=True)
    want = full(x)
    widths = []
    conv2d = torch.nn.functional.conv2d
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda x, w, *a: widths.append(w.shape[-1]) or conv2d(x, w, *a))
    got = same(x)
    monkeypatch.undo()
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    reach = min(kernel, 2 * size - 1)  # taps at most size - 1 away from the centre meet the input
    assert widths == [reach]  # one convolution, of the taps that can meet the input
    (gx, gw) = torch.autograd.grad(got.square().sum(), (x, same.weight))
    (fx, fw) = torch.autograd.grad(want.square().sum(), (x, full.weight))
    torch.testing.assert_close(gx, fx, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(gw, fw, rtol=1e-5, atol=1e-6)
    edge = (kernel - reach) // 2
    if edge:
        assert gw[..., :edge, :].abs().sum() == 0 and gw[..., :, -edge:].abs().sum() == 0


def test_an_exported_op_keeps_its_whole_kernel_on_a_one_pixel_input():
    """The phone runs (and a LUT measures) the KxK depthwise convolution even where training skips taps."""
    import io

    import onnx

    module = block(OpSpec(7, 6), LayerShape(1, 8, 8, 1)).build().eval()
    buffer = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(module, (torch.zeros(1, 8, 1, 1),), buffer, opset_version=13, dynamo=False)
    graph = onnx.load_from_string(buffer.getvalue()).graph
    kernels = [list(a.ints) for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "kernel_shape"]
    assert kernels == [[1, 1], [7, 7], [1, 1]]
