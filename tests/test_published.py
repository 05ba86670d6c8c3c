import math

import pytest

from hnas.core.errors import HnasError
from hnas.spec.ops import IDENTITY_OP, LayerShape, OpSpec
from hnas.spec.parts import Part, block
from hnas.spec.space import BASIC_OPS, SearchSpace, Skeleton, StageSpec, basic, proxyless
from latency.published import (
    FORMATS,
    ImportResult,
    PublishedFigure,
    map_published,
    published_key,
    read_published_table,
)

PROXYLESS_FILE = "luts/proxylessnas_mobile_trim.yaml"
OFA_FILE = "luts/ofa_note10_224_lookup_table.yaml"


def our_keys(space: SearchSpace) -> set[str]:
    keys = {L.key(op) for L in space.layers for op in L.candidates if not op.is_identity}
    return keys | {s.key() for s in space.slots if not s.searchable}


def ofa_like_space() -> SearchSpace:
    """OFA MobileNetV3 at its largest width: stem 24, first block 24 (E1), then 32-48-96-136-192, head 1152."""
    stages = (
        StageSpec(24, 1, 1, expand=1),
        StageSpec(32, 4, 2),
        StageSpec(48, 4, 2),
        StageSpec(96, 4, 2),
        StageSpec(136, 4, 1),
        StageSpec(192, 4, 2),
    )
    skeleton = Skeleton(stages=stages, stem_channels=24, head_channels=1152)
    ops = [OpSpec(k, e) for k in (3, 5, 7) for e in (3, 4, 6)] + [IDENTITY_OP]
    return SearchSpace.from_ops("ofa-like", skeleton, ops)


@pytest.fixture
def proxyless_table(shared_reference):
    return read_published_table(shared_reference / PROXYLESS_FILE, "proxylessnas")


@pytest.fixture
def ofa_table(shared_reference):
    return read_published_table(shared_reference / OFA_FILE, "ofa")


# --- key rendering ------------------------------------------------------------------------------


def test_formats():
    assert FORMATS == ("proxylessnas", "ofa")


def test_proxylessnas_keys_from_our_spec():
    down = LayerShape(112, 16, 24, 2)
    assert published_key("proxylessnas", block(OpSpec(3, 3), down)) == (
        "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0"
    )
    same = LayerShape(28, 40, 40, 1)
    assert published_key("proxylessnas", block(OpSpec(5, 6), same)).endswith("-expand:6-kernel:5-stride:1-idskip:1")
    widen = LayerShape(14, 80, 96, 1)  # stride 1 but channels change: no identity skip
    assert published_key("proxylessnas", block(OpSpec(7, 3), widen)).endswith("-stride:1-idskip:0")
    parts = [s.part() for s in proxyless().slots if not s.searchable]
    assert [published_key("proxylessnas", p) for p in parts] == [
        "Conv-input:224x224x3-output:112x112x32",
        "Conv_1-input:7x7x320-output:7x7x1280",
        "Logits-input:7x7x1280-output:1000",
    ]


def test_ofa_keys_use_absolute_middle_channels_and_no_se_hs():
    shape = LayerShape(112, 24, 32, 2)
    assert published_key("ofa", block(OpSpec(3, 6), shape)) == (
        "expanded_conv-input:112x112x24-output:56x56x32-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0"
    )
    assert published_key("ofa", block(OpSpec(3, 1), LayerShape(112, 24, 24, 1))) == (
        "expanded_conv-input:112x112x24-output:112x112x24-expand:24-kernel:3-stride:1-idskip:1-se:0-hs:0"
    )
    stem = proxyless().slots[0].part()
    assert published_key("ofa", stem) == published_key("proxylessnas", stem)


def test_keys_that_no_format_can_express():
    with pytest.raises(HnasError, match="Identity has no ofa table key"):
        published_key("ofa", block(IDENTITY_OP, LayerShape(28, 40, 40, 1)))
    stem5 = Part("Stem", LayerShape(224, 3, 32, 2), kernel=5)
    with pytest.raises(HnasError, match="only 3x3 stems"):
        published_key("proxylessnas", stem5)
    with pytest.raises(HnasError, match="unknown published table format 'tflite'"):
        published_key("tflite", block(OpSpec(3, 3), LayerShape(28, 40, 40, 1)))


def test_a_5x5_stem_is_missing_not_mapped(proxyless_table):
    space = proxyless().with_skeleton(stem_kernel=5)
    result = map_published(proxyless_table, "proxylessnas", [space])
    assert result.missing == ["Stem_K5:224x224x3->112x112x32:s2"]
    assert result.unmapped == ["Conv-input:224x224x3-output:112x112x32"]


# --- the ProxylessNAS table ----------------------------------------------------------------------


def test_proxylessnas_table_covers_the_proxyless_space_exactly(proxyless_table):
    space = proxyless()
    result = map_published(proxyless_table, "proxylessnas", [space])
    assert isinstance(result, ImportResult)
    assert result.missing == []
    assert result.unmapped == []
    assert set(result.mapped) == our_keys(space)
    assert len(result.mapped) == len(proxyless_table) == 72  # 3 fixed parts + 3 first-block ops + 11 shapes x 6 ops
    for layer in space.layers:
        for op in layer.candidates:
            if not op.is_identity:
                assert result.mapped[layer.key(op)].source_key == published_key("proxylessnas", layer.part(op))
    assert result.mapped["Stem_K3:224x224x3->112x112x32:s2"].source_key == "Conv-input:224x224x3-output:112x112x32"
    assert result.mapped["Conv1x1:7x7x320->7x7x1280:s1"].source_key == "Conv_1-input:7x7x320-output:7x7x1280"
    assert result.mapped["PoolFC:7x7x1280->1000"].source_key == "Logits-input:7x7x1280-output:1000"


def test_proxylessnas_spot_check(proxyless_table):
    result = map_published(proxyless_table, "proxylessnas", [proxyless()])
    fig = result.mapped["IBConv_K3_E3:112x112x16->56x56x24:s2"]
    assert fig == PublishedFigure(
        "expanded_conv-input:112x112x16-output:56x56x24-expand:3-kernel:3-stride:2-idskip:0",
        6.240567073170731,
        math.sqrt(0.07330791484716055),
        164,
    )
    stem = result.mapped["Stem_K3:224x224x3->112x112x32:s2"]
    assert (stem.mean_ms, stem.count) == (4.083755600814664, 982)
    assert stem.std_ms == pytest.approx(math.sqrt(0.2502372872758427))


def test_basic_maps_partially_missing_exactly_the_changed_shapes(proxyless_table):
    space, ref = basic(), proxyless()
    result = map_published(proxyless_table, "proxylessnas", [space])
    changed = [L for L, R in zip(space.layers, ref.layers, strict=True) if L.shape != R.shape]
    assert {L.stage for L in changed} == {2, 3}  # stage 2 is 32 wide, so stage 2 and the first layer of stage 3
    expected_missing = sorted({L.key(op) for L in changed for op in L.candidates if not op.is_identity})
    assert result.missing == expected_missing
    assert len(expected_missing) == 3 * 6  # 112x112x16->56x56x32, 56x56x32->56x56x32, 56x56x32->28x28x40
    assert all(("x32->" in k or "->56x56x32" in k) for k in result.missing)
    assert set(result.mapped) == our_keys(space) - set(expected_missing)
    assert len(result.unmapped) == 3 * 6  # the same three positions at 24 channels
    assert all("56x56x24" in k for k in result.unmapped)


def test_several_spaces_at_once(proxyless_table):
    result = map_published(proxyless_table, "proxylessnas", [proxyless(), basic()])
    assert result.unmapped == []
    assert set(result.mapped) == our_keys(proxyless()) | (our_keys(basic()) - set(result.missing))
    assert len(result.missing) == 18 and all("x32->" in k or "->56x56x32" in k for k in result.missing)


# --- the OFA (Note10) table ----------------------------------------------------------------------


def test_ofa_table_reads_std(ofa_table):
    fig = ofa_table["Conv-input:224x224x3-output:112x112x24"]
    assert fig == PublishedFigure("Conv-input:224x224x3-output:112x112x24", 0.994418, 0.01726798413249215, 500)


def test_ofa_maps_the_plain_blocks_of_an_ofa_like_space(ofa_table):
    space = ofa_like_space()
    result = map_published(ofa_table, "ofa", [space])
    first, stage2 = space.layers[0], [L for L in space.layers if L.stage == 2]
    expected = {"Stem_K3:224x224x3->112x112x24:s2", "Conv1x1:7x7x192->7x7x1152:s1", first.key(OpSpec(3, 1))}
    expected |= {L.key(op) for L in stage2 for op in L.candidates if not op.is_identity}
    assert set(result.mapped) == expected
    assert len(result.mapped) == 3 + 2 * 9
    fig = result.mapped["IBConv_K3_E6:112x112x24->56x56x32:s2"]
    assert fig.source_key.endswith("-expand:144-kernel:3-stride:2-idskip:0-se:0-hs:0")
    assert (fig.mean_ms, fig.std_ms, fig.count) == (4.812240740740741, 0.08956353738593026, 54)
    # OFA's first block is fixed to K3; stages 3-6 carry squeeze-excite and/or h-swish; its head works on 1x1 maps
    assert "IBConv_K5_E1:112x112x24->112x112x24:s1" in result.missing
    assert "PoolFC:7x7x1152->1000" in result.missing
    assert not any(
        k.startswith("IBConv") and ":56x56x32->" not in k and ":112x112x24->" not in k for k in result.mapped
    )
    assert set(result.missing) == our_keys(space) - expected
    assert all("-se:1" in k or "-hs:1" in k for k in result.unmapped if k.startswith("expanded_conv"))
    assert [k for k in result.unmapped if not k.startswith("expanded_conv")] == [
        "AvgPool2D-input:7x7x1152-output:1x1x1152",
        "Conv_2-input:1x1x1152-output:1x1x1536",
        "Logits-input:1x1x1536-output:1000",
    ]
    assert len(result.unmapped) == len(ofa_table) - len(result.mapped)


def test_ofa_on_our_presets(ofa_table):
    assert map_published(ofa_table, "ofa", [proxyless()]).mapped == {}
    result = map_published(ofa_table, "ofa", [basic()])  # only basic's 32-wide stage 2 meets OFA's plain blocks
    assert sorted(result.mapped) == sorted(block(op, LayerShape(56, 32, 32, 1)).key for op in BASIC_OPS[:-1])
    assert len(result.unmapped) == len(ofa_table) - 6


# --- errors -------------------------------------------------------------------------------------


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(HnasError, match="does not exist"):
        read_published_table(tmp_path / "nope.yaml", "ofa")
    (tmp_path / "t.yaml").write_text("a: {count: 1, mean: 1.0, std: 0.1}\n")
    with pytest.raises(HnasError, match="use one of proxylessnas, ofa"):
        read_published_table(tmp_path / "t.yaml", "mnasnet")
    with pytest.raises(HnasError, match="use one of proxylessnas, ofa"):
        map_published({}, "mnasnet", [proxyless()])


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("a: [1, 2\n", "ofa", "is not valid YAML"),
        ("- 1\n- 2\n", "ofa", "expected a non-empty mapping"),
        ("", "proxylessnas", "expected a non-empty mapping"),
        ("a: 3\n", "ofa", "entry 'a': expected a mapping"),
        ("a: {count: 1, mean: 1.0}\n", "proxylessnas", "lacks var"),
        ("a: {count: 1, mean: 1.0, var: 0.1}\n", "ofa", "is this a proxylessnas table"),
        ("a: {count: 0, mean: 1.0, std: 0.1}\n", "ofa", "count must be a positive integer"),
        ("a: {count: 2, mean: fast, std: 0.1}\n", "ofa", "mean must be a finite number"),
        ("a: {count: 2, mean: 1.0, var: -1}\n", "proxylessnas", "must not be negative"),
        ("1: {count: 2, mean: 1.0, std: 0.1}\n", "ofa", "keys must be strings"),
    ],
)
def test_wrong_structure(tmp_path, text, fmt, message):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(HnasError, match=message) as info:
        read_published_table(path, fmt)
    assert "\n" not in str(info.value)


def test_reading_a_table_with_the_wrong_format_names_the_fix(shared_reference):
    with pytest.raises(HnasError, match="read it with fmt='proxylessnas'"):
        read_published_table(shared_reference / PROXYLESS_FILE, "ofa")
    with pytest.raises(HnasError, match="read it with fmt='ofa'"):
        read_published_table(shared_reference / OFA_FILE, "proxylessnas")
