"""Search archives from fixed seeds, pinned: the same seed gives the same archive, row for row (recorded from the
code before CES became a pure pymoo problem with a shared evaluation ledger and one architecture codec)."""

import hashlib
import json

import numpy as np
import pytest

from hnas.ces import Constraints, ces
from hnas.core.band import Band
from hnas.spec.space import basic
from hnas.spos_ea import random_search, spos_ea
from tests.harness import BandedTable, Table, enumerable_space


def _table(space, banded: bool):
    t = (BandedTable if banded else Table)(space)
    return t, (t if banded else t.latency)


def digest(res, space) -> str:
    """sha256 of everything a search hands back: the archive's rows, the final population and the bookkeeping."""
    record = {
        "archive": res.archive.to_json(space),
        "population": np.asarray(res.population).tolist(),
        "calls": res.accuracy_calls,
        "generations": res.generations,
        "budget": res.budget,
        "exhausted": res.exhausted,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _ces(space, banded, band, pop, gens, prescreen, macs=None):
    t, lat = _table(space, banded)
    return ces(space, t.accuracy, lat, Constraints(band, max_macs=macs), pop, gens, seed=3, prescreen=prescreen)


def _spos(space, banded, band, pop, gens):
    t, lat = _table(space, banded)
    return spos_ea(space, t.accuracy, lat, Constraints(band), population=pop, generations=gens, seed=3)


def _random(space, banded, band, budget):
    t, lat = _table(space, banded)
    return random_search(space, t.accuracy, lat, Constraints(band), budget, seed=3)


CASES = {
    "ces-enum-plain": (enumerable_space, lambda sp: _ces(sp, False, Band(4.0, 8.0), 8, 6, 1)),
    "ces-enum-prescreen": (enumerable_space, lambda sp: _ces(sp, False, Band(4.0, 8.0), 8, 6, 8)),
    "ces-enum-exhausted": (enumerable_space, lambda sp: _ces(sp, False, Band(6.0, 7.3), 16, 40, 8)),
    "ces-basic-banded": (basic, lambda sp: _ces(sp, True, Band(30.0, 32.0), 12, 4, 8, macs=4e8)),
    "ces-basic-open": (basic, lambda sp: _ces(sp, False, Band(), 12, 3, 1)),
    "spos-enum": (enumerable_space, lambda sp: _spos(sp, False, Band(4.0, 8.0), 8, 6)),
    "spos-enum-exhausted": (enumerable_space, lambda sp: _spos(sp, False, Band(6.0, 7.3), 16, 40)),
    "spos-basic-banded": (basic, lambda sp: _spos(sp, True, Band(30.0, 32.0), 12, 4)),
    "random-enum": (enumerable_space, lambda sp: _random(sp, False, Band(4.0, 8.0), 40)),
    "random-basic-banded": (basic, lambda sp: _random(sp, True, Band(30.0, 32.0), 30)),
}

PINNED = {
    "ces-basic-banded": "92a8aa80c980fddd",  # 48 rows, 4 gens, exhausted=False
    "ces-basic-open": "b8766bf8ca2d300a",  # 36 rows, 3 gens, exhausted=False
    "ces-enum-exhausted": "10bfca1cb0dfafe1",  # 28 rows, 2 gens, exhausted=True
    "ces-enum-plain": "a593b0e59783748c",  # 48 rows, 6 gens, exhausted=False
    "ces-enum-prescreen": "41c3a9270984d31d",  # 48 rows, 6 gens, exhausted=False
    "random-basic-banded": "9e51e5066f7a45e8",  # 30 rows, 1 gens, exhausted=False
    "random-enum": "c102b0529e2617c2",  # 40 rows, 1 gens, exhausted=False
    "spos-basic-banded": "e35e8269a9459169",  # 48 rows, 4 gens, exhausted=False
    "spos-enum": "c2c57c6f25252c1d",  # 48 rows, 6 gens, exhausted=False
    "spos-enum-exhausted": "5efbf140bc5ffc79",  # 28 rows, 2 gens, exhausted=True
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_fixed_seed_gives_the_recorded_archive(name):
    make_space, run = CASES[name]
    space = make_space()
    assert digest(run(space), space) == PINNED[name]
