"""The images one-shot evaluation runs on: N BatchNorm-calibration training images and the validation split.

They are decoded and transformed once per process (a `SupernetRun` holds them for every evaluator it makes) and
kept in the evaluation's dtype and layout (`MEMORY_FORMAT`, channels_last): float32 on the CPU; on CUDA on the device
when they fit (else in pinned host memory), and float16 when evaluation runs under autocast. When a split does
not fit its memory budget (a quarter of what is free: /proc/meminfo MemAvailable, torch.cuda.mem_get_info), it
is streamed through a DataLoader for every architecture instead, and one log line says so. Cached or streamed,
the batches are the same tensors (same images, same order, same batch boundaries), so accuracies are the same.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from hnas.memory import available_bytes
from hnas.spec.modules import MEMORY_FORMAT

BUDGET_FRACTION = 0.25  # of the memory free when the images are built


@dataclass(frozen=True)
class EvalFormat:
    """Where and how evaluation inputs live: device, dtype, memory layout, autocast."""

    device: torch.device
    dtype: torch.dtype = torch.float32
    memory_format: torch.memory_format = MEMORY_FORMAT

    @classmethod
    def for_device(cls, device: torch.device, amp: bool = False) -> EvalFormat:
        """float32 on the CPU; on CUDA float16 when `amp`."""
        return cls(device, torch.float16 if amp and device.type == "cuda" else torch.float32)

    @property
    def autocast(self) -> bool:
        """Whether the forward passes run under autocast (half-precision inputs)."""
        return self.dtype != torch.float32

    def store(self, x: torch.Tensor, device: torch.device) -> torch.Tensor:
        """`x` in this format on `device` (pinned when it is the host of a CUDA evaluation)."""
        x = x.to(device, self.dtype).contiguous(memory_format=self.memory_format)
        if device.type == "cpu" and self.device.type == "cuda":
            x = x.pin_memory()
        return x

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """`x` ready for the model (nothing is copied when it is already so)."""
        x = x.to(self.device, self.dtype, non_blocking=True)
        return x.contiguous(memory_format=self.memory_format)


def _stderr(line: str) -> None:
    sys.stderr.write(line + "\n")


def fixed_epoch(ds: Dataset, epoch: int = 0) -> Dataset:
    """A view of `ds` whose augmentation is that of `epoch` whatever the training loop sets on `ds` later."""
    if hasattr(ds, "set_epoch"):
        ds = copy.copy(ds)
        ds.set_epoch(epoch)
    return ds


def calibration_indices(n_train: int, n_images: int, seed: int = 0) -> list[int]:
    """The training images BatchNorm is recalibrated on (the same for every architecture)."""
    rng = np.random.default_rng(seed)
    return rng.choice(n_train, size=min(n_images, n_train), replace=False).tolist()


class EvalImages:
    """BN-calibration and validation batches of one-shot evaluation, decoded once when they fit, else streamed.

    `budget_bytes` overrides the memory budget (0 streams both splits); `log` gets the one fallback line."""

    def __init__(
        self,
        train_set: Dataset,
        val_set: Dataset,
        bn_images: int,
        batch_size: int,
        fmt: EvalFormat,
        workers: int = 0,
        budget_bytes: int | None = None,
        log: Callable[[str], None] = _stderr,
        seed: int = 0,
    ):
        self.fmt = fmt
        self.batch_size = batch_size
        self.workers = workers
        calib_set = Subset(fixed_epoch(train_set), calibration_indices(len(train_set), bn_images, seed))
        self.calib_size, self.val_size = len(calib_set), len(val_set)
        per_image = _image_bytes(val_set if len(val_set) else calib_set, fmt.dtype)
        budgets = self._budgets(budget_bytes)
        self.placement: dict[str, str] = {}
        self._calib = self._build("calibration", calib_set, per_image, budgets)
        self._val = self._build("validation", val_set, per_image, budgets)
        streamed = [name for name, where in self.placement.items() if where == "stream"]
        if streamed:
            sizes = {"calibration": self.calib_size, "validation": self.val_size}
            need = per_image * sum(sizes[n] for n in streamed)
            left = max(0, max(b for _, b in budgets))
            whose = "as given" if budget_bytes is not None else f"{BUDGET_FRACTION:.0%} of free memory"
            log(
                f"one-shot evaluation: the {' and '.join(f'{sizes[n]} {n}' for n in streamed)} images take "
                f"{need / 2**30:.2f} GiB as {str(fmt.dtype).replace('torch.', '')}, over the memory budget left "
                f"({left / 2**30:.2f} GiB, {whose}): they are decoded again for "
                "every architecture (streamed through a DataLoader)"
            )

    @property
    def cached(self) -> bool:
        """Whether both splits are held decoded."""
        return "stream" not in self.placement.values()

    def calibration(self) -> Iterator[torch.Tensor]:
        """The calibration batches, ready for the model."""
        for x, _ in self._calib:
            yield self.fmt.prepare(x)

    def validation(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(images, labels) batches of the validation split, ready for the model."""
        for x, y in self._val:
            yield self.fmt.prepare(x), y

    def _budgets(self, budget_bytes: int | None) -> list[list]:
        """[[store device, bytes left], ...] in order of preference."""
        host = torch.device("cpu")
        if budget_bytes is not None:
            return [[self.fmt.device, budget_bytes]]
        if self.fmt.device.type == "cuda":
            return [
                [self.fmt.device, int(available_bytes(self.fmt.device) * BUDGET_FRACTION)],
                [host, int(available_bytes(host) * BUDGET_FRACTION)],
            ]
        return [[host, int(available_bytes(host) * BUDGET_FRACTION)]]

    def _loader(self, ds: Dataset, persistent: bool) -> DataLoader:
        return DataLoader(
            ds,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.workers,
            pin_memory=self.fmt.device.type == "cuda",
            persistent_workers=persistent and self.workers > 0,
        )

    def _build(self, name: str, ds: Dataset, per_image: int, budgets: list[list]) -> list | DataLoader:
        """The split decoded into the first budget it fits, or a DataLoader streaming it."""
        need = per_image * len(ds)
        for slot in budgets:
            device, left = slot
            if need <= left:
                slot[1] -= need
                self.placement[name] = str(device)
                return [(self.fmt.store(x, device), y) for x, y in self._loader(ds, persistent=False)]
        self.placement[name] = "stream"
        return self._loader(ds, persistent=True)


def _image_bytes(ds: Dataset, dtype: torch.dtype) -> int:
    """Bytes of one transformed image of `ds` in `dtype` (one image is decoded to see its shape)."""
    if len(ds) == 0:
        return 0
    x = ds[0][0]
    return int(np.prod(x.shape)) * torch.empty((), dtype=dtype).element_size()
