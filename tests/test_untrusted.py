"""Files other people made never run code and tiny files never take gigabytes: CIFAR batches and checkpoints that
name a function are refused before it is called, the adb key is private whatever the umask, and YAML aliases
are refused before they expand (issue 23, security)."""

from __future__ import annotations

import json
import os
import pickle
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from hnas.core.errors import HnasError
from hnas.settings import ProxySettings, RunConfig, TrainConfig
from tests.harness import ROOT, run_cli
from tests.tiny import tiny_space


class Payload:
    """Pickles as a call of os.system that creates `marker` (what an attacker's file would hold)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _one_line_refusal(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def _cifar_folder(root, batch_of) -> None:
    root.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(batch_of(name))


def test_a_cifar_batch_naming_a_function_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    _cifar_folder(tmp_path / "cifar", lambda _: pickle.dumps({b"data": Payload(marker), b"labels": [1]}, protocol=2))
    out = tmp_path / "run"
    done = run_cli("supernet", "train", "--data", f"cifar10:{tmp_path / 'cifar'}", "--out", str(out), "--epochs", "1")
    line = _one_line_refusal(done)
    assert "data_batch_1" in line and "system" in line
    assert not marker.exists() and not out.exists()


def test_random_bytes_and_wrong_contents_are_not_cifar_batches(tmp_path):
    from hnas.data import read_cifar_batch

    f = tmp_path / "data_batch_1"
    for content in (
        os.urandom(4096),
        pickle.dumps([1, 2, 3]),
        pickle.dumps({b"data": np.zeros((2, 3072), np.float32), b"labels": [1, 2]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 12]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1]}),
        pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": eval}),
    ):
        f.write_bytes(content)
        with pytest.raises(HnasError, match="is not a CIFAR-10 python batch") as err:
            read_cifar_batch(f)
        assert len(str(err.value).splitlines()) == 1


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_real_cifar_batches_load_in_every_pickle_protocol(tmp_path, protocol):
    """The real files are protocol 2 (numpy.core names, bytes through _codecs when written by Python 3)."""
    from hnas.data import read_cifar_batch

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [3, 1, 4, 1], b"data": data}
    batch[b"filenames"] = [b"a.png", b"b.png", b"c.png", b"d.png"]
    f = tmp_path / "data_batch_1"
    f.write_bytes(pickle.dumps(batch, protocol=protocol))
    x, y = read_cifar_batch(f)
    assert (x.reshape(4, -1) == data).all() and y.tolist() == [3, 1, 4, 1]


def _supernet_run(folder, resolution: int = 16) -> None:
    """A supernet run folder as `hnas supernet train` leaves it before its first checkpoint."""
    cfg = RunConfig(
        space=tiny_space().to_dict(),
        data="digits",
        proxy=ProxySettings(resolution=16, width=0.5, bn_images=32, eval_batch=64, val_archs=0),
        train=TrainConfig(epochs=1, lr=0.05, batch_size=64),
    ).to_dict()
    cfg["proxy"]["resolution"] = resolution
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))


def test_a_checkpoint_holding_a_payload_is_refused_by_eval_and_resume(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "ran"
    _supernet_run(run)
    torch.save({"model": Payload(marker), "epoch": 0}, run / "checkpoint.pt")
    before = sorted(p.name for p in run.iterdir())
    commands = {
        "eval": ["supernet", "eval", str(run), "--arch", "K3E1|K3E3-ID"],
        "resume": ["supernet", "train", "--out", str(run)],
    }
    for name, args in commands.items():
        line = _one_line_refusal(run_cli(*args))
        assert "checkpoint.pt refers to posix.system" in line and "nothing in it ran" in line, name
        assert not marker.exists(), f"{name} ran the payload"
    assert sorted(p.name for p in run.iterdir()) == before


def test_checkpoints_hold_only_plain_values_and_old_ones_still_load(tmp_path):
    import random

    from hnas.train import load_checkpoint, rng_state, save_checkpoint, set_rng_state

    np.random.seed(7)
    save_checkpoint(tmp_path / "new.pt", {"rng": rng_state(), "model": {"w": torch.ones(2)}})
    with open(tmp_path / "new.pt", "rb") as fh:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(fh) == []  # nothing outside torch's own list
    expected = np.random.random()
    set_rng_state(load_checkpoint(tmp_path / "new.pt")["rng"])
    assert np.random.random() == expected
    np.random.seed(7)
    old = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    torch.save({"rng": old}, tmp_path / "old.pt")  # numpy's state as an array, as hnas wrote it before
    set_rng_state(load_checkpoint(tmp_path / "old.pt")["rng"])
    assert np.random.random() == expected


def test_the_adb_key_is_private_whatever_the_umask(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    code = "import os; os.umask(0o022); from latency.connection import load_signer; load_signer()"
    env = {**os.environ, "HOME": str(home)}
    env.pop("ANDROID_USER_HOME", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    folder = home / ".android"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "adbkey").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "adbkey.pub").stat().st_mode) == 0o644
    assert sorted(p.name for p in folder.iterdir()) == ["adbkey", "adbkey.pub"]  # no temporary left behind


BILLION_LAUGHS = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(f"{n}: &{n} [{','.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi")),
        "name: *i",
    ]
)


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    f = tmp_path / "laughs.yaml"
    f.write_text(BILLION_LAUGHS)
    assert f.stat().st_size < 500
    t0 = time.perf_counter()
    line = _one_line_refusal(run_cli("space", "show", str(f)))
    assert "aliases (*a) are not allowed" in line and time.perf_counter() - t0 < 30


def test_a_refused_value_is_previewed_in_bounded_work():
    from hnas.core.schema import Obj, Str, check

    nested: list = []
    for _ in range(50_000):
        nested = [nested]
    t0 = time.perf_counter()
    for value in ([1] * 10**7, {str(i): i for i in range(10**6)}, nested, 10**5000):
        with pytest.raises(HnasError) as err:
            check({"name": value}, Obj({"name": Str()}), "space file x")
        assert len(str(err.value)) < 200
    assert time.perf_counter() - t0 < 2
