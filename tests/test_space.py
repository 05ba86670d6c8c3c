import json

import pytest

from hnas.core.errors import HnasError
from hnas.spec.ops import IDENTITY_OP, OpSpec, parse_op
from hnas.spec.parts import block
from hnas.spec.space import PRESETS, SearchSpace, basic, large, load_space, proxyless


def test_paper_sizes_are_exact():
    assert basic().size() == 3 * 6**6 * 7**15
    assert large().size() == 3 * 18**6 * 19**15
    assert f"{basic().size():.2e}" == "6.65e+17"  # the paper truncates 6.645e17 to 6.64e17
    assert f"{large().size():.2e}" == "1.55e+27"


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_have_22_layers_and_table1_shapes(name):
    sp = load_space(name)
    assert sp.num_layers == 22
    firsts = [(L.shape.in_size, L.shape.out_size, L.shape.stride) for L in sp.layers if L.position == 1]
    assert firsts == [(112, 112, 1), (112, 56, 2), (56, 28, 2), (28, 14, 2), (14, 14, 1), (14, 7, 2), (7, 7, 1)]
    assert [s.key() for s in sp.slots if not s.searchable][1:] == [
        "Conv1x1:7x7x320->7x7x1280:s1",
        "PoolFC:7x7x1280->1000",
    ]


def test_widths_per_preset():
    def widths(sp):
        return [sp.skeleton.stem_channels] + [st.out_channels for st in sp.skeleton.stages]

    assert widths(basic()) == [32, 16, 32, 40, 80, 96, 192, 320]
    assert widths(large()) == [16, 16, 24, 40, 80, 96, 192, 320]
    assert widths(proxyless()) == [32, 16, 24, 40, 80, 96, 192, 320]


@pytest.mark.parametrize("name", list(PRESETS))
def test_paper_rules(name):
    sp = load_space(name)
    assert [op.name for op in sp.layers[0].candidates] == ["IBConv_K3_E1", "IBConv_K5_E1", "IBConv_K7_E1"]
    for layer in sp.layers:
        if layer.position == 1:
            assert IDENTITY_OP not in layer.candidates, layer.label
        else:
            assert IDENTITY_OP in layer.candidates, layer.label
    n_ops = 7 if name != "large" else 19
    assert {len(L.candidates) for L in sp.layers[1:] if L.position > 1} == {n_ops}


def test_op_names_and_keys():
    assert parse_op("IBConv_K5_E6") == OpSpec(5, 6) == parse_op("k5e6")
    assert parse_op("Identity").is_identity and parse_op("ID").is_identity
    layer = basic().layers[6]
    assert layer.key(OpSpec(5, 6)) == "IBConv_K5_E6:28x28x40->28x28x40:s1"
    assert block(OpSpec(3, 1), basic().layers[0].shape).key == "IBConv_K3_E1:112x112x32->112x112x16:s1"
    for bad in ("IBConv_K4_E6", "Conv3x3", "K3E0"):
        with pytest.raises(HnasError):
            parse_op(bad)


def test_resolution_and_classes_are_parameters():
    sp = basic().with_skeleton(resolution=160, num_classes=10)
    assert sp.layers[0].shape.in_size == 80
    assert sp.slots[-1].key() == "PoolFC:5x5x1280->10"
    assert sp.size() == basic().size()


def test_space_json_round_trip(tmp_path):
    for sp in (basic(), large()):
        again = SearchSpace.from_dict(json.loads(json.dumps(sp.to_dict())))
        assert again == sp and again.layers == sp.layers
    pruned = basic().with_candidates([c[:1] if i % 2 else c for i, c in enumerate(basic().candidates)], "pruned")
    path = tmp_path / "pruned.json"
    pruned.save(path)
    assert load_space(path) == pruned
    assert pruned.size() < basic().size()


def test_user_space_from_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\n"
        "skeleton:\n"
        "  resolution: 64\n  num_classes: 10\n  stem_channels: 8\n  head_channels: 64\n"
        "  stages:\n"
        "    - {out_channels: 8, repeats: 1, stride: 1, expand: 1}\n"
        "    - {out_channels: 16, repeats: 3, stride: 2}\n"
        "ops: [IBConv_K3_E3, IBConv_K5_E6, Identity]\n"
    )
    sp = load_space(str(path))
    assert sp.num_layers == 4 and sp.size() == 2 * 2 * 3 * 3
    assert [op.name for op in sp.layers[0].candidates] == ["IBConv_K3_E1", "IBConv_K5_E1"]


def test_user_space_on_a_preset_base(tmp_path):
    path = tmp_path / "small.json"
    path.write_text(json.dumps({"base": "large", "name": "large96", "skeleton": {"resolution": 96}}))
    sp = load_space(path)
    assert sp.skeleton.resolution == 96 and sp.size() == large().size()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"base": "basic", "colour": 1}, "unknown keys"),
        ({"base": "nope"}, "base 'nope' is not a preset; use one of basic, large, proxyless"),
        ({"base": "basic", "candidates": [["IBConv_K3_E1"]]}, "1 candidate lists given for 22 layers"),
        ({"base": "basic", "candidates": [["Identity"]] * 22}, "Identity"),
        ({"ops": ["IBConv_K3_E3"]}, "give a 'skeleton'"),
    ],
)
def test_bad_space_files_name_the_problem(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(HnasError, match=message):
        load_space(path)


def test_fixed_expansion_rule_is_enforced():
    cands = list(basic().candidates)
    cands[0] = (OpSpec(3, 6),)
    with pytest.raises(HnasError, match="fixed expansion E1"):
        basic().with_candidates(cands)


def test_unknown_space_and_missing_file():
    with pytest.raises(HnasError, match="use one of basic, large, proxyless"):
        load_space("huge")
    with pytest.raises(HnasError, match="does not exist"):
        load_space("missing.yaml")
