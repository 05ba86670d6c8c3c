"""Exact latency band checks: the span from the per-layer minima and maxima, the in-band share by dynamic
programming (bounds that hold the enumerated share), in-band draws, and the searches and commands that use them."""

import itertools
import json

import numpy as np
import pytest

from hnas.ces import Constraints, ces, require_feasible
from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.spec.space import load_space
from hnas.spec.vectors import ArchCodec
from hnas.train import PathSampler
from latency.lut import Lut
from latency.predict import LatencyPredictor
from tests.harness import ROOT, run_cli
from tests.tiny import tiny_space

SHIPPED = ROOT / "lut" / "local-amd-epyc.json"  # another machine's table: it prices architectures anywhere


def _model(seed: int = 0, layers: int = 6, count: int = 5):
    """A calibrated additive model with uneven per-layer figures (15,625 architectures: every one enumerable)."""
    from hnas.core.additive import AdditiveLatency

    rng = np.random.default_rng(seed)
    rows = tuple(rng.gamma(2.0, 0.7, size=count) * rng.uniform(0.2, 3.0) for _ in range(layers))
    return AdditiveLatency(rows, fixed=0.8, offset=0.3, scale=1.07)


def _enumerate(model) -> tuple[np.ndarray, np.ndarray]:
    """Every vector of the model's space and its latency, summed the way a predictor sums."""
    vecs = np.array(list(itertools.product(*[range(len(t)) for t in model.layers])), dtype=np.int64)
    table = np.stack(model.layers)
    raw = table[np.arange(len(model.layers)), vecs].sum(axis=1) + model.fixed
    return vecs, model.offset + model.scale * raw


def test_the_share_bounds_hold_the_enumerated_share_and_draws_stay_in_the_band():
    from hnas.core.additive import LatencyDistribution

    model = _model()
    vecs, lat = _enumerate(model)
    dist = LatencyDistribution(model)
    fast, slow = model.extremes()
    table = np.stack(model.layers)
    rows = np.arange(len(model.layers))
    assert model.offset + model.scale * (table[rows, fast].sum() + model.fixed) == lat.min()
    assert model.offset + model.scale * (table[rows, slow].sum() + model.fixed) == lat.max()
    qs = np.quantile(lat, [0.0, 0.01, 0.2, 0.5, 0.8, 0.99, 1.0])
    bands = [Band(qs[0], qs[1]), Band(qs[2], qs[3]), Band(qs[3], qs[3] + 0.01), Band(None, qs[4]), Band(qs[5], None)]
    bands += [Band(0, lat.min() - 1e-9), Band(lat.max() + 1e-9, None), Band(qs[0], qs[-1])]
    for band in bands:
        exact = band.contains(lat).mean()
        lower, upper = dist.share(band)
        assert lower - 1e-12 <= exact <= upper + 1e-12, (band, lower, exact, upper)  # sums of probabilities
        assert upper - lower < 0.01
    assert dist.share(Band(0, lat.min() - 1e-9)) == (0.0, 0.0)
    # draws from a band: (almost) all inside it, and every architecture inside it is reachable, about equally often
    band = Band(qs[2], qs[3])
    drawn = dist.sample(band, 60_000, np.random.default_rng(1))
    got = _enumerate_latency(model, drawn)
    inside = band.contains(got)
    assert inside.mean() > 0.95
    index = np.ravel_multi_index(drawn[inside].T, [len(t) for t in model.layers])
    counts = np.bincount(index, minlength=len(vecs))[band.contains(lat)]
    assert counts.min() > 0 and counts.max() < 4 * counts.mean()


def _enumerate_latency(model, vecs: np.ndarray) -> np.ndarray:
    table = np.stack(model.layers)
    return model.offset + model.scale * (table[np.arange(len(model.layers)), vecs].sum(axis=1) + model.fixed)


def test_the_exact_span_of_a_lut_space_is_its_enumerated_span(tiny_lut):
    sp = tiny_space()
    pred = LatencyPredictor(Lut.load(tiny_lut), sp)
    lat = pred.predict(ArchCodec(sp).enumerate())
    fast, slow = pred.additive().extremes()
    assert pred.predict(fast)[0] == lat.min() and pred.predict(slow)[0] == lat.max()
    line = require_feasible(sp, pred, Constraints(Band(lat.min(), lat.max())))
    assert f"span {lat.min():.2f}-{lat.max():.2f} ms exactly" in line and "100 %" in line
    below = Band(0, lat.min() * 0.99)
    with pytest.raises(HnasError, match=rf"span {lat.min():.2f}-{lat.max():.2f} ms exactly"):
        require_feasible(sp, pred, Constraints(below))
    for band in (Band(lat.min(), np.median(lat)), Band(np.quantile(lat, 0.3), None)):
        lower, upper = pred.distribution().share(band)
        assert lower - 1e-12 <= band.contains(lat).mean() <= upper + 1e-12


def test_a_narrow_band_at_the_fast_end_of_basic_is_searched_not_refused():
    sp = load_space("basic")
    pred = LatencyPredictor.from_file(SHIPPED, sp)
    band = Band(3, 5)
    line = require_feasible(sp, pred, Constraints(band))  # 100,000 random architectures of basic all lie above 5 ms
    fast = pred.predict(pred.additive().extremes()[0])[0]
    assert fast < 3.2 and f"span {fast:.2f}-" in line and "lie inside [3.00, 5.00] ms" in line
    res = ces(sp, lambda archs: -pred.predict(np.stack([a.to_vector() for a in archs])), pred, Constraints(band), 8, 2)
    assert res.accuracy_calls == 16 and all(3 <= ms <= 5 for ms in res.archive.latency)
    sampler = PathSampler(sp, seed=0, predictor=pred, band=band)  # supernet training inside the band
    assert all(3 <= pred.predict_arch(sampler.sample()) <= 5 for _ in range(20))
    held = sampler.sample(hold={0: 1})
    assert held.to_vector()[0] == 1 and 3 <= pred.predict_arch(held) <= 5
    with pytest.raises(HnasError, match=r"--max-macs 1e\+06: every architecture of space 'basic' has at least"):
        require_feasible(sp, pred, Constraints(band, max_macs=1e6))


def test_commands_refuse_an_empty_band_with_the_exact_span_and_write_nothing(tmp_path):
    sp = load_space("basic")
    pred = LatencyPredictor.from_file(SHIPPED, sp)
    fast, slow = pred.predict(np.stack(pred.additive().extremes()))
    span = f"span {fast:.2f}-{slow:.2f} ms exactly"
    lut = str(SHIPPED)
    out = run_cli("search", "--lut", lut, "--lat", "1:2", "--out", str(tmp_path / "s"), "--population", "4")
    assert out.returncode == 2 and span in out.stderr and "Traceback" not in out.stderr, out.stderr
    sn = run_cli("supernet", "train", "--lut", lut, "--lat", "1:2", "--out", str(tmp_path / "t"), "--epochs", "1")
    assert sn.returncode == 2 and span in sn.stderr and "Traceback" not in sn.stderr, sn.stderr
    assert not (tmp_path / "s").exists() and not (tmp_path / "t" / "config.json").exists()
    assert json.loads(SHIPPED.read_text())["entries"]  # the shipped table is untouched and readable
