"""One-shot evaluation: exact BatchNorm recalibration, then top-1 on the validation split, memoized.

The subnet is extracted from the supernet (weights copied), its BatchNorm statistics are recomputed as the
exact cumulative mean and variance over N training images (momentum=None, not a moving average), and top-1 is
measured on `val`. Results are memoized per (supernet state tag, architecture string), so the search never
pays twice for the same architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from hnas.evalimages import EvalFormat, EvalImages, calibration_indices, fixed_epoch
from hnas.spec.arch import Architecture


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, images: Sequence[torch.Tensor], device: torch.device, within: Sequence[nn.Module] | None = None
) -> None:
    """Reset every BatchNorm (of `within`, default all of `model`) and recompute its statistics as the exact
    average over `images` batches."""
    scope = within if within is not None else [model]
    bns = [m for part in scope for m in part.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over batches
    was = model.training
    model.train()
    for x in images:
        model(x.to(device, non_blocking=True))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.train(was)


@torch.no_grad()
def top1(model: nn.Module, loader: DataLoader, device: torch.device) -> float:
    """Top-1 accuracy in [0, 1]."""
    model.eval()
    correct = seen = 0
    for x, y in loader:
        out = model(x.to(device, non_blocking=True))
        correct += (out.argmax(1) == y.to(out.device, non_blocking=True)).sum()
        seen += len(y)
    return int(correct) / max(1, seen)


@torch.no_grad()
def loss_top1(model: nn.Module, loader: DataLoader, device: torch.device) -> tuple[float, float]:
    """Mean cross-entropy (no label smoothing) and top-1 accuracy in [0, 1]: the loss ranks finer than top-1
    when a few images separate networks."""
    model.eval()
    loss = 0.0
    correct = seen = 0
    for x, y in loader:
        out = model(x.to(device, non_blocking=True)).float().cpu()
        loss += float(nn.functional.cross_entropy(out, y, reduction="sum"))
        correct += int((out.argmax(1) == y).sum())
        seen += len(y)
    return loss / max(1, seen), correct / max(1, seen)


def calibration_batches(train_set: Dataset, n_images: int, batch_size: int, seed: int = 0) -> list[torch.Tensor]:
    """A fixed set of `n_images` training images, as batches (the same for every architecture)."""
    idx = calibration_indices(len(train_set), n_images, seed)
    loader = DataLoader(Subset(fixed_epoch(train_set), idx), batch_size=batch_size, shuffle=False)
    return [x for x, _ in loader]


class OneShotEvaluator:
    """Accuracy source for the search: architectures -> one-shot top-1 from a supernet.

    The calibration and validation images are `images` when given (a run shares one `EvalImages` among all
    its evaluators, so they are decoded once per process), else decoded here. `batch_size` is the evaluation
    batch (`ProxySettings.eval_batch`), not the training one. On CUDA the supernet and inputs are channels_last,
    and with `amp` the forward passes run under autocast on float16 inputs; on the CPU nothing changes."""

    def __init__(
        self,
        supernet,
        val_set: Dataset,
        train_set: Dataset,
        bn_images: int = 1000,
        batch_size: int = 256,
        device: torch.device | None = None,
        state_tag: str = "",
        workers: int = 0,
        amp: bool = False,
        images: EvalImages | None = None,
        budget_bytes: int | None = None,
    ):
        self.supernet = supernet
        self.device = device or next(supernet.parameters()).device
        self.images = images or EvalImages(
            train_set,
            val_set,
            bn_images,
            batch_size,
            EvalFormat.for_device(self.device, amp),
            workers=workers,
            budget_bytes=budget_bytes,
        )
        if self.images.fmt.channels_last:
            supernet.to(memory_format=torch.channels_last)
        self.state_tag = state_tag
        self.cache: dict[tuple[str, str], float] = {}
        self.evaluated = 0

    @property
    def calib(self) -> _Batches:
        """The BN-calibration batches (re-iterable)."""
        return _Batches(self.images.calibration)

    @property
    def val_loader(self) -> _Batches:
        """The (images, labels) validation batches (re-iterable)."""
        return _Batches(self.images.validation)

    def accuracy(self, arch: Architecture) -> float:
        """One-shot top-1 of `arch` (memoized): the path runs inside the supernet, its own BatchNorms are
        recalibrated in place (each op has its own, so no other path is touched), nothing is copied."""
        key = (self.state_tag, str(arch))
        if key not in self.cache:
            path = _Path(self.supernet, arch)
            with torch.autocast(self.device.type, enabled=self.images.fmt.autocast):
                recalibrate_bn(path, self.calib, self.device, within=self.supernet.path_modules(arch))
                self.cache[key] = top1(path, self.val_loader, self.device)
            self.evaluated += 1
        return self.cache[key]

    def __call__(self, archs: Sequence[Architecture]) -> np.ndarray:
        return np.array([self.accuracy(a) for a in archs])


class _Batches:
    """A re-iterable view of a generator function (each iteration starts again)."""

    def __init__(self, make: Callable[[], Iterator]):
        self.make = make

    def __iter__(self) -> Iterator:
        return self.make()


class _Path(nn.Module):
    """One architecture's path through a supernet, as a module taking only the input."""

    def __init__(self, supernet, arch: Architecture):
        super().__init__()
        self.supernet = supernet
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.supernet(x, self.arch)
