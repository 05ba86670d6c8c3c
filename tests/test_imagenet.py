"""The ImageNet folder path on a tiny generated JPEG folder: seeded augmentation independent of workers,
exact resume, and one line for every malformed folder (in-process and through the CLI)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from hnas.core.errors import HnasError
from hnas.data import UnreadableImage, imagenet
from hnas.settings import TrainConfig
from hnas.supernet import Supernet
from hnas.train import PathSampler, _loader, train
from tests.harness import IMAGENET_CLASSES, make_imagenet_folder, run_cli
from tests.tiny import tiny_space


def _batches(ds, epoch: int, workers: int) -> list[torch.Tensor]:
    return [x for x, _ in _loader(ds, 4, True, 3, epoch, workers, 1, 0)]


def test_augmentation_is_seeded_by_epoch_and_independent_of_workers(tmp_path):
    data = imagenet(make_imagenet_folder(tmp_path), resolution=16, seed=3, val_per_class=1)
    single = _batches(data.train, 0, 0)
    assert len(single) == 3
    assert all(torch.equal(a, b) for a, b in zip(single, _batches(data.train, 0, 2), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(single, _batches(data.train, 0, 0), strict=True))
    other = _batches(data.train, 1, 2)
    assert not any(torch.equal(a, b) for a, b in zip(single, other, strict=True))
    data.train.set_epoch(5)
    assert torch.equal(data.train[0][0], data.train[0][0])  # the same sample twice: no hidden generator state


def test_interrupted_supernet_training_resumes_to_the_same_weights(tmp_path):
    data = imagenet(make_imagenet_folder(tmp_path / "folder"), resolution=16, seed=0, val_per_class=1)
    cfg = TrainConfig(epochs=3, lr=0.05, batch_size=4, seed=0, workers=0)

    def run(folder: Path, stop: int | None) -> Supernet:
        torch.manual_seed(123)
        net = Supernet(tiny_space())

        def on_epoch(stats):
            if stop is not None and stats.epoch == stop:
                raise KeyboardInterrupt
            return None

        train(net, data.train, cfg, folder / "ck.pt", PathSampler(net.space, 5), on_epoch=on_epoch)
        return net

    full = run(tmp_path / "full", None)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", 1)  # epoch 1 (the second) never finishes; the checkpoint holds epoch 0
    resumed = run(tmp_path / "cut", None)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_undecodable_image_is_one_line_from_a_worker_process(tmp_path):
    root = make_imagenet_folder(tmp_path)
    bad = root / "val" / "n02" / "1.JPEG"
    bad.write_bytes(b"not a jpeg at all")
    data = imagenet(root, resolution=16, val_per_class=1)
    for workers in (0, 2):
        with pytest.raises(UnreadableImage) as exc:
            for _ in DataLoader(data.test, batch_size=4, num_workers=workers):
                pass
        message = str(exc.value)
        assert "\n" not in message and message.startswith(str(bad)) and "replace or delete it" in message


def _break(root: Path, case: str) -> None:
    import shutil

    if case == "no val":
        shutil.rmtree(root / "val")
    elif case == "no classes":
        for c in IMAGENET_CLASSES:
            shutil.rmtree(root / "train" / c)
    elif case == "empty classes":
        for c in IMAGENET_CLASSES[:2]:
            for f in (root / "train" / c).iterdir():
                f.unlink()
    elif case == "unknown val class":
        (root / "val" / "n99").mkdir()
        (root / "val" / IMAGENET_CLASSES[0] / "0.JPEG").rename(root / "val" / "n99" / "0.JPEG")


FOLDER_CASES = {
    "no val": "has no val/ folder: ImageNet layout needs train/<class>/ and val/<class>/",
    "no classes": "train has no class folders",
    "empty classes": "2 class folder(s) of {root}/train hold no images (n01, n02)",
    "unknown val class": "1 class folder(s) of {root}/val are not classes of {root}/train (n99)",
}


@pytest.mark.parametrize("case", sorted(FOLDER_CASES))
def test_malformed_folder_is_one_line_before_anything_is_written(tmp_path, case):
    root = make_imagenet_folder(tmp_path / "folder")
    _break(root, case)
    expected = FOLDER_CASES[case].format(root=root)
    with pytest.raises(HnasError, match="^.*" + expected.replace("(", r"\(").replace(")", r"\)")):
        imagenet(root, resolution=16)
    out = tmp_path / "run"
    r = run_cli("supernet", "train", "--out", str(out), "--data", f"imagenet:{root}", "--epochs", "1")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and expected in r.stderr and "Traceback" not in r.stderr
    assert not out.exists()


def test_cli_names_an_undecodable_image_in_one_line_from_a_worker(tmp_path):
    root = make_imagenet_folder(tmp_path / "folder", train=4, val=1)
    bad = root / "train" / "n03" / "1.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "run"
    args = ["supernet", "train", "--out", str(out), "--data", f"imagenet:{root}", "--epochs", "1"]
    quiet = {"PYTHONWARNINGS": "ignore"}  # torch warns when there are more workers than cores (one core here)
    r = run_cli(*args, "--resolution", "16", "--width", "0.25", "--batch-size", "4", "--workers", "2", env=quiet)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and f"error: {bad} cannot be decoded as an image" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not (out / "checkpoint.pt").exists()
