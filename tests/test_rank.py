import json
import time

import numpy as np
import pytest

from hnas.rank import common_space, draw_from_space, pick_along_front, plot_study, spread_in_band
from hnas.rankstats import kendall_tau, ranking_stats, spearman_rho
from hnas.spec.arch import sample
from tests.harness import kill_and_resume, run_cli, snapshot
from tests.tiny import tiny_space


def test_pick_along_front_spreads_over_the_front_and_fills_from_next_ranks():
    front = [{"rank": 1, "latency_ms": float(i), "accuracy": 0.5 + 0.01 * i, "arch": f"a{i}"} for i in range(21)]
    rest = [{"rank": 2, "latency_ms": float(i) + 0.5, "accuracy": 0.4, "arch": f"b{i}"} for i in range(5)]
    picked = pick_along_front(front + rest, 5)
    assert [p["arch"] for p in picked] == ["a0", "a5", "a10", "a15", "a20"]
    small = pick_along_front(front[:3] + rest, 5)
    assert len(small) == 5 and {p["rank"] for p in small} == {1, 2}


def test_rank_statistics_agree_with_scipy_on_ties_and_over_many_rows_at_once():
    from scipy.stats import kendalltau, spearmanr

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 4, (50, 9)).astype(float), rng.integers(0, 3, (50, 9)).astype(float)
    taus, rhos = kendall_tau(x, y), spearman_rho(x, y)
    for i in range(50):
        assert taus[i] == pytest.approx(kendalltau(x[i], y[i]).statistic, nan_ok=True)
        assert rhos[i] == pytest.approx(spearmanr(x[i], y[i]).statistic, nan_ok=True)
    assert kendall_tau([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.8, 0.7]) == pytest.approx(2 / 3)
    assert spearman_rho([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.8, 0.7]) == pytest.approx(0.8)
    assert np.isnan(kendall_tau([1, 2, 3], [5, 5, 5]))  # nothing to rank on one side


def test_ranking_stats_intervals_and_noise_ceiling():
    rng = np.random.default_rng(1)
    truth = np.linspace(0.80, 0.95, 12)
    one_shot = truth + rng.normal(0, 0.01, 12)
    # three seeds that agree exactly: the ceiling is 1, and tau against one seed is tau against their mean
    same = np.repeat(truth[:, None], 3, axis=1)
    s = ranking_stats(one_shot, same, -same, resamples=500, seed=3)
    assert s["ceiling_tau"] == pytest.approx(1) and s["ceiling_tau_ci"] == pytest.approx([1, 1])
    assert s["kendall_tau_seed"] == pytest.approx(s["kendall_tau"]) == pytest.approx(kendall_tau(one_shot, truth))
    assert s["kendall_tau_loss"] == pytest.approx(s["kendall_tau"])  # loss = -top-1 here: the same order
    # noisy seeds: every figure inside its interval, the interval reproducible from its seed, wider with noise
    noisy = truth[:, None] + rng.normal(0, 0.03, (12, 3))
    a = ranking_stats(one_shot, noisy, -noisy, resamples=500, seed=3)
    assert a == ranking_stats(one_shot, noisy, -noisy, resamples=500, seed=3)
    assert a != ranking_stats(one_shot, noisy, -noisy, resamples=500, seed=4)
    for name in ("kendall_tau", "spearman_rho", "kendall_tau_seed", "ceiling_tau", "ceiling_rho_loss"):
        lo, hi = a[name + "_ci"]
        assert lo <= a[name] <= hi and hi - lo > 0.05
    pairs = [kendall_tau(noisy[:, i], noisy[:, j]) for i, j in ((0, 1), (0, 2), (1, 2))]
    assert a["ceiling_tau"] == pytest.approx(np.mean(pairs)) and a["ceiling_tau"] < 1
    one = ranking_stats(one_shot, noisy[:, :1], -noisy[:, :1], resamples=200)  # one seed: no ceiling
    assert one["ceiling_tau"] is None and one["ceiling_tau_ci"] == [None, None] and one["kendall_tau"] is not None


def test_draw_from_space_is_distinct_seeded_and_takes_all_of_a_small_space():
    space = tiny_space()  # 12 architectures
    five = draw_from_space(space, 5, np.random.default_rng(0))
    assert len({str(a) for a in five}) == 5 and all(a.space is space for a in five)
    assert [str(a) for a in five] == [str(a) for a in draw_from_space(space, 5, np.random.default_rng(0))]
    every = draw_from_space(space, 20, np.random.default_rng(0))
    assert len({str(a) for a in every}) == 12 == len(every)


def test_band_picks_spread_over_the_band_from_what_every_pruned_space_holds():
    from hnas.core.band import Band
    from hnas.core.errors import HnasError
    from hnas.spec.arch import from_vector
    from hnas.spec.vectors import ArchCodec

    space = tiny_space()  # 3 layers of 3 candidates (the first without Identity): 12 architectures
    price = lambda vecs: 1.0 + np.asarray(vecs, dtype=float) @ np.array([1.0, 2.0, 4.0])  # noqa: E731
    every = {str(from_vector(space, v)): float(price([v])[0]) for v in ArchCodec(space).enumerate()}
    band = Band(3.0, 10.0)
    inside = sorted(t for t in every.values() if 3.0 <= t <= 10.0)
    archs, lat = spread_in_band(space, price, band, 4, np.random.default_rng(0), draws=400)
    assert len({str(a) for a in archs}) == 4 and lat == sorted(lat)
    assert [every[str(a)] for a in archs] == lat and all(3.0 <= t <= 10.0 for t in lat)
    assert lat[0] == inside[0] and lat[-1] == inside[-1]  # from the fastest to the slowest inside the band
    with pytest.raises(HnasError, match="inside the band"):
        spread_in_band(space, price, Band(100.0, 200.0), 4, np.random.default_rng(0), draws=50)
    # what two pruned spaces share, layer by layer; a layer with nothing shared is one line
    a = space.with_candidates([space.candidates[0][:2], space.candidates[1], space.candidates[2][1:]])
    b = space.with_candidates([space.candidates[0], space.candidates[1][:1], space.candidates[2]])
    both = common_space([a, b])
    assert list(both.candidates) == [space.candidates[0][:2], space.candidates[1][:1], space.candidates[2][1:]]
    c = space.with_candidates([space.candidates[0], space.candidates[1][1:], space.candidates[2]])
    with pytest.raises(HnasError, match="layer 1"):
        common_space([b, c])


def test_standalone_training_resumes(tmp_path):
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    arch = str(sample(tiny_space(), 1, np.random.default_rng(0))[0])
    out = tmp_path / "sa"
    args = [
        "train",
        arch,
        "--space",
        str(space),
        "--data",
        "digits",
        "--out",
        str(out),
        "--epochs",
        "8",
        "--lr",
        "0.05",
        "--batch-size",
        "64",
        "--resolution",
        "16",
    ]
    kill_and_resume(args, (out / "checkpoint.pt").is_file, lambda: not (out / "result.json").is_file())
    res = json.loads((out / "result.json").read_text())
    assert res["arch"] == arch and res["epochs"] == 8 and res["test_top1"] > 0.3  # digits learn stand-alone
    assert res["seed"] == 0 and 0 < res["test_loss"] < np.log(10) and res["val_loss"] > 0  # below chance's loss
    other = str(next(a for a in sample(tiny_space(), 10, np.random.default_rng(1)) if str(a) != arch))
    wrong = run_cli(*[other if a == arch else a for a in args])
    assert wrong.returncode == 2 and "holds a training of another architecture" in wrong.stderr


def synthetic_run(stages: int, k: int, seeds: int, rng, tied: bool = False) -> dict:
    """A ranked run as `rank_run` returns it, from made-up accuracies (tied: every stand-alone result equal)."""
    one_shot = rng.random(k)
    top1 = np.full((k, seeds), 0.9) if tied else rng.random((k, seeds))
    picks = {}
    for pick in ("front", "space"):
        archs = [
            {
                "arch": f"a{i}",
                "one_shot": float(one_shot[i]),
                "standalone_test": float(top1[i].mean()),
                "standalone_test_std": float(top1[i].std()),
            }
            for i in range(k)
        ]
        stats = ranking_stats(one_shot, top1, -top1, resamples=200, seed=stages)
        picks[pick] = {"k": k, **stats, "architectures": archs}
    return {"stages": stages, "seeds": list(range(seeds)), "space_size": "10", "initial_size": "99", "picks": picks}


def test_the_study_figure_draws_the_table_also_where_figures_are_undefined(tmp_path):
    from hnas.workflows.study import study_table

    rng = np.random.default_rng(0)
    runs = [synthetic_run(2, 5, 3, rng), synthetic_run(3, 4, 1, rng), synthetic_run(4, 6, 2, rng, tied=True)]
    table = study_table(runs)
    assert table[2]["ceiling_tau"] is None and table[4]["kendall_tau"] is None  # one seed; all tied
    fig = plot_study(tmp_path / "study.png", table, runs)
    assert (tmp_path / "study.png").stat().st_size > 1000
    assert fig["labels"] == [f"M = {m}\n{p}" for m in (2, 3, 4) for p in ("front", "space")]
    assert_figure_shows(fig, table)
    for label, points in fig["points"].items():  # every architecture once, where it belongs
        run = runs[(int(label[4]) - 2)]
        pick = run["picks"][label.split(", ")[1].split(":")[0]]
        assert close(points, [[a["one_shot"], a["standalone_test"]] for a in pick["architectures"]])
    assert sorted(len(v) for v in fig["points"].values()) == [4, 4, 5, 5, 6, 6]


def test_the_seed_alone_decides_a_standalone_training(tmp_path):
    import torch

    from hnas.data import load_data
    from hnas.settings import ProxySettings, TrainConfig
    from hnas.standalone import train_standalone

    data = load_data("digits", 16, 0)
    arch = sample(tiny_space(), 1, np.random.default_rng(0))[0]
    results = []
    for i, seed in enumerate([0, 0, 1]):
        torch.manual_seed(100 + i)  # whatever ran before in the process
        cfg = TrainConfig(epochs=1, lr=0.05, batch_size=64, seed=seed)
        results.append(train_standalone(arch, data, ProxySettings(resolution=16), cfg, tmp_path / str(i)))
    same, other = ([r.val_loss, r.test_loss, r.test_top1] for r in (results[0], results[2]))
    assert [results[1].val_loss, results[1].test_loss, results[1].test_top1] == same != other


def study_args(lut, space, study, *extra):
    return [
        "study",
        str(study),
        "--lut",
        str(lut),
        "--space",
        str(space),
        "--data",
        "digits",
        "--total-epochs",
        "3",
        "--lr",
        "0.05",
        "--search-seeds",
        "2",
        "--k",
        "3",
        "--pick",
        "all",
        "--seeds",
        "2",
        "--epochs",
        "2",
        "--jobs",
        "2",
        "--bootstrap",
        "500",
        "--ref",
        "K3E1|K3E3-ID",
        "--lat-rel",
        "0:100",
        "--population",
        "6",
        "--generations",
        "2",
        "--batch-size",
        "64",
        "--resolution",
        "16",
        "--bn-images",
        "64",
        "--val-archs",
        "2",
        "--schedule",
        "continuous",
        *extra,
    ]


def close(got, want) -> bool:
    """Equal numbers (nested lists; None and nan alike)."""
    as_array = lambda v: np.array(v, dtype=float)  # noqa: E731 - None -> nan
    return np.allclose(as_array(got), as_array(want), equal_nan=True)


# what study.png draws (its artists' data) -> the table's figure it must show
DRAWN = {
    "tau": "kendall_tau",
    "tau_ci": "kendall_tau_ci",
    "tau_seed": "kendall_tau_seed",
    "tau_seed_ci": "kendall_tau_seed_ci",
    "ceiling": "ceiling_tau",
    "ceiling_band": "ceiling_tau_ci",
}


def assert_figure_shows(fig: dict, table: list[dict]) -> None:
    """Every bar, interval, dot, ceiling and band of the study figure equals the table's figure."""
    for drawn, figure in DRAWN.items():
        assert close(fig[drawn], [r[figure] for r in table]), drawn


# one thread per process: two busy-waiting torch threads on a machine whose cores other work also uses run a
# network this small many times slower
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_the_study_resumes_after_a_kill_and_reports_tables_4_and_5_and_fig_6(tiny_lut, tmp_path):
    from hnas.searchrun import SearchRun
    from hnas.spec.arch import parse_arch

    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    study = tmp_path / "study"
    args = study_args(tiny_lut, space, study)
    trained = lambda: list((study / "standalone").glob("*/seed*/result.json"))  # noqa: E731
    searched = lambda: list(study.glob("seed*/**/*.json"))  # noqa: E731
    runs = [study / f"seed{s}" / f"M{m}" for s in (0, 1) for m in (2, 3, 4)]

    def killed_in_the_rankings() -> bool:
        return all((r / "results.json").is_file() for r in runs) and not (study / "study.json").exists()

    def workers_stop(_) -> None:
        searches = snapshot(searched())
        time.sleep(1.0)  # the workers notice within 0.5 s that their parent is gone: nothing trains on after that
        done = snapshot(trained())
        time.sleep(1.5)
        assert snapshot(trained()) == done and snapshot(searches) == searches

    # two worker processes train; finished searches and trainings are kept
    resumed = kill_and_resume(
        args, lambda: len(trained()) >= 2, killed_in_the_rankings, keep=lambda: [*searched(), *trained()],
        settle=workers_stop, env=ONE_THREAD,
    )  # fmt: skip
    again = resumed.again
    assert again.stdout.count("(resuming)") == 6 and "stage 1: training" not in again.stdout
    data = json.loads((study / "study.json").read_text())
    # every M has the same total epochs and, with the continuous schedule, the same learning-rate curve
    cfgs = [json.loads((r / "config.json").read_text()) for r in runs[:3]]
    assert [sum(c["search"]["epochs"]) for c in cfgs] == [3, 3, 3]
    assert [c["search"]["lrs"] for c in cfgs] == [
        [0.05],
        pytest.approx([0.05, 0.05 / 3]),
        pytest.approx([0.05, 0.05 * 2 / 3, 0.05 / 3]),
    ]
    assert {c["run"]["train"]["warmup_epochs"] for c in cfgs} == {0}  # a third of HNAS's 1-epoch first stage
    table = data["table4"]
    picks = ("front", "space", "band")
    assert [(r["M"], r["pick"]) for r in table] == [(m, p) for m in (2, 3, 4) for p in picks]
    for row, (run, pick) in zip(table, [(r, p) for r in data["runs"] for p in picks]):
        p = run["picks"][pick]
        assert row["k"] == p["k"] == 3 and row["seeds"] == 2 and row["initial_size"] == str(tiny_space().size())
        for name in ("kendall_tau", "spearman_rho", "kendall_tau_loss", "kendall_tau_seed", "ceiling_tau"):
            lo, hi = row[name + "_ci"]
            assert row[name] is None or lo <= row[name] <= hi
        for a in p["architectures"]:
            top1 = [r["test_top1"] for r in a["repeats"]]
            assert [r["seed"] for r in a["repeats"]] == [0, 1] and all(r["test_loss"] > 0 for r in a["repeats"])
            assert a["standalone_test"] == pytest.approx(np.mean(top1))
    # space draws are scored on the final supernet with the run's own evaluator
    accuracy, final_space = SearchRun.read(runs[2]).final_accuracy()
    drawn = data["runs"][2]["picks"]["space"]["architectures"]
    assert accuracy([parse_arch(a["arch"], final_space) for a in drawn]).tolist() == [a["one_shot"] for a in drawn]
    # band picks: the same architectures for every M, from what every final space holds, spread over the band
    bands = [[a["arch"] for a in r["picks"]["band"]["architectures"]] for r in data["runs"]]
    assert bands[0] == bands[1] == bands[2] and len(set(bands[0])) == 3
    finals = [SearchRun.read(r).space_of(m - 1) for r, m in zip(runs[:3], (2, 3, 4))]
    for final in finals:
        parse_arch(bands[0][0], final), parse_arch(bands[0][1], final), parse_arch(bands[0][2], final)
    lat = [a["latency_ms"] for a in data["runs"][0]["picks"]["band"]["architectures"]]
    assert lat == sorted(lat) and lat[0] < lat[-1]
    # Table 5: each run's most accurate architecture in the band, and SPOS-EA's on the same seed's I-Supernet
    t5 = {r["method"]: r for r in data["table5"]}
    assert list(t5) == ["I-Supernet (M = 2)", "P-Supernet (M = 3)", "HNAS (M = 4)", "SPOS-EA on I-Supernet"]
    results = {
        (s, m): json.loads((study / f"seed{s}" / f"M{m}" / "results.json").read_text())
        for s in (0, 1)
        for m in (2, 3, 4)
    }
    spos = [json.loads((study / f"seed{s}" / "M2" / "stage2" / "spos_ea.json").read_text()) for s in (0, 1)]
    for name, row in t5.items():
        for seed, cell in enumerate(row["per_seed"]):
            chosen = spos[seed]["best"] if "SPOS" in name else results[(seed, row["M"])]["best"][0]
            assert cell["arch"] == chosen["arch"] and cell["one_shot"] == chosen["accuracy"]
            repeats = [json.loads(f.read_text())["test_top1"] for f in study.glob("standalone/*/seed*/result.json")
                       if json.loads(f.read_text())["arch"] == cell["arch"]]  # fmt: skip
            assert len(repeats) == 2 and cell["standalone_test"] == pytest.approx(np.mean(repeats))
        assert row["standalone_mean"] == pytest.approx(np.mean([c["standalone_test"] for c in row["per_seed"]]))
        base = [c["standalone_test"] for c in t5["I-Supernet (M = 2)"]["per_seed"]]
        diff = [c["standalone_test"] - b for c, b in zip(row["per_seed"], base)]
        assert row["vs_i_supernet"] == pytest.approx(np.mean(diff))
        assert (row["vs_i_supernet_ci"] is None) == (name == "I-Supernet (M = 2)")
    assert len(spos[0]["archive"]) == 6 * 2  # SPOS-EA spent CES's budget
    # Fig. 6: every epoch's supernet validation accuracy, epochs counted over the stages, pruning marked
    for m in (2, 3, 4):
        for s in (0, 1):
            curve = data["fig6"][str(m)][str(s)]
            hist = [
                h
                for k in range(1, m)
                for h in json.loads((study / f"seed{s}" / f"M{m}" / f"stage{k}" / "trained.json").read_text())
            ]
            assert curve["epoch"] == [1, 2, 3] and curve["val_acc"] == [h["val_acc"] for h in hist]
            assert curve["pruned_after"] == {2: [], 3: [2], 4: [1, 2]}[m]
    # the figure shows the tables and the curves
    fig = data["figure"]
    assert_figure_shows(fig, table)
    for m, line in fig["fig6"].items():
        runs_m = data["fig6"][m].values()
        assert close(line["val_acc"], np.mean([r["val_acc"] for r in runs_m], axis=0))
    assert close(fig["table5"]["mean"], [r["standalone_mean"] for r in data["table5"]])
    assert close(fig["table5"]["sd"], [r["standalone_sd"] for r in data["table5"]])
    assert fig["table5"]["points"] == [[c["standalone_test"] for c in r["per_seed"]] for r in data["table5"]]
    summary = json.loads((study / "summary.json").read_text())
    assert summary["table4"] == table and summary["table5"] == data["table5"] and "runs" not in summary
    assert [x["command"].split()[:2] for x in summary["sessions"]] == [["hnas", "study"]] * 2  # killed, resumed
    assert summary["wall_s"] == pytest.approx(sum(x["wall_s"] for x in summary["sessions"]))
    assert "ranking consistency" in again.stdout and "Table 5" in again.stdout
    # the ranking of one run reuses nothing it need not; other search settings in the study folder are refused
    one = run_cli("rank", str(runs[2]), "--k", "3", "--pick", "front", "--seeds", "2", "--epochs", "2", env=ONE_THREAD)
    assert one.returncode == 0, one.stderr
    assert "Kendall tau" in one.stdout and "ceiling" in one.stdout
    other = run_cli(*study_args(tiny_lut, space, study, "--population", "8"))
    assert other.returncode == 2 and "population" in other.stderr and "differ" in other.stderr


def test_rank_settings_are_checked():
    bad = run_cli("rank", "runs/none", "--pick", "nowhere")
    assert bad.returncode == 2 and "--pick nowhere: must be one of front, space, band, both, all" in bad.stderr


def test_a_study_refused_for_its_table_or_band_writes_nothing(tiny_lut, tmp_path):
    study = tmp_path / "study"
    missing = run_cli("study", str(study), "--lut", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr and not study.exists()
    tiny_space().save(tmp_path / "tiny.json")
    args = study_args(tiny_lut, tmp_path / "tiny.json", study)
    args[args.index("--lat-rel") + 1] = "100:200"  # a band no architecture of the space reaches
    nowhere = run_cli(*args)
    assert nowhere.returncode == 2, nowhere.stderr
    assert "no architecture" in nowhere.stderr and not study.exists()


def test_the_committed_study_summary_holds_tables_4_and_5_and_fig_6():
    """benchmarks/results/study-mnist5k-translated.json: the measured study the README quotes."""
    from pathlib import Path

    d = json.loads((Path(__file__).parents[1] / "benchmarks/results/study-mnist5k-translated.json").read_text())
    t4 = d["table4"]
    assert [(r["M"], r["pick"], r["k"], r["seeds"]) for r in t4] == [(m, "band", 11, 3) for m in (2, 3, 4)]
    for r in t4:
        for name in ("kendall_tau", "spearman_rho", "ceiling_tau"):
            lo, hi = r[name + "_ci"]
            assert lo <= r[name] <= hi
    assert len({r["ceiling_tau"] for r in t4}) == 1  # one truth for every M
    assert t4[0]["ceiling_tau"] >= 0.6 and t4[0]["ceiling_tau_ci"][0] > 0  # the truth ranks (issue 24)
    t5 = d["table5"]
    assert [r["M"] for r in t5[:3]] == [2, 3, 4] and all(len(r["per_seed"]) == 3 for r in t5)
    for r in t5:
        assert r["standalone_mean"] == pytest.approx(np.mean([c["standalone_test"] for c in r["per_seed"]]))
    for m in ("2", "3", "4"):
        assert sorted(d["fig6"][m]) == ["0", "1", "2"]
        assert all(c["epoch"] == list(range(1, 16)) and len(c["val_acc"]) == 15 for c in d["fig6"][m].values())
    assert not any(w.startswith("/") for x in d["sessions"] for w in x["command"].split())  # no machine paths
    assert d["wall_s"] == pytest.approx(sum(s["wall_s"] for s in d["sessions"]))
