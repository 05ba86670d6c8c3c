import pickle

import numpy as np
import pytest

from hnas.data import cifar10, digits, imagenet, load_data
from hnas.errors import HnasError


def test_embedded_digits_are_real_and_split():
    d = digits(resolution=16)
    x, y = d.train.tensors
    assert x.shape[1:] == (3, 16, 16) and d.num_classes == 10
    sizes = [len(d.train), len(d.val), len(d.test)]
    assert sum(sizes) == 1797 and min(sizes) >= 280
    assert set(y.tolist()) == set(range(10))
    small = digits(resolution=16, per_class=20)
    assert len(small.train) == 200 and len(small.val) == len(d.val)


def test_cifar10_python_batches(tmp_path):
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", 600) for i in range(1, 6)] + [("test_batch", 200)]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(rng.integers(0, 10, n))}
        with open(tmp_path / name, "wb") as fh:
            pickle.dump(batch, fh)
    d = load_data(str(tmp_path), resolution=32)
    assert d.name == "cifar10" and len(d.test) == 200 and len(d.train) + len(d.val) == 3000
    assert d.train.tensors[0].shape[1:] == (3, 32, 32)
    with pytest.raises(HnasError, match="CIFAR-10"):
        cifar10(tmp_path / "nope")


def test_imagenet_folder_layout_and_paper_split(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("val", 3)):
        for c in ("n01", "n02", "n03"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (40 + i, 50, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / c / f"{i}.JPEG")
    d = imagenet(tmp_path, resolution=24, val_per_class=2)
    assert d.num_classes == 3 and len(d.val) == 6 and len(d.train) == 30 and len(d.test) == 9
    x, label = d.train[0]
    assert x.shape == (3, 24, 24) and label in (0, 1, 2)
    assert d.test[0][0].shape == (3, 24, 24)
    with pytest.raises(HnasError, match="train/<class>"):
        imagenet(tmp_path / "train")
    with pytest.raises(HnasError, match="unknown data"):
        load_data("mnist", 32)
