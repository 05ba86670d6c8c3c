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
from hnas.spec.vectors import ArchCodec
from hnas.spos_ea import random_search, spos_ea
from hnas.train import PathSampler
from tests.harness import BandedTable, Table, enumerable_space, run_cli

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
    # the first table's band open, the other's narrow: draws come from the narrow one, as CES draws
    rare = Band(hi=float(b.latency(ArchCodec(sp).sample(np.random.default_rng(0), 2000)).min()))  # ~1 in 2,000
    only = PathSampler(sp, 0, a, Band(), more=((b, rare),), max_reject=3)
    vecs = np.array([only.sample().to_vector() for _ in range(50)])
    assert rare.contains(b.latency(vecs)).all()


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


def _other_device(lut, path, scale=0.5, drop=None):
    """A copy of `lut` as another device's table (another machine's host), its figures scaled; `drop`: a key left
    out."""
    import json

    data = json.loads(lut.read_text())
    data["device"]["machine"] = "0000dead"
    data["calibration"] = None
    for key, e in list(data["entries"].items()):
        for k in ("median_ms", "mean_ms"):
            if e.get(k) is not None:
                e[k] *= scale
        if key == drop:
            del data["entries"][key]
    path.write_text(json.dumps(data))
    return path


def test_bands_pair_with_tables_in_order_and_what_does_not_pair_is_refused():
    from hnas.workflows.fleet import pair_bands

    two = pair_bands(2, ["60:70", ":120"], None)
    assert two.lat == [Band(60, 70), Band(hi=120)] and two.lat_rel == [None, None] and two.refs == [None, None]
    rel = pair_bands(2, None, ["0.9:1.1", ":2"], ["REF"])
    assert rel.lat_rel == [Band(0.9, 1.1), Band(hi=2)] and rel.refs == ["REF", "REF"]  # one --ref, priced on each
    assert pair_bands(1, ["1:2"], None).lat == [Band(1, 2)]
    assert pair_bands(0, None, None).lat == [None]  # no table, no band: an unconstrained supernet
    for args, says in (
        ((2, ["60:70"], None), "2 --lut and 1 --lat: the i-th --lat is the i-th table's band"),
        ((2, ["60:70"], ["0.9:1.1"]), "not some of each"),
        ((3, None, ["1:2"] * 3, ["A", "B"]), "give one --ref (priced on every table) or one per table"),
        ((1, ["1:2", "3:4"], None), "give another --lut for each other band"),
        ((0, ["1:2"], None), "a latency band (--lat, --lat-rel) needs the LUT that prices it (--lut)"),
    ):
        with pytest.raises(HnasError) as e:
            pair_bands(*args)
        assert says in str(e.value)


def test_tables_of_one_device_and_precision_or_short_of_the_space_are_refused(tiny_lut, tmp_path):
    from hnas.workflows.fleet import open_tables
    from latency.items import items_for_space
    from tests.tiny import tiny_space

    sp = tiny_space()
    twin = tmp_path / "twin.json"
    twin.write_bytes(tiny_lut.read_bytes())
    with pytest.raises(HnasError, match="both float32 tables of .*: a fleet holds one table per device and precision"):
        open_tables([str(tiny_lut), str(twin)], sp)
    key = next(p.key for p in items_for_space(sp) if p.key)
    short = _other_device(tiny_lut, tmp_path / "short.json", drop=key)
    with pytest.raises(HnasError, match=f"lacks 1 entries of space 'tiny' \\({key}\\)"):
        open_tables([str(tiny_lut), str(short)], sp)
    a, b = open_tables([str(tiny_lut), str(_other_device(tiny_lut, tmp_path / "b.json"))], sp)
    v = np.zeros((1, sp.num_layers), dtype=np.int64)
    assert b.predict(v)[0] == pytest.approx(0.5 * a.table(v)[0])  # each at its own figures (b: uncalibrated)


def test_a_run_keeps_its_table_list(tiny_lut, tmp_path):
    import json
    from dataclasses import asdict

    from hnas.runs import pin_fleet, run_fleet
    from hnas.settings import FleetTable, SearchSettings

    b = _other_device(tiny_lut, tmp_path / "b.json")
    search = pin_fleet(SearchSettings(fleet=[FleetTable(str(b), Band(hi=5.0))]))
    assert search.fleet[0].lut_sha256 and run_fleet(search, "RUN").fleet == search.fleet
    with pytest.raises(HnasError, match="RUN was started with 2 latency table\\(s\\) and 1 --lut were given"):
        run_fleet(search, "RUN", [])
    moved = tmp_path / "moved.json"
    moved.write_bytes(b.read_bytes())
    assert run_fleet(search, "RUN", [str(moved)]).fleet[0].lut == str(moved.resolve())  # a moved copy is taken
    run = tmp_path / "run"  # a run records where a moved table is now, as it does its first table
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"run": {}, "search": asdict(search)}))
    run_fleet(search, run, [str(moved)])
    assert json.loads((run / "config.json").read_text())["search"]["fleet"][0]["lut"] == str(moved.resolve())
    b.write_text(b.read_text().replace("0000dead", "0000beef"))
    with pytest.raises(HnasError, match="which has changed|is not the table RUN was started with"):
        run_fleet(search, "RUN")


@pytest.mark.slow
def test_a_fleet_run_keeps_every_table_in_its_results_report_and_verification(tiny_lut, tmp_path):
    import json

    from hnas.pipeline import Pipeline
    from hnas.recipes import RECIPES
    from hnas.report import build_report
    from hnas.settings import FleetTable, RunConfig, SearchSettings
    from hnas.workflows.fleet import open_fleet
    from hnas.workflows.verify import verify_run
    from tests.tiny import tiny_space

    sp, recipe, lines = tiny_space(), RECIPES["embedded"], []
    other = _other_device(tiny_lut, tmp_path / "phone.json")  # another machine's host: cannot be reached here
    every = np.array(np.meshgrid(*[range(len(c)) for c in sp.candidates])).reshape(sp.num_layers, -1).T
    cap = float(np.median(open_fleet(str(other), SearchSettings(), sp).latency.predict(every)))
    search = SearchSettings(2, [1], [0.05], population=4, generations=2, fleet=[FleetTable(str(other), Band(hi=cap))])
    run = RunConfig(
        sp.to_dict(), "digits", recipe.proxy_settings(bn_images=64), recipe.train_config(epochs=1), str(tiny_lut)
    )
    fleet = open_fleet(run.lut, search, sp)
    out = tmp_path / "run"
    results = Pipeline(
        out, run, search, fleet.latency, log=lines.append, progress=False, more=fleet.more, name=fleet.names[0]
    ).run()
    assert [t["name"] for t in results["tables"]] == ["tiny", "phone"] and results["tables"][1]["band_ms"] == [
        None,
        cap,
    ]
    rows = json.loads((out / "stage2" / "search.json").read_text())["archive"]
    assert (
        rows
        and all(r["latencies_ms"][1] <= cap for r in rows)
        and all(r["latencies_ms"][1] <= cap for r in results["best"])
    )
    assert lines[0].startswith(f"latency bands [-, -] ms on tiny, {Band(hi=cap)} ms on phone: tiny: the space's")
    assert "tiny alone admits about 100 %, phone alone " in lines[0] and ", both about " in lines[0]
    assert f"2 generations, latency [-, -] ms on tiny, {Band(hi=cap)} ms on phone" in "\n".join(lines)
    assert json.loads((out / "config.json").read_text())["search"]["fleet"][0]["lut_sha256"]
    page = build_report(out).read_text()
    assert "Latency tables (one network for every device)" in page and str(other.resolve()) in page
    with pytest.raises(HnasError, match="measured on each table's own device"):
        verify_run(out, precision="int8")  # one table's precision cannot pick a fleet's devices
    checked = verify_run(out)
    here, there = checked["tables"]
    assert here["reached"] and here["measured_ms"] > 0 and "stable" in here
    assert not there["reached"] and "was measured on" in there["why"] and "machine 0000dead" in there["why"]
    one = run_cli("search", "--out", str(out), "--lut", str(tiny_lut))  # a resume keeps its table list
    assert one.returncode == 2 and "was started with 2 latency table(s) and 1 --lut were given" in one.stderr
    band = run_cli("search", "--out", str(out), "--lat", "0:1000")
    assert band.returncode == 2 and f"was started with --lat :,:{cap:g} (given 0:1000)" in band.stderr
    other.rename(tmp_path / "elsewhere.json")  # an other table gone: its device is not reached, the others are
    gone = verify_run(out)["tables"]
    assert gone[0]["reached"] and gone[0]["measured_ms"] > 0
    assert not gone[1]["reached"] and gone[1]["name"] == "phone" and "is not there" in gone[1]["why"]


def test_a_fleet_search_is_refused_in_one_line_before_anything_is_written(tiny_lut, space_file, tmp_path):
    from latency.items import items_for_space
    from tests.tiny import tiny_space

    twin = tmp_path / "twin.json"
    twin.write_bytes(tiny_lut.read_bytes())
    other = _other_device(tiny_lut, tmp_path / "phone.json")
    key = next(p.key for p in items_for_space(tiny_space()) if p.key)
    short = _other_device(tiny_lut, tmp_path / "short.json", drop=key)
    out = tmp_path / "run"
    base = ["search", "--space", str(space_file), "--out", str(out), "--stages", "2", "--epochs", "1"]
    lat = ["--lat", "0:1000"]
    for tables, says in (
        ([(tiny_lut, lat), (twin, lat)], "a fleet holds one table per device and precision"),
        ([(tiny_lut, lat), (other, [])], "2 --lut and 1 --lat: the i-th --lat is the i-th table's band"),
        ([(tiny_lut, lat), (short, ["--lat", ":1"])], f"lacks 1 entries of space 'tiny' ({key})"),
        ([(tiny_lut, lat), (other, ["--lat", ":0.000001"])], "has a latency inside [-, 0.00] ms on phone"),
    ):
        r = run_cli(*base, *[x for path, band in tables for x in ("--lut", str(path), *band)])
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and not out.exists()


def test_the_study_assembles_a_fleet_each_table_held_to_the_band_at_its_reference(tiny_lut, tmp_path):
    from hnas.recipes import RECIPES
    from hnas.spec.arch import parse_arch
    from hnas.workflows.fleet import open_tables
    from hnas.workflows.study import StudySettings
    from tests.tiny import tiny_space

    sp, recipe = tiny_space(), RECIPES["embedded"]
    other = _other_device(tiny_lut, tmp_path / "phone.json")
    ref = parse_arch("K3E1|K3E3-ID", sp)
    s = StudySettings(
        sp, str(tiny_lut), "digits", 3, 0.05, Band(0.5, 2), ref, 4, 2, 32, recipe.proxy_settings(), others=(str(other),)
    )
    run, search, fleet = s.assemble(2, 0)
    a, b = open_tables([str(tiny_lut), str(other)], sp)
    assert search.band == Band(0.5, 2).scaled(a.predict_arch(ref)) and fleet.latency.lut_name == str(tiny_lut)
    assert [t.lut_name for t in fleet.tables] == [str(tiny_lut), str(other)]  # opened once, handed to open_search
    (t,) = search.fleet
    assert t.lut == str(other) and t.band == Band(0.5, 2).scaled(b.predict_arch(ref)) and t.ref == str(ref)
    assert len(s.search_record()["others_sha256"]) == 1
    one = StudySettings(sp, str(tiny_lut), "digits", 3, 0.05, Band(0.5, 2), ref, 4, 2, 32, recipe.proxy_settings())
    assert "others_sha256" not in one.search_record() and one.assemble(2, 0)[1].fleet == []


@pytest.mark.slow
def test_supernet_training_takes_every_table_and_keeps_the_list_on_resume(tiny_lut, space_file, tmp_path):
    import json

    other = _other_device(tiny_lut, tmp_path / "phone.json")
    out = tmp_path / "sn"
    base = ["supernet", "train", "--space", str(space_file), "--out", str(out), "--epochs", "1"]
    one_band = run_cli(*base, "--lut", str(tiny_lut), "--lat", "0:1000", "--lut", str(other))
    assert one_band.returncode == 2 and "2 --lut and 1 --lat" in one_band.stderr and not out.exists()
    r = run_cli(*base, "--lut", str(tiny_lut), "--lat", "0:1000", "--lut", str(other), "--lat", ":1000")
    assert r.returncode == 0, r.stderr
    (t,) = json.loads((out / "config.json").read_text())["train"]["fleet"]
    assert t["lut"] == str(other.resolve()) and t["band"] == {"lo": None, "hi": 1000} and t["lut_sha256"]
    again = run_cli(*base, "--lut", str(tiny_lut))
    assert again.returncode == 2 and "was started with 2 latency table(s) and 1 --lut were given" in again.stderr
