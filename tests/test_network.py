import numpy as np
import pytest
import torch

from hnas.spec.arch import parse_arch, sample
from hnas.spec.cost import arch_cost
from hnas.spec.modules import IBConv, Identity
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
