import itertools
import json

import numpy as np
import pytest
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from hnas.ces import Constraints, ces
from hnas.core.band import Band
from hnas.prune import estimate, prune, select_by_rank
from hnas.quality import synthetic_truth
from hnas.spec.space import basic
from hnas.spec.vectors import ArchCodec
from hnas.spos_ea import random_search, spos_ea
from tests.harness import Table, enumerable_space, kill_and_resume, run_cli
from tests.tiny import tiny_space


def test_ces_finds_the_true_pareto_front_and_only_feasible_archs():
    sp = enumerable_space()
    t = Table(sp)
    band = Constraints(Band(4.0, 8.0))
    res = ces(sp, t.accuracy, t.latency, band, pop_size=64, generations=40, seed=0)
    lat = np.array(res.archive.latency)
    assert lat.min() >= 4.0 and lat.max() <= 8.0
    assert t.calls == len(res.archive) == res.accuracy_calls  # accuracy only for feasible, never twice
    allv = np.array(list(itertools.product(*[range(len(c)) for c in sp.candidates])))
    L, A = t.latency(allv), t.acc[t.rows, allv].sum(1)
    ok = (L >= 4.0) & (L <= 8.0)
    front = NonDominatedSorting().do(np.column_stack([-A[ok], L[ok]]), only_non_dominated_front=True)
    truth = {tuple(v) for v in allv[ok][front]}
    found = {tuple(v) for v, r in zip(res.archive.vectors, res.archive.ranks, strict=True) if r == 1}
    assert found == truth
    assert len({v.tobytes() for v in res.archive.vectors}) == len(res.archive)  # duplicates eliminated
    assert res.archive.ranks.min() == 1 and res.archive.ranks.max() > 3  # poor ones kept and ranked


def test_ces_respects_macs_and_params_caps():
    sp = basic()
    t = Table(sp, seed=2)
    from hnas.ces import CostTable

    caps = Constraints(max_macs=300e6, max_params=3.0e6)
    res = ces(sp, t.accuracy, t.latency, caps, pop_size=32, generations=10, seed=1)
    macs, params = CostTable(sp)(np.array(res.archive.vectors))
    assert macs.max() <= 300e6 and params.max() <= 3.0e6
    with pytest.raises(Exception, match="widen"):
        ces(sp, t.accuracy, t.latency, Constraints(Band(hi=0.0)), pop_size=8, generations=2)


def test_pruning_removes_exactly_the_ops_under_the_threshold():
    sp = enumerable_space()
    counts = [len(c) for c in sp.candidates]
    # 200 architectures: layer 2 uses op 0 190 times, op 1 9 times, op 2 once (0.5 %), op 3 never
    vecs = np.zeros((200, sp.num_layers), dtype=int)
    vecs[:9, 1], vecs[9, 1] = 1, 2
    vecs[:, 3] = np.arange(200) % counts[3]
    dist = estimate(sp, vecs)
    assert dist.p[1].tolist() == [0.95, 0.045, 0.005, 0.0][: counts[1]]
    pruned = prune(dist, threshold=0.01)
    assert [o.name for o in pruned.candidates[1]] == ["IBConv_K3_E3", "IBConv_K5_E6"]
    assert pruned.candidates[3] == sp.candidates[3]  # uniform layer untouched
    assert all(len(c) == 1 for j, c in enumerate(pruned.candidates) if j not in (1, 3))
    assert pruned.size() < sp.size() and pruned.skeleton == sp.skeleton
    assert select_by_rank(vecs, np.r_[np.ones(100), np.full(100, 10)], 10).shape[0] == 100


def test_spos_ea_baseline_stays_feasible():
    sp = enumerable_space()
    t = Table(sp)
    res = spos_ea(sp, t.accuracy, t.latency, Constraints(Band(4.0, 8.0)), population=32, generations=10)
    lat = np.array(res.archive.latency)
    assert len(res.population) == 10 and np.all((lat >= 4) & (lat <= 8))


SEARCHES = {
    "CES": lambda sp, acc, lat, band, pop, gens, seed: ces(sp, acc, lat, band, pop, gens, seed=seed),
    "CES-plain": lambda sp, acc, lat, band, pop, gens, seed: ces(sp, acc, lat, band, pop, gens, seed=seed, prescreen=1),
    "SPOS-EA": lambda sp, acc, lat, band, pop, gens, seed: spos_ea(sp, acc, lat, band, pop, gens, seed=seed),
    "random": lambda sp, acc, lat, band, pop, gens, seed: random_search(sp, acc, lat, band, pop * gens, seed=seed),
}


@pytest.mark.parametrize("method", list(SEARCHES))
@pytest.mark.parametrize("pop,gens,seed", [(8, 10, 0), (16, 10, 1), (32, 10, 2), (12, 7, 3)])
def test_every_search_spends_exactly_its_budget_on_new_feasible_architectures(method, pop, gens, seed):
    sp = enumerable_space()
    truth = synthetic_truth(sp, seed)
    band = truth.band_percentiles(20, 80)  # about 1,000 feasible architectures: never exhausted at <= 320
    res = SEARCHES[method](sp, truth.accuracy_of, truth.predict, Constraints(band), pop, gens, seed)
    vecs = np.array(res.archive.vectors)
    assert res.accuracy_calls == truth.calls == len(vecs) == pop * gens == res.budget
    assert res.exhausted is None and res.note == f"{pop * gens} of {pop * gens} accuracy evaluations spent"
    assert len({v.tobytes() for v in vecs}) == len(vecs)  # never a duplicate
    lat = truth.predict(vecs)
    assert lat.min() >= band.lo and lat.max() <= band.hi  # never infeasible
    assert np.array_equal(np.array(res.archive.latency), lat)


@pytest.mark.parametrize("method", list(SEARCHES))
def test_an_exhausted_feasible_space_is_reported_not_looped_on(method):
    sp = enumerable_space()
    truth = synthetic_truth(sp, 4)
    band = truth.band_percentiles(49.5, 50.5)
    feasible = len(truth.in_band(band))
    assert 5 < feasible < 40
    res = SEARCHES[method](sp, truth.accuracy_of, truth.predict, Constraints(band), 16, 10, 0)
    assert res.accuracy_calls == truth.calls == len(res.archive) == feasible  # every feasible one, once
    assert res.exhausted == f"all {feasible} feasible architectures were evaluated (the feasible space is exhausted)"
    assert res.note.startswith(f"{feasible} of 160 accuracy evaluations spent: all {feasible}")
    assert truth.score(np.array(res.archive.vectors), band)["hv_ratio"] == pytest.approx(1.0)


def test_hypervolume_ratio_and_best_found_are_computed_against_the_true_front():
    from hnas.quality import hypervolume_2d

    # staircase: (acc, lat) = (1, 0.5), (0.5, 0.2) against ref (0, 1): 0.5 x 0.3 + 1 x 0.5 = 0.65
    assert hypervolume_2d(np.array([1.0, 0.5]), np.array([0.5, 0.2]), 0.0, 1.0) == pytest.approx(0.65)
    assert hypervolume_2d(np.array([1.0, 0.5, 0.4]), np.array([0.5, 0.2, 0.6]), 0.0, 1.0) == pytest.approx(0.65)
    assert hypervolume_2d(np.array([2.0]), np.array([1.5]), 0.0, 1.0) == 0.0  # beyond the reference latency
    sp = enumerable_space()
    truth = synthetic_truth(sp, 0)
    band = truth.band_percentiles(30, 70)
    rows = truth.in_band(band)
    vecs = ArchCodec(sp).enumerate()
    assert truth.score(vecs, band) == {
        "hv_ratio": 1.0,
        "found_best": True,
        "in_band": len(rows),
        "evaluated_in_band": len(rows),
    }
    best = rows[np.argmax(truth.accuracy[rows])]
    only_best = truth.score(vecs[[best]], band)
    assert only_best["found_best"] and 0 < only_best["hv_ratio"] < 1
    without = truth.score(vecs[np.setdiff1d(rows, [best])], band)
    assert not without["found_best"] and without["hv_ratio"] < 1
    assert truth.score(vecs[np.setdiff1d(np.arange(len(vecs)), rows)], band)["hv_ratio"] == 0.0  # outside


@pytest.mark.slow
def test_search_runs_all_stages_prunes_and_resumes_after_a_kill(tiny_lut, tmp_path):
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    out = tmp_path / "run"
    args = [
        "search",
        "--lut",
        str(tiny_lut),
        "--space",
        str(space),
        "--data",
        "digits",
        "--stages",
        "4",
        "--lat",
        "0:1000",
        "--epochs",
        "2,6,2",
        "--lr",
        "0.05,0.02,0.02",
        "--population",
        "8",
        "--generations",
        "3",
        "--batch-size",
        "64",
        "--resolution",
        "16",
        "--bn-images",
        "64",
        "--p-th",
        "0.2",
        "--out",
        str(out),
    ]
    ck = out / "stage2" / "checkpoint.pt"
    finished = [out / "stage1" / "trained.json", out / "stage2" / "search.json"]  # kept as they were
    unfinished = lambda: ck.is_file() and not (out / "stage2" / "trained.json").is_file()  # noqa: E731
    r = kill_and_resume(args, ck.is_file, unfinished, keep=lambda: finished)
    again, search2 = r.again, r.noted[finished[1]]
    assert "resuming" in again.stdout and "stage 1: training" not in again.stdout
    assert "stage 2: CES" not in again.stdout  # the finished search was not redone
    results = json.loads((out / "results.json").read_text())
    # the tiny space has 12 architectures: stage 2's search evaluates them all and says so instead of looping
    assert results["stages"][1]["evaluated"] == 12 and results["stages"][1]["budget"] == 24
    assert "all 12 feasible architectures were evaluated" in results["stages"][1]["exhausted"]
    final = results["stages"][3]
    assert final["budget"] == 24 and final["evaluated"] == int(final["searched_size"]) <= 12
    assert f"stage 4: {final['evaluated']} of 24 accuracy evaluations spent" in again.stdout
    sizes = [int(s.get("space_size") or s["searched_size"]) for s in results["stages"]]
    assert sizes[0] == tiny_space().size() and sizes[1] <= sizes[0] and sizes[2] <= sizes[1]
    rec2 = json.loads(search2)
    assert int(rec2["pruned_size"]) == sizes[1] and rec2["distribution"]["n_archs"] > 0
    assert results["best"] and all(0 <= r["latency_ms"] <= 1000 for r in results["best"])
    assert len(json.loads((out / "stage2" / "trained.json").read_text())) == 6


@pytest.mark.slow
def test_relative_latency_band(tiny_lut, tmp_path):
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    out = run_cli(
        "search",
        "--lut",
        str(tiny_lut),
        "--space",
        str(space),
        "--stages",
        "2",
        "--lat-rel",
        "1.5:2",
        "--out",
        str(tmp_path / "r"),
    )
    assert out.returncode == 2 and "--lat-rel needs --ref" in out.stderr
    ref = "K3E1|K3E3-ID"
    out = run_cli(
        "search",
        "--lut",
        str(tiny_lut),
        "--space",
        str(space),
        "--stages",
        "2",
        "--lat-rel",
        "0.9:1.2",
        "--ref",
        ref,
        "--epochs",
        "1",
        "--lr",
        "0.02",
        "--population",
        "4",
        "--generations",
        "2",
        "--batch-size",
        "128",
        "--resolution",
        "16",
        "--bn-images",
        "32",
        "--out",
        str(tmp_path / "r"),
    )
    assert out.returncode == 0, out.stderr
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())["search"]
    from hnas.spec.arch import parse_arch
    from latency.lut import Lut
    from latency.predict import LatencyPredictor

    ref_ms = LatencyPredictor(Lut.load(tiny_lut), tiny_space()).predict_arch(parse_arch(ref, tiny_space()))
    assert cfg["band"]["lo"] == pytest.approx(0.9 * ref_ms) and cfg["band"]["hi"] == pytest.approx(1.2 * ref_ms)
