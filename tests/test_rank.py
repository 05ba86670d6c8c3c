import json

import numpy as np
import pytest

from hnas.rank import correlations, pick_along_front
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


def test_correlations():
    c = correlations([0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.8, 0.7])
    assert c["kendall_tau"] == pytest.approx(2 / 3) and c["spearman_rho"] == pytest.approx(0.8)


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


def test_rank_study_on_the_embedded_data(tiny_lut, tmp_path):  # noqa: F811
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    study = tmp_path / "study"
    out = run_cli(
        "rank",
        "--study",
        str(study),
        "--lut",
        str(tiny_lut),
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
        "--epochs",
        "2",
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
    )
    assert out.returncode == 0, out.stderr
    data = json.loads((study / "study.json").read_text())
    assert [r["M"] for r in data["table"]] == [2, 3, 4]
    for run in data["runs"]:
        assert run["k"] == 3 and all("standalone_test" in a for a in run["architectures"])
    sched = [json.loads((study / f"M{m}" / "config.json").read_text())["search"]["epochs"] for m in (2, 3, 4)]
    assert [sum(s) for s in sched] == [3, 3, 3]
    assert (study / "study.png").stat().st_size > 1000 and "ranking consistency" in out.stdout
    again = run_cli("rank", str(study / "M4"), "--k", "3", "--epochs", "2")  # finished work is reused
    assert again.returncode == 0 and "Kendall tau" in again.stdout
