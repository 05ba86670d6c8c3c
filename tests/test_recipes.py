"""Recipes by data and the memory estimate: the defaults fit the machine, and what cannot fit is refused in one
line naming settings that do, before anything is loaded or written."""

from __future__ import annotations

import json
import re

import pytest

from hnas.core.errors import HnasError
from hnas.memory import activation_bytes, footprint, largest_path, require_fit
from hnas.recipes import RECIPES, data_kind, recipe_for, split_epochs
from hnas.settings import ProxySettings, SearchSettings, TrainConfig
from hnas.spec.arch import sample
from hnas.spec.space import load_space
from hnas.supernet import proxy_space
from tests.harness import run_cli


def test_each_kind_of_data_has_its_recipe(tmp_path):
    (tmp_path / "cifar").mkdir()
    (tmp_path / "cifar" / "data_batch_1").write_bytes(b"")
    (tmp_path / "inet" / "train").mkdir(parents=True)
    assert [data_kind(d) for d in ("digits", "mnist5k", "cifar10:/x", "imagenet:/x")] == [
        "embedded",
        "embedded",
        "cifar10",
        "imagenet",
    ]
    assert data_kind(str(tmp_path / "cifar")) == "cifar10" and data_kind(str(tmp_path / "inet")) == "imagenet"
    with pytest.raises(HnasError, match="unknown data 'mnist'"):
        recipe_for("mnist")
    paper = recipe_for("imagenet:/data")
    assert paper.proxy_settings() == ProxySettings() and paper.train_config() == TrainConfig()
    assert paper.schedule(4) == (SearchSettings().epochs, SearchSettings().lrs)  # the paper's 120/80/40
    assert paper.schedule(3) == ([160, 80], [0.5, 0.1]) and paper.schedule(2) == ([240], [0.5])


def test_given_options_win_over_the_recipe_and_the_rest_keep_their_one_default():
    r = RECIPES["embedded"]
    p = r.proxy_settings(resolution=24, width=None)
    assert (p.resolution, p.width, p.bn_images) == (24, 0.5, 256)
    assert p.per_class == ProxySettings().per_class  # not in the recipe: the settings' own default
    t = r.train_config(batch_size=64)
    assert (t.batch_size, t.epochs, t.lr, t.warmup_epochs) == (64, 12, 0.05, 4)
    assert t.label_smoothing == TrainConfig().label_smoothing
    assert r.train_config(epochs=3).warmup_epochs == 1  # the recipe's warm-up shrinks with fewer epochs given
    assert r.train_config(epochs=0).warmup_epochs == 0
    assert r.schedule(4) == ([12, 6, 4], [0.05, 0.02, 0.02])
    with pytest.MonkeyPatch.context() as mp:  # torchrun: the recipe's batch is the total, a given one per process
        mp.setenv("WORLD_SIZE", "2")
        assert recipe_for("imagenet:/x").train_config().batch_size == 512
        assert recipe_for("imagenet:/x").train_config(batch_size=100).batch_size == 100
    assert r.schedule(2) == ([22], [0.05]) and sum(r.schedule(3)[0]) == 22
    assert split_epochs(240, 4) == [120, 80, 40]


def test_the_estimate_follows_batch_and_resolution_and_bounds_every_path():
    basic = load_space("basic")
    small = proxy_space(basic, 32, 1.0)
    big = proxy_space(basic, 64, 1.0)
    a32 = activation_bytes(small, 8)
    assert activation_bytes(small, 16) == 2 * a32  # linear in the batch
    assert 3.5 < activation_bytes(big, 8) / a32 < 4.5  # about quadratic in the resolution
    largest = largest_path(small)
    assert all(op.expand == 6 for op in largest.ops[1:])
    for arch in sample(small, 20, __import__("numpy").random.default_rng(0)):
        assert activation_bytes(small, 8, arch) <= activation_bytes(small, 8, largest)
    f = footprint(small, "mnist5k", 8)
    assert f.data == 5000 * 3 * 32 * 32 * 4  # the embedded set as float32 tensors at the proxy resolution
    assert f.host == f.activations + f.weights + f.data + f.runtime


def test_a_configuration_too_big_is_refused_with_settings_that_fit(monkeypatch):
    import hnas.core.host

    monkeypatch.setattr(hnas.core.host, "host_available", lambda: 16 * 2**30)  # what other processes use varies
    space = proxy_space(load_space("basic"), 224, 1.0)
    with pytest.raises(HnasError) as err:
        require_fit(space, "digits", 1024)
    line = str(err.value)
    assert "\n" not in line and "--resolution 224 --batch-size 1024 needs about" in line
    batch = int(re.search(r"--batch-size (\d+) or less at --resolution 224", line).group(1))
    res = int(re.search(r"--resolution (\d+) or less at --batch-size 1024", line).group(1))
    budget = hnas.core.host.host_available() * 0.9
    assert footprint(space, "digits", batch).host <= budget < footprint(space, "digits", 2 * batch).host
    assert footprint(proxy_space(load_space("basic"), res, 1.0), "digits", 1024).host <= budget
    # torchrun's processes on one machine share it
    need = footprint(space, "digits", batch).host
    if need > budget / 2:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("LOCAL_WORLD_SIZE", "2")
            with pytest.raises(HnasError, match="for each of 2 processes"):
                require_fit(space, "digits", batch)


def test_the_command_the_issue_ran_now_fits_and_the_paper_size_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    # the defaults and the memory check need no training: 0 epochs passes the check, loads the data, builds the
    # supernet and writes config.json (a real epoch here took two minutes on 2 cores)
    r = run_cli("supernet", "train", "--space", "basic", "--epochs", "0", "--out", str(out))
    assert r.returncode == 0, r.stderr + r.stdout
    cfg = json.loads((out / "config.json").read_text())
    emb = RECIPES["embedded"]
    assert (
        cfg["proxy"]["resolution"] == emb.proxy["resolution"] and cfg["train"]["batch_size"] == emb.train["batch_size"]
    )
    assert cfg["train"]["epochs"] == 0 and json.loads((out / "history.json").read_text()) == []
    big = tmp_path / "big"
    r = run_cli(
        "supernet", "train", "--space", "large", "--resolution", "224", "--batch-size", "1024", "--out", str(big)
    )
    lines = (r.stdout + r.stderr).strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr
    assert "needs about" in lines[0] and "GB are available on this machine: use --batch-size" in lines[0]
    assert not big.exists()


def test_help_names_each_recipes_default():
    r = run_cli("search", "--help")
    text = " ".join(r.stdout.split())
    assert "Default by --data: digits/mnist5k 16, mnist5k-translated 32, cifar10 32, imagenet 224." in text
    assert "Default by --data: digits/mnist5k 32, mnist5k-translated 128, cifar10 256, imagenet 1024." in text


def test_an_existing_run_opens_anywhere_and_is_checked_when_it_trains(tmp_path):
    """Reading a run (verify, rank, report) never refuses for memory; training it on a machine too small does."""
    from dataclasses import asdict

    from hnas.core.io import atomic_write_json
    from hnas.pipeline import Pipeline
    from hnas.settings import RunConfig

    run = RunConfig(
        space=load_space("basic").to_dict(),
        data="digits",
        proxy=ProxySettings(resolution=224),
        train=TrainConfig(batch_size=4096, epochs=1),
    )
    search = SearchSettings(stages=2, epochs=[1], lrs=[0.1])
    atomic_write_json(tmp_path / "config.json", {"run": run.to_dict(), "search": asdict(search)})
    pipe = Pipeline(tmp_path, run, search, latency=None, progress=False)  # opening reads nothing heavy
    with pytest.raises(HnasError, match="--resolution 224 --batch-size 4096 needs about"):
        pipe.run()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_an_explicit_zero_is_a_value_held_to_its_check_not_the_recipe_default(tmp_path):
    """None means "not given"; 0 is a value: `--population 0` is refused in one line, never run with 24."""
    assert RECIPES["embedded"].search_settings(population=None).population == 24
    with pytest.raises(HnasError, match="--population 0: must be a number of at least 2"):
        RECIPES["embedded"].search_settings(population=0)
    lut, out = "lut/local-amd-epyc.json", tmp_path / "run"
    base = ["search", "--lut", lut, "--lat", "20:30", "--out", str(out)]
    for flag, value, message in (
        ("--population", "0", "--population 0: must be a number of at least 2"),
        ("--generations", "0", "--generations 0: must be a number of at least 1"),
        ("--batch-size", "0", "--batch-size 0: must be a number of at least 1"),
        ("--epochs", "", "--epochs '': write comma-separated numbers"),
    ):
        res = run_cli(*base, flag, value)
        assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr, (flag, res.stderr)
        assert not out.exists()
    study = tmp_path / "study"
    for flag, value, message in (  # one through the search settings, one through the training settings
        ("--generations", "0", "--generations 0: must be a number of at least 1"),
        ("--lr", "0", "--lr 0: must be a number above 0"),
    ):
        res = run_cli("study", str(study), "--lut", lut, flag, value)
        assert res.returncode == 2 and message in res.stderr, (flag, res.stderr)
        assert not study.exists()
    table = tmp_path / "host.json"
    demo = run_cli("demo", "--out", str(tmp_path / "demo"), "--lut", str(table), "--population", "0")
    assert demo.returncode == 2 and "--population 0: must be a number of at least 2" in demo.stderr, demo.stderr
    assert not table.exists() and not (tmp_path / "demo").exists()  # refused before the host table is measured
