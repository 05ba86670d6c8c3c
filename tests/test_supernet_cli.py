import json

import numpy as np
import pytest

from hnas.spec.arch import sample
from tests.harness import kill_and_resume, run_cli
from tests.tiny import tiny_space


@pytest.mark.slow
def test_supernet_trains_on_the_embedded_data_is_killed_and_resumes(tmp_path):
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    run = tmp_path / "run"
    args = [
        "supernet",
        "train",
        "--out",
        str(run),
        "--space",
        str(space),
        "--data",
        "digits",
        "--epochs",
        "8",
        "--lr",
        "0.05",
        "--batch-size",
        "64",
        "--resolution",
        "16",
        "--warmup-epochs",
        "2",  # killed inside the warm-up: the resumed run crosses into uniform sampling
    ]
    ck = run / "checkpoint.pt"
    unfinished = lambda: ck.is_file() and not (run / "history.json").is_file()  # noqa: E731 - else raise --epochs
    again = kill_and_resume(args, ck.is_file, unfinished).again
    assert "resuming" in again.stdout
    history = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in history] == list(range(8))
    assert json.loads((run / "config.json").read_text())["train"]["warmup_epochs"] == 2
    assert all(h["val_acc"] is not None for h in history)
    arch = str(sample(tiny_space(), 1, np.random.default_rng(0))[0])
    ev = run_cli("supernet", "eval", str(run), "--arch", arch, "--json")
    assert ev.returncode == 0, ev.stderr
    (row,) = json.loads(ev.stdout)
    assert row["arch"] == arch and 0 <= row["top1"] <= 1


def test_supernet_cli_errors_are_one_line(tmp_path):
    cases = [
        ("supernet", "eval", str(tmp_path / "none"), "--arch", "K3E1"),
        ("supernet", "train", "--out", str(tmp_path / "r"), "--data", "mnist", "--epochs", "1"),
        ("supernet", "train", "--out", str(tmp_path / "r2"), "--lat", "60-70", "--epochs", "1"),
        ("supernet", "train", "--out", str(tmp_path / "r3"), "--epochs", "2", "--warmup-epochs", "2"),
    ]
    for args in cases:
        out = run_cli(*args)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (args, out.stderr)
