"""One network for a fleet: several latency tables in one search. The first table's latency is the objective; every
table's band is a constraint checked before any accuracy is paid for, in CES, SPOS-EA, random search and the
supernet's path sampling."""

import numpy as np
import pytest

from hnas.ces import Constraints, TableBand, ces, require_feasible
from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.ledger import Archive
from hnas.spec.space import basic
from hnas.spos_ea import random_search, spos_ea
from hnas.train import PathSampler
from tests.harness import BandedTable, Table, enumerable_space

SEARCHES = {
    "ces": lambda sp, acc, lat, cons, pop, gens: ces(sp, acc, lat, cons, pop, gens, seed=3),
    "spos-ea": lambda sp, acc, lat, cons, pop, gens: spos_ea(sp, acc, lat, cons, population=pop, generations=gens),
    "random": lambda sp, acc, lat, cons, pop, gens: random_search(sp, acc, lat, cons, pop * gens, seed=3),
}


def _fleet(space, banded: bool):
    """Two tables of one space that disagree (different seeds), each banded around its own middle."""
    kind = BandedTable if banded else Table
    a, b = kind(space, seed=0), kind(space, seed=1)
    sample = np.random.default_rng(7).integers(0, 1 << 30, (20_000, space.num_layers)) % np.array(
        [len(c) for c in space.candidates]
    )
    band_a = Band(*np.percentile(a.latency(sample), [20, 80]))
    band_b = Band(hi=float(np.percentile(b.latency(sample), 50)))
    lat_a, lat_b = (a, b) if banded else (a.latency, b.latency)
    return a, b, Constraints(band_a, more=(TableBand("B", lat_b, band_b),), name="A"), lat_a


@pytest.mark.parametrize("method", sorted(SEARCHES))
@pytest.mark.parametrize("banded", [False, True], ids=["sampled", "additive"])
def test_every_evaluated_and_returned_architecture_meets_every_band_and_the_budget_is_spent(method, banded):
    sp = enumerable_space() if not banded else basic()
    a, b, cons, lat = _fleet(sp, banded)
    pop, gens = 8, 4
    res = SEARCHES[method](sp, a.accuracy, lat, cons, pop, gens)
    vecs = np.array(res.archive.vectors)
    assert res.exhausted is None and res.accuracy_calls == a.calls == len(vecs) == pop * gens  # spent exactly
    assert cons.band.contains(a.latency(vecs)).all() and cons.more[0].band.contains(b.latency(vecs)).all()
    returned = np.atleast_2d(res.population)
    assert cons.band.contains(a.latency(returned)).all() and cons.more[0].band.contains(b.latency(returned)).all()
    rows = res.archive.to_json(sp)  # each row keeps every table's latency, the objective's first
    assert [r["latencies_ms"] for r in rows] == [[x, y] for x, y in zip(a.latency(vecs), b.latency(vecs))]
    assert Archive.from_json(rows).to_json(sp) == rows


def test_a_fleet_whose_other_band_holds_everything_searches_as_one_table():
    sp = enumerable_space()
    a, b = Table(sp), Table(sp, seed=1)
    band = Band(4.0, 8.0)
    one = ces(sp, Table(sp).accuracy, a.latency, Constraints(band), 8, 4, seed=3, prescreen=1)
    fleet = Constraints(band, more=(TableBand("B", b.latency, Band()),))
    two = ces(sp, Table(sp).accuracy, a.latency, fleet, 8, 4, seed=3, prescreen=1)
    strip = [{k: v for k, v in r.items() if k != "latencies_ms"} for r in two.archive.to_json(sp)]
    assert strip == one.archive.to_json(sp) and "latencies_ms" not in one.archive.to_json(sp)[0]


def test_bands_that_no_architecture_meets_together_are_refused_in_one_line_naming_each_share():
    sp = basic()
    a, b = BandedTable(sp), BandedTable(sp)
    b.lat = 3.0 - a.lat  # b is fastest where a is slowest: their low ends never meet
    lo_a, hi_a = a.distribution().model.span()
    lo_b, hi_b = b.distribution().model.span()
    band_a, band_b = Band(hi=lo_a + 0.05 * (hi_a - lo_a)), Band(hi=lo_b + 0.05 * (hi_b - lo_b))
    cons = Constraints(band_a, more=(TableBand("B.json", b, band_b),), name="A.json")
    with pytest.raises(HnasError) as e:
        require_feasible(sp, a, cons)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("no architecture of space 'basic' meets all bands: A.json alone admits")
    assert "B.json alone" in msg and "both none" in msg
    ok = Constraints(band_a, more=(TableBand("B.json", b, Band(hi=hi_b)),), name="A.json")
    assert "both about" in require_feasible(sp, a, ok)


def test_the_supernet_samples_paths_inside_every_band():
    sp = basic()
    a, b = BandedTable(sp), BandedTable(sp, seed=1)
    *_, cons, _ = _fleet(sp, True)
    sampler = PathSampler(sp, 0, a, cons.band, more=((b, cons.more[0].band),))
    vecs = np.array([sampler.sample().to_vector() for _ in range(200)])
    assert cons.band.contains(a.latency(vecs)).all() and cons.more[0].band.contains(b.latency(vecs)).all()


def test_the_pareto_plot_gains_a_panel_per_other_table_with_its_band():
    from matplotlib.collections import PathCollection

    from hnas.report import pareto_plot

    rows = [
        {"latency_ms": x, "latencies_ms": [x, y], "accuracy": acc, "rank": r}
        for x, y, acc, r in [(7.6, 4.1, 0.5, 3), (8.0, 3.9, 0.7, 1), (8.8, 3.2, 0.9, 1), (9.2, 4.4, 0.6, 12)]
    ]
    fig = pareto_plot({2: {"archive": rows}, 3: {"archive": rows[:2]}}, Band(7.5, 9.0), 10, [("int8", Band(hi=4.5))])
    assert len(fig.axes) == 4  # two stages, two tables: the objective's row, then int8's
    top, bottom = fig.axes[0], fig.axes[2]
    points = [c.get_offsets() for c in bottom.collections if isinstance(c, PathCollection)]
    assert list(points[0][:, 0]) == [4.1, 3.9, 3.2, 4.4] and len(points[1]) == 3  # int8 latency; rank < 10
    assert [line.get_xdata()[0] for line in bottom.lines if len(set(line.get_xdata())) == 1] == [4.5]
    front = next(line for line in bottom.lines if len(set(line.get_xdata())) > 1)
    assert list(front.get_xdata()) == [3.2, 3.9]  # the objective's front, at int8 latency
    assert sorted(line.get_xdata()[0] for line in top.lines if len(set(line.get_xdata())) == 1) == [7.5, 9.0]
    assert len([c for c in fig.axes[3].collections if isinstance(c, PathCollection)][0].get_offsets()) == 2
