import json

import numpy as np
import pytest

from hnas.rank import draw_from_space, pick_along_front, plot_study
from hnas.rankstats import kendall_tau, ranking_stats, spearman_rho
from hnas.spec.arch import sample
from tests.conftest import kill_cli_when, run_cli
from tests.test_predict import tiny_lut  # noqa: F401 - fixture
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
    kill_cli_when(args, lambda: (out / "checkpoint.pt").is_file())
    assert not (out / "result.json").is_file()
    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
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
    from hnas.rank import train_standalone
    from hnas.settings import ProxySettings, TrainConfig

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
        "rank",
        "--study",
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
        "--k",
        "3",
        "--pick",
        "both",
        "--seeds",
        "2",
        "--epochs",
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


def test_rank_study_resumes_after_a_kill_and_reports_repeats_intervals_and_ceiling(tiny_lut, tmp_path):  # noqa: F811
    from hnas.spec.arch import parse_arch
    from hnas.workflows.search import open_search

    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    study = tmp_path / "study"
    args = study_args(tiny_lut, space, study)
    m3_trained = lambda: list((study / "M3" / "rank" / "standalone").glob("*/seed*/result.json"))  # noqa: E731
    kill_cli_when(args, lambda: bool(m3_trained()), env=ONE_THREAD)
    assert (study / "M2" / "rank" / "rank.json").is_file() and not (study / "M4").exists(), "killed elsewhere"
    before = {p: p.read_bytes() for p in study.glob("M[23]/**/*.json")}
    again = run_cli(*args, env=ONE_THREAD)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("(resuming)") == 2  # M2 and M3
    assert again.stdout.count("stage 1: training") == 1 and again.stdout.count("CES over") == 3  # M4: 3 searches
    for path, data in before.items():  # finished pieces kept (the M2 ranking recomputed to the same figures)
        assert path.read_bytes() == data, f"{path} changed on resume"
    data = json.loads((study / "study.json").read_text())
    table = data["table"]
    assert [(r["M"], r["pick"]) for r in table] == [(m, p) for m in (2, 3, 4) for p in ("front", "space")]
    sched = [json.loads((study / f"M{m}" / "config.json").read_text())["search"]["epochs"] for m in (2, 3, 4)]
    assert [sum(s) for s in sched] == [3, 3, 3]
    for row, (run, pick) in zip(table, [(r, p) for r in data["runs"] for p in ("front", "space")]):
        p = run["picks"][pick]
        assert row["k"] == p["k"] == 3 and row["seeds"] == 2 and row["initial_size"] == str(tiny_space().size())
        assert int(row["space_size"]) <= tiny_space().size() and row["resamples"] == 500
        for name in ("kendall_tau", "spearman_rho", "kendall_tau_loss", "kendall_tau_seed", "ceiling_tau"):
            lo, hi = row[name + "_ci"]
            assert row[name] is None or lo <= row[name] <= hi
        for a in p["architectures"]:
            top1 = [r["test_top1"] for r in a["repeats"]]
            assert [r["seed"] for r in a["repeats"]] == [0, 1] and all(r["test_loss"] > 0 for r in a["repeats"])
            assert a["standalone_test"] == pytest.approx(np.mean(top1))
            assert a["standalone_test_std"] == pytest.approx(np.std(top1, ddof=1))
        if pick == "space":
            assert len({a["arch"] for a in p["architectures"]}) == 3
    repeats = [a["repeats"] for run in data["runs"] for p in run["picks"].values() for a in p["architectures"]]
    assert any(r[0]["test_top1"] != r[1]["test_top1"] for r in repeats), "two seeds trained the same network"
    # space draws are scored on the final supernet with the run's own evaluator
    accuracy, final_space = open_search(study / "M4", log=lambda _: None, progress=False).final_accuracy()
    drawn = data["runs"][2]["picks"]["space"]["architectures"]
    assert accuracy([parse_arch(a["arch"], final_space) for a in drawn]).tolist() == [a["one_shot"] for a in drawn]
    # the figure shows the table: bars, intervals, dots, ceiling and band, one scatter point per architecture
    for fig in (data["figure"], plot_study(tmp_path / "again.png", table, data["runs"])):
        assert fig["labels"] == [f"M = {r['M']}\n{r['pick']}" for r in table]
        assert_figure_shows(fig, table)
        assert sorted(len(v) for v in fig["points"].values()) == [3] * 6
    assert (study / "study.png").stat().st_size > 1000 and "ranking consistency" in again.stdout
    # the ranking of one run reuses the study's trainings; other search settings in the study folder are refused
    trainings = sorted(study.glob("M4/rank/standalone/*/seed*"))
    one = run_cli(
        "rank", str(study / "M4"), "--k", "3", "--pick", "both", "--seeds", "2", "--epochs", "2", env=ONE_THREAD
    )
    assert one.returncode == 0, one.stderr
    assert "Kendall tau" in one.stdout and "ceiling" in one.stdout
    assert sorted(study.glob("M4/rank/standalone/*/seed*")) == trainings
    other = run_cli(*study_args(tiny_lut, space, study, "--population", "8"))
    assert other.returncode == 2 and "population" in other.stderr and "differ" in other.stderr


def test_rank_settings_are_checked():
    bad = run_cli("rank", "runs/none", "--pick", "nowhere")
    assert bad.returncode == 2 and "--pick nowhere: must be one of front, space, both" in bad.stderr
