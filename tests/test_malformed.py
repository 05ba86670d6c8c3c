"""Every file kind hnas reads (space, architecture, LUT, run config, results), broken in every usual way
(truncated, not a mapping, a required key missing, wrong types, NaN, negative or zero figures), fed to every
command that reads it: exit 2, one line, no traceback, and no file written or changed."""

from __future__ import annotations

import copy
import hashlib
import json
import math
import sys
from pathlib import Path

import pytest

from tests.harness import run_cli
from tests.tiny import tiny_space

ARCH = "K3E1|K3E3-ID"


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def _hnas(*args: str) -> tuple[int, str]:
    """Run the CLI in this process (as `hnas ARGS`): exit code and stderr; an exception escaping main fails."""
    import contextlib
    import io

    from hnas.cli import main

    err = io.StringIO()
    argv = sys.argv
    sys.argv = ["hnas", *args]
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.argv = argv
    return code, err.getvalue()


def _variants(good: dict, required: list[str], figures: list[tuple], types: bool = True) -> dict[str, str]:
    """Broken copies of a JSON document: name -> text."""
    text = json.dumps(good)
    out = {"truncated": text[: len(text) // 2], "not a mapping": "[1, 2]", "empty": ""}
    for key in required:
        broken = copy.deepcopy(good)
        del broken[key]
        out[f"without {key}"] = json.dumps(broken)
    if types:
        for key, value in good.items():
            wrong = {"x": 1} if value is None else 5 if isinstance(value, str | list | dict) else "five"
            out[f"{key} of the wrong type"] = json.dumps({**good, key: wrong})
    for path, label, *allowed_zero in figures:
        for bad in (math.nan, -5.0, "1.0") if allowed_zero else (math.nan, -5.0, 0.0, "1.0"):
            broken = copy.deepcopy(good)
            node = broken
            for p in path[:-1]:
                node = node[p]
            node[path[-1]] = bad
            out[f"{label} = {bad!r}"] = json.dumps(broken)
    return out


def _check(workdir: Path, broken_file: Path, variants: dict[str, str], commands: list[list[str]]) -> None:
    for name, text in variants.items():
        broken_file.write_text(text)
        before = _tree(workdir)
        for args in commands:
            code, err = _hnas(*args)
            lines = err.strip().splitlines()
            what = f"{broken_file.name} {name}: hnas {' '.join(args)}"
            assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (what, err)
            assert "Traceback" not in err
            assert _tree(workdir) == before, f"{what} changed files"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_lut):
    """A space file, an architecture file, a LUT and a finished two-stage search run, all valid."""
    root = tmp_path_factory.mktemp("malformed")
    tiny_space().save(root / "space.json")
    (root / "arch.json").write_text(json.dumps({"space": "tiny", "arch": ARCH}))
    (root / "lut.json").write_bytes(Path(tiny_lut).read_bytes())
    args = ["search", "--lut", str(root / "lut.json"), "--space", str(root / "space.json"), "--stages", "2"]
    args += ["--lat", "0:1000", "--epochs", "1", "--lr", "0.05", "--population", "4", "--generations", "2"]
    args += ["--batch-size", "128", "--resolution", "16", "--bn-images", "32", "--out", str(root / "run")]
    done = run_cli(*args)
    assert done.returncode == 0, done.stderr
    return root


def test_broken_space_files(workdir):
    good = json.loads((workdir / "space.json").read_text())
    variants = _variants(good, ["skeleton"], [(("skeleton", "resolution"), "resolution")], types=True)
    variants["resolution 64.5"] = json.dumps({**good, "skeleton": {**good["skeleton"], "resolution": 64.5}})
    stage = {**good["skeleton"]["stages"][0], "expand": 0}
    variants["expand 0"] = json.dumps({**good, "skeleton": {**good["skeleton"], "stages": [stage]}})
    variants["an op that is a number"] = json.dumps({**good, "candidates": [[5]] * len(good["candidates"])})
    f = workdir / "broken-space.json"
    w, s = str(workdir), str(f)
    commands = [
        ["space", "show", s],
        ["space", "sample", s],
        ["arch", "info", ARCH, "--space", s],
        ["lut", "show", f"{w}/lut.json", "--space", s],
        ["lut", "build", "--space", s, "--out", f"{w}/new-lut.json"],
        ["search", "--space", s, "--lut", f"{w}/lut.json", "--lat", "0:1000", "--out", f"{w}/new-run"],
    ]
    _check(workdir, f, variants, commands)


def test_broken_architecture_files(workdir):
    good = {"space": "tiny", "arch": ARCH, "ops": ["IBConv_K3_E1", "IBConv_K3_E3", "Identity"]}
    variants = _variants(good, [], [])
    variants["neither ops nor arch"] = json.dumps({"space": "tiny"})
    variants["a misplaced stage mark"] = json.dumps({"arch": "K3E1-K3E3|ID"})
    f = workdir / "broken-arch.json"
    w, s = str(workdir), f"{workdir}/space.json"
    commands = [
        ["arch", "info", str(f), "--space", s],
        ["verify", "--arch", str(f), "--space", s, "--lut", f"{w}/lut.json"],
        ["train", str(f), "--space", s, "--out", f"{w}/new-train"],
    ]
    _check(workdir, f, variants, commands)


def test_broken_luts(workdir):
    good = json.loads((workdir / "lut.json").read_text())
    key = next(iter(good["entries"]))
    figures = [(("entries", key, "median_ms"), "median_ms")]
    variants = _variants(good, ["entries", "device", "settings"], figures)
    variants["entries as a list"] = json.dumps({**good, "entries": list(good["entries"].values())})
    entry = {k: v for k, v in good["entries"][key].items() if k != "median_ms"}
    variants["an entry without its median"] = json.dumps({**good, "entries": {**good["entries"], key: entry}})
    variants["another schema"] = json.dumps({**good, "schema": "hnas.lut/0"})
    f = workdir / "broken-lut.json"
    w, s, L = str(workdir), f"{workdir}/space.json", str(f)
    commands = [
        ["lut", "show", L],
        ["lut", "diff", L, f"{w}/lut.json"],
        ["lut", "diff", f"{w}/lut.json", L],
        ["lut", "refresh", "--lut", L],
        ["lut", "validate", "--lut", L, "--space", s, "-n", "5", "--fit", "2", "--out", f"{w}/new-validate"],
        ["arch", "info", ARCH, "--space", s, "--lut", L],
        ["search", "--lut", L, "--space", s, "--lat", "0:1000", "--out", f"{w}/new-run"],
        ["verify", "--arch", ARCH, "--space", s, "--lut", L],
        ["demo", "--lut", L, "--space", s, "--out", f"{w}/new-demo"],
    ]
    _check(workdir, f, variants, commands)


def test_broken_run_configs(workdir):
    f = workdir / "run" / "config.json"
    original = f.read_text()
    good = json.loads(original)
    variants = _variants(
        good, ["run", "search"], [(("search", "p_th"), "p_th", "0 is allowed"), (("run", "train", "lr"), "lr")]
    )
    variants["a key from another version"] = json.dumps({**good, "run": {**good["run"], "flops": 3}})
    variants["a broken space inside"] = json.dumps({**good, "run": {**good["run"], "space": {"skeleton": 5}}})
    run = str(workdir / "run")
    commands = [["search", "--out", run], ["report", run], ["verify", run], ["rank", run]]
    try:
        _check(workdir, f, variants, commands)
    finally:
        f.write_text(original)


def test_broken_results(workdir):
    run = workdir / "run"
    commands_of = {
        run / "results.json": [["report", str(run)], ["verify", str(run)]],
        run / "stage2" / "search.json": [["report", str(run)], ["rank", str(run)], ["search", "--out", str(run)]],
    }
    for f, commands in commands_of.items():
        original = f.read_text()
        good = json.loads(original)
        figures = (
            [(("archive", 0, "latency_ms"), "latency")]
            if "archive" in good
            else [(("best", 0, "latency_ms"), "latency")]
        )
        required = ["archive", "pruned_space"] if "archive" in good else ["best", "stages"]
        try:
            _check(workdir, f, _variants(good, required, figures), commands)
        finally:
            f.write_text(original)


def _probe(workdir: Path, commands: list[list[str]]) -> None:
    """Each command is refused in one line, exit 2, no traceback, and nothing under `workdir` is written."""
    for args in commands:
        before = _tree(workdir)
        code, err = _hnas(*args)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, err)
        assert _tree(workdir) == before, f"hnas {' '.join(args)} changed files"


def _run_folder(folder: Path, data: str = "digits", resolution: int = 16, space: dict | None = None) -> None:
    """A supernet run folder as `hnas supernet train` starts it (config.json only)."""
    from hnas.settings import ProxySettings, RunConfig, TrainConfig

    cfg = RunConfig(
        space=tiny_space().to_dict(),
        data=data,
        proxy=ProxySettings(resolution=16, width=0.5, bn_images=32, eval_batch=64, val_archs=0),
        train=TrainConfig(epochs=1, lr=0.05, batch_size=64),
    ).to_dict()
    cfg["proxy"]["resolution"] = resolution
    cfg["space"] = space or cfg["space"]
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))


def test_tiny_inputs_that_asked_for_terabytes_or_tracebacks_are_one_line(tmp_path, tiny_lut, monkeypatch):
    """The probes of issue 23 ("Tracebacks instead of one line"), each with the command that hit it; memory is that
    of a 16 GiB machine, whatever this one has."""
    import os

    from PIL import Image

    monkeypatch.setattr("hnas.core.host.host_available", lambda: 16 * 2**30)
    w = tmp_path
    good = tiny_space().to_dict()
    space = w / "space.json"
    space.write_text(json.dumps(good))
    (w / "binary.json").write_bytes(os.urandom(2000))
    (w / "binary.yaml").write_bytes(b"\xff\xfe" + os.urandom(2000))
    stage = good["skeleton"]["stages"][-1]
    many = {**good, "skeleton": {**good["skeleton"], "stages": [{**stage, "repeats": 100000}]}}
    many.pop("candidates")
    many["ops"] = ["IBConv_K3_E3", "Identity"]
    (w / "repeats.json").write_text(json.dumps(many))
    wide = {**many, "skeleton": {**good["skeleton"], "stages": [{**stage, "out_channels": 10**11, "repeats": 1}]}}
    (w / "wide.json").write_text(json.dumps(wide))
    lut_text = Path(tiny_lut).read_text()
    key = next(iter(json.loads(lut_text)["entries"]))
    huge = json.loads(lut_text)
    huge["entries"][key]["median_ms"] = 0.5
    (w / "huge.json").write_text(json.dumps(huge).replace('"median_ms": 0.5', '"median_ms": ' + "1" + "0" * 400, 1))
    (w / "arch.json").write_text(json.dumps({"space": "basic", "arch": ARCH}))
    (w / "cifar").mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (w / "cifar" / name).write_bytes(os.urandom(3000))
    for split in ("train", "val"):
        for c in ("n01", "n02"):
            (w / "inet" / split / c).mkdir(parents=True)
            (w / "inet" / split / c / "0.JPEG").write_bytes(b"not an image" * 10)
            (w / "one" / split / c).mkdir(parents=True)  # one good image per class: all held out for val
            Image.new("RGB", (8, 8)).save(w / "one" / split / c / "0.png")
            (w / "fine" / split / c).mkdir(parents=True)
            for i in range(60 if split == "train" else 1):  # 50 of each class held out: 100 images evaluated
                Image.new("RGB", (8, 8), (i * 4, 0, 0)).save(w / "fine" / split / c / f"{i}.png")
    _run_folder(w / "run-res", resolution=100000)
    _run_folder(w / "run-space", space={**good, "skeleton": {**good["skeleton"], "resolution": 100000}})
    _run_folder(w / "run-digits-4096", resolution=4096)
    _run_folder(w / "run-inet-4096", data=f"imagenet:{w / 'fine'}", resolution=4096)
    s, L, out = str(space), str(tiny_lut), str(w / "new")
    seed = "99999999999999999999"
    _probe(
        w,
        [
            ["space", "show", str(w / "binary.json")],
            ["space", "show", str(w / "binary.yaml")],
            ["space", "show", str(w / "repeats.json")],
            ["space", "show", str(w / "repeats.json"), "--json"],
            ["lut", "build", "--space", str(w / "wide.json"), "--out", f"{out}0.json"],
            ["lut", "show", str(w / "huge.json")],
            ["arch", "info", ARCH, "--space", s, "--lut", str(w / "huge.json")],
            ["supernet", "train", "--space", s, "--seed", seed, "--out", f"{out}1"],
            ["search", "--space", s, "--lut", L, "--lat", "0:1000", "--seed", seed, "--out", f"{out}2"],
            ["space", "sample", s, "--seed", seed],
            ["space", "sample", "basic", "-n", "100000000000"],
            ["lut", "validate", "--lut", L, "--space", s, "-n", "100000000000", "--out", f"{out}3"],
            ["supernet", "train", "--space", s, "--data", f"cifar10:{w / 'cifar'}", "--out", f"{out}4"],
            ["supernet", "train", "--space", s, "--data", f"imagenet:{w / 'inet'}", "--out", f"{out}5"],
            ["supernet", "train", "--space", s, "--data", f"imagenet:{w / 'one'}", "--out", f"{out}8"],
            ["profile", "--op", "IBConv_K5_E6", "--in", "100000x100000x3", "--out-ch", "40"],
            ["profile", "--op", "IBConv_K5_E6", "--in", "4096x4096x10000", "--out-ch", "10000"],
            ["supernet", "eval", str(w / "run-res"), "--arch", ARCH],
            ["supernet", "eval", str(w / "run-space"), "--arch", ARCH],
            ["supernet", "eval", str(w / "run-digits-4096"), "--arch", ARCH],
            ["supernet", "eval", str(w / "run-inet-4096"), "--arch", ARCH],
            ["arch", "info", str(w / "arch.json"), "--space", s],
            ["supernet", "train", "--space", s, "--lat", "1:2", "--out", f"{out}6"],
            ["supernet", "train", "--space", s, "--lut", L, "--lat", "0:0.0001", "--out", f"{out}7"],
        ],
    )
