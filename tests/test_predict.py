import json

import numpy as np
import pytest

from hnas.core.errors import HnasError
from hnas.spec.arch import sample
from latency.lut import Lut
from latency.predict import LatencyPredictor
from tests.tiny import tiny_space


def test_predictor_is_the_sum_of_entries(tiny_lut):
    sp, lut = tiny_space(), Lut.load(tiny_lut)
    pred = LatencyPredictor(lut, sp)
    archs = sample(sp, 40, np.random.default_rng(0))
    batch = pred.predict(np.stack([a.to_vector() for a in archs]))
    for arch, got in zip(archs, batch, strict=True):
        fixed = ("Stem_K3:32x32x3->16x16x8:s2", "Conv1x1:8x8x16->8x8x32:s1", "PoolFC:8x8x32->10")
        want = sum(lut.latency_ms(k) for k in fixed)
        want += sum(0.0 if op.is_identity else lut.latency_ms(L.key(op)) for L, op in zip(sp.layers, arch.ops))
        assert got == pytest.approx(want, rel=1e-12)
        assert pred.predict_arch(arch) == pytest.approx(got)
        parts = pred.breakdown(arch)
        assert sum(ms for _, ms in parts) == pytest.approx(got)
        layers = [f"layer {L.index} {op.short}" for L, op in zip(sp.layers, arch.ops)]
        assert [name for name, _ in parts] == ["stem", *layers, "conv1x1", "pool+fc"]


def test_missing_entries_name_keys_and_the_refresh_command(tiny_lut, tmp_path):
    data = json.loads(tiny_lut.read_text())
    del data["entries"]["IBConv_K5_E6:8x8x16->8x8x16:s1"]
    path = tmp_path / "holes.json"
    path.write_text(json.dumps(data))
    with pytest.raises(HnasError) as err:
        LatencyPredictor(Lut.load(path), tiny_space(), lut_name=str(path))
    msg = str(err.value)
    assert "IBConv_K5_E6:8x8x16->8x8x16:s1" in msg  # a file space: the hint names the file to pass, not a preset
    assert f"hnas lut refresh --lut {path} --space FILE`, FILE being the space file the space 'tiny'" in msg
    from hnas.spec.space import basic

    pruned = basic().with_candidates([c[:1] for c in basic().candidates], "basic@stage2")
    with pytest.raises(HnasError, match=r"--space FILE`, FILE being the space file the space 'basic'"):
        LatencyPredictor(Lut.load(path), pruned, lut_name=str(path))
    with pytest.raises(HnasError, match=rf"`hnas lut refresh --lut {path} --space basic`$"):
        LatencyPredictor(Lut.load(path), basic(), lut_name=str(path))  # a preset: its name is the fix
