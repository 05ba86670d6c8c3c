import pickle

import numpy as np
import pytest

from hnas.core.errors import HnasError
from hnas.data import cifar10, digits, imagenet, load_data


def test_embedded_digits_are_real_and_split():
    d = digits(resolution=16)
    x, y = d.train.tensors
    assert x.shape[1:] == (3, 16, 16) and d.num_classes == 10
    sizes = [len(d.train), len(d.val), len(d.test)]
    assert sum(sizes) == 1797 and min(sizes) >= 280
    assert set(y.tolist()) == set(range(10))
    small = digits(resolution=16, per_class=20)
    assert len(small.train) == 200 and len(small.val) == len(d.val)


def test_embedded_mnist5k_is_real_split_per_class_and_disjoint():
    d = load_data("mnist5k", 16)
    assert d.name == "mnist5k" and d.num_classes == 10
    assert (len(d.train), len(d.val), len(d.test)) == (3200, 800, 1000)
    for split, per_class in ((d.train, 320), (d.val, 80), (d.test, 100)):
        x, y = split.tensors
        assert x.shape[1:] == (3, 16, 16)
        assert np.bincount(y.numpy(), minlength=10).tolist() == [per_class] * 10
    rows = [{tuple(x.flatten()[::7].tolist()) for x in s.tensors[0]} for s in (d.train, d.val, d.test)]
    assert not (rows[0] & rows[2]) and not (rows[1] & rows[2])  # no test image is trained or searched on
    assert len(load_data("mnist5k", 16, per_class=20).train) == 200


def test_translated_mnist5k_moves_every_training_digit_each_epoch_and_keeps_val_and_test_fixed():
    from hnas.data import TEST_VIEWS, TRANSLATED, _mnist5k_split
    from hnas.evalimages import fixed_epoch

    d = load_data("mnist5k-translated", 32)
    plain = load_data("mnist5k", 32)
    assert d.name == "mnist5k-translated" and (len(d.train), len(d.val), len(d.test)) == (3200, 800, 1000 * TEST_VIEWS)
    for ours, theirs in ((d.train, plain.train), (d.val, plain.val)):  # mnist5k's split
        assert ours.labels.tolist() == theirs.tensors[1].tolist()
    assert d.test.labels.tolist() == np.repeat(plain.test.tensors[1].numpy(), TEST_VIEWS).tolist()
    views = d.test.x[:TEST_VIEWS]  # one test digit at TEST_VIEWS positions: the same digit, moved
    assert len({tuple(np.argwhere(v[0].numpy() > v[0].numpy().min() + 1e-3).min(0)) for v in views}) > 1
    images = _mnist5k_split(0, None)[0]
    canvas, digit = TRANSLATED["canvas"], TRANSLATED["digit"]
    first = d.train.x.clone()
    # every image is the digit at 20 px somewhere on the canvas: the background (outside a 20 px window) is black
    black = first[0, 0].min()
    lit = (first[:, 0] > black + 1e-3).nonzero()
    for i in range(5):
        rows, cols = lit[lit[:, 0] == i][:, 1], lit[lit[:, 0] == i][:, 2]
        assert rows.max() - rows.min() < digit and cols.max() - cols.min() < digit
    d.train.set_epoch(1)
    moved = d.train.x
    assert not np.allclose(first.numpy(), moved.numpy())  # new positions in a new epoch
    again = load_data("mnist5k-translated", 32)
    again.train.set_epoch(1)
    assert np.array_equal(again.train.x.numpy(), moved.numpy())  # seeded by (seed, split, epoch)
    assert np.array_equal(fixed_epoch(d.train).x.numpy(), first.numpy())  # BN calibration: always epoch 0
    d.val.set_epoch(5)
    d.test.set_epoch(5)
    fresh = load_data("mnist5k-translated", 32)
    assert np.array_equal(d.val.x.numpy(), fresh.val.x.numpy()) and np.array_equal(
        d.test.x.numpy(), fresh.test.x.numpy()
    )
    assert images.shape[1:] == (28, 28) and canvas == 32


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
