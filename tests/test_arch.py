import json

import numpy as np
import pytest

from hnas.core.errors import HnasError
from hnas.spec.arch import Architecture, from_dict, from_vector, parse_arch, sample
from hnas.spec.ops import OpSpec
from hnas.spec.space import basic, large


@pytest.mark.parametrize("make", [basic, large])
def test_string_vector_json_round_trip(make):
    sp = make()
    for arch in sample(sp, 50, np.random.default_rng(1)):
        assert parse_arch(str(arch), sp) == arch
        assert from_vector(sp, arch.to_vector()) == arch
        assert from_dict(json.loads(json.dumps(arch.to_dict())), sp) == arch
        assert str(arch).count("|") == 6


def test_string_form_is_readable_and_accepts_long_names():
    sp = basic()
    text = "K3E1|K3E6-ID-ID-ID|K5E3-K5E3-ID-ID|K7E6-K3E3-K3E3-K3E3|K5E6-ID-ID-ID|K7E6-K7E6-K7E6-K7E6|K3E6"
    arch = parse_arch(text, sp)
    assert str(arch) == text
    long_form = " ".join(op.name for op in arch.ops)
    assert parse_arch(long_form, sp) == arch
    assert [p.key for p in arch.parts() if p.op is not None][0] == "IBConv_K3_E1:112x112x32->112x112x16:s1"


def test_invalid_architecture_names_layer_and_allowed_ops():
    sp = basic()
    ops = list(sample(sp, 1, np.random.default_rng(0))[0].ops)
    ops[5] = OpSpec()  # Identity in the first layer of stage 3
    with pytest.raises(HnasError) as err:
        Architecture(sp, tuple(ops))
    msg = str(err.value)
    assert "layer 6 (stage 3, block 1)" in msg and "Identity is not allowed" in msg
    assert "allowed: IBConv_K3_E3, IBConv_K3_E6" in msg and "\n" not in msg
    with pytest.raises(HnasError, match="IBConv_K3_E2 is not allowed"):
        parse_arch("K3E1|" + "-".join(["K3E2"] * 4) + "|" + "|".join(["K3E3-K3E3-K3E3-K3E3"] * 4) + "|K3E3", sp)
    with pytest.raises(HnasError, match="3 layers but space 'basic' has 22"):
        parse_arch("K3E1 K3E3 K3E3", sp)
    with pytest.raises(HnasError, match="index 9 out of range"):
        from_vector(sp, [9] * 22)


def test_sampling_is_uniform_per_layer():
    sp = large()
    vecs = np.stack([a.to_vector() for a in sample(sp, 3000, np.random.default_rng(0))])
    counts = np.bincount(vecs[:, 2], minlength=19)
    assert counts.min() > 3000 / 19 * 0.6 and counts.max() < 3000 / 19 * 1.4
    assert vecs[:, 0].max() == 2
