"""A run folder is tied to its latency table by absolute path and sha256: it opens (verify, report, resume) from any
directory, follows a moved copy of its table, and refuses a missing or changed table in one line."""

import json
import shutil
from dataclasses import asdict

from hnas.core.io import sha256_file
from tests.harness import ROOT, run_cli
from tests.tiny import tiny_space

CHECKOUT = {"PYTHONPATH": str(ROOT)}  # this checkout's hnas, whatever the working directory
SEARCH = ["--stages", "2", "--lat", "0:1000", "--epochs", "1", "--lr", "0.05", "--population", "4"]
SEARCH += ["--generations", "1", "--batch-size", "128", "--resolution", "16", "--bn-images", "32"]


def test_a_run_opens_from_anywhere_on_its_own_table_and_no_other(tiny_lut, tmp_path):
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    home.mkdir()
    elsewhere.mkdir()
    shutil.copy(tiny_lut, home / "lut.json")
    tiny_space().save(home / "tiny.json")
    started = run_cli(
        "search", "--lut", "lut.json", "--space", "tiny.json", *SEARCH, "--out", "run", cwd=home, env=CHECKOUT
    )
    assert started.returncode == 0, started.stderr
    run, table, sha = home / "run", home / "lut.json", sha256_file(home / "lut.json")
    cfg = json.loads((run / "config.json").read_text())["run"]
    assert (cfg["lut"], cfg["lut_sha256"]) == (str(table.resolve()), sha)
    (elsewhere / "lut.json").write_text("{}")  # the same relative name elsewhere is never taken for it
    verified = run_cli("verify", str(run), "--json", cwd=elsewhere, env=CHECKOUT)
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["lut"] == str(table.resolve())

    moved = tmp_path / "tables" / "moved.json"
    moved.parent.mkdir()
    table.rename(moved)
    gone = run_cli("report", str(run), cwd=elsewhere, env=CHECKOUT)
    assert gone.returncode == 2 and "Traceback" not in gone.stderr, gone.stderr
    assert f"{run} was started with the latency table {table.resolve()} (sha256 {sha[:16]}), which is not there" in (
        gone.stderr
    )
    assert "pass --lut PATH" in gone.stderr
    followed = run_cli("report", str(run), "--lut", str(moved), cwd=elsewhere, env=CHECKOUT)
    assert followed.returncode == 0, followed.stderr
    cfg = json.loads((run / "config.json").read_text())["run"]
    assert (cfg["lut"], cfg["lut_sha256"]) == (str(moved), sha)  # the run follows its table from now on

    other = tmp_path / "other.json"
    data = json.loads(moved.read_text())
    key = next(iter(data["entries"]))
    data["entries"][key]["median_ms"] *= 2
    other.write_text(json.dumps(data))
    wrong = run_cli("search", "--out", str(run), "--lut", str(other), cwd=elsewhere, env=CHECKOUT)
    assert wrong.returncode == 2 and f"is not the table {run} was started with ({moved}, sha256 {sha[:16]})" in (
        wrong.stderr
    )
    shutil.copy(other, moved)  # the table itself changed
    changed = run_cli("verify", str(run), cwd=elsewhere, env=CHECKOUT)
    assert changed.returncode == 2 and "which has changed since" in changed.stderr
    assert sha[:16] in changed.stderr and sha256_file(moved)[:16] in changed.stderr
    assert not (run / "verify.json").exists() or json.loads((run / "verify.json").read_text())["lut"] != str(other)


def test_a_run_of_an_older_version_records_its_table_when_opened(tiny_lut, tmp_path):
    home = tmp_path / "home"
    (home / "run").mkdir(parents=True)
    shutil.copy(tiny_lut, home / "lut.json")
    from hnas.recipes import RECIPES
    from hnas.settings import RunConfig, SearchSettings
    from hnas.workflows.search import open_search

    recipe = RECIPES["embedded"]
    cfg = RunConfig(tiny_space().to_dict(), "digits", recipe.proxy_settings(), recipe.train_config(), "lut.json")
    old = {k: v for k, v in cfg.to_dict().items() if k != "lut_sha256"}  # relative, no sha256: as before
    search = SearchSettings(2, [1], [0.05])
    (home / "run" / "config.json").write_text(json.dumps({"run": old, "search": asdict(search)}))
    gone = run_cli("search", "--out", str(home / "run"), cwd=tmp_path, env=CHECKOUT)  # its relative path: not here
    assert gone.returncode == 2 and "started with the latency table lut.json, which is not there" in gone.stderr
    import os

    here = os.getcwd()
    try:
        os.chdir(home)  # where it was started: it opens, and records its table
        pipe = open_search("run", log=lambda _: None, progress=False)
    finally:
        os.chdir(here)
    assert pipe.sn.config.lut == str((home / "lut.json").resolve())
    saved = json.loads((home / "run" / "config.json").read_text())["run"]
    assert (saved["lut"], saved["lut_sha256"]) == (str((home / "lut.json").resolve()), sha256_file(home / "lut.json"))
