"""One-shot evaluation: exact BatchNorm recalibration, then top-1 on the validation split, memoized.

An architecture's path runs inside the supernet, its BatchNorm statistics are recomputed as the exact cumulative
mean and variance over N training images (momentum=None, not a moving average), and top-1 is measured on `val`.
Results are memoized per (supernet state tag, architecture string), so the search never pays twice for the same
architecture.

A batch of architectures (a generation) is evaluated together over a prefix tree (`PrefixTree`): a layer's
statistics depend only on the layers before it, so each distinct prefix of a batch runs its calibration and
validation images through its modules once and the architectures branch where their ops differ. Every module sees
the same input tensors, in the same order and batches, as when its architectures are evaluated one at a time, so
the accuracies (and the BatchNorm statistics left in the supernet) are the same, bit for bit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from hnas.evalimages import BUDGET_FRACTION, EvalFormat, EvalImages, calibration_indices, fixed_epoch
from hnas.memory import available_bytes
from hnas.spec.arch import Architecture


def _batchnorms(scope: Sequence[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for part in scope for m in part.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def _exact_statistics(scope: Sequence[nn.Module]) -> Iterator[None]:
    """Every BatchNorm of `scope` reset and accumulating the exact average over the batches it sees (momentum
    None) inside the block; its momentum restored after."""
    bns = _batchnorms(scope)
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average = exact mean over batches
    try:
        yield
    finally:
        for m, mom in zip(bns, saved):
            m.momentum = mom


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, images: Sequence[torch.Tensor], device: torch.device, within: Sequence[nn.Module] | None = None
) -> None:
    """Reset every BatchNorm (of `within`, default all of `model`) and recompute its statistics as the exact
    average over `images` batches."""
    was = model.training
    with _exact_statistics(within if within is not None else [model]):
        model.train()
        for x in images:
            model(x.to(device, non_blocking=True))
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
    batch (`ProxySettings.eval_batch`), not the training one. The supernet and inputs are channels_last
    (`MEMORY_FORMAT`), and on CUDA with `amp` the forward passes run under autocast on float16 inputs.

    A call with several architectures evaluates them together over a prefix tree (`PrefixTree`), with the same
    accuracies as one at a time; `together=False` evaluates them one at a time, and so does a call whose images
    are streamed (they do not fit in memory). `tree_bytes` bounds the activations the tree holds (default: a
    quarter of the device's free memory at the call)."""

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
        together: bool = True,
        tree_bytes: int | None = None,
    ):
        self.supernet = supernet
        self.together = together  # False: one architecture at a time (the reference path the benchmark times)
        self.tree_bytes = tree_bytes  # the prefix tree's activation budget; None: a share of free memory
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
        supernet.to(memory_format=self.images.fmt.memory_format)
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

    def own(self, arch: Architecture) -> Architecture:
        """`arch` as an architecture of the supernet's space (here: itself)."""
        return arch

    def accuracy(self, arch: Architecture) -> float:
        """One-shot top-1 of `arch` (memoized): the path runs inside the supernet, its own BatchNorms are
        recalibrated in place (each op has its own, so no other path is touched), nothing is copied."""
        arch = self.own(arch)
        key = (self.state_tag, str(arch))
        if key not in self.cache:
            path = _Path(self.supernet, arch)
            with torch.autocast(self.device.type, enabled=self.images.fmt.autocast):
                recalibrate_bn(path, self.calib, self.device, within=self.supernet.path_modules(arch))
                self.cache[key] = top1(path, self.val_loader, self.device)
            self.evaluated += 1
        return self.cache[key]

    def __call__(self, archs: Sequence[Architecture]) -> np.ndarray:
        """The one-shot top-1 of each of `archs`, in order; the new ones evaluated together (`PrefixTree`)."""
        archs = [self.own(a) for a in archs]
        todo = {str(a): a for a in archs if (self.state_tag, str(a)) not in self.cache}
        if self.together and len(todo) > 1 and self.images.cached:
            budget = self.tree_bytes
            if budget is None:
                budget = int(available_bytes(self.device) * BUDGET_FRACTION)
            images = self.images.calib_size + self.images.val_size
            tree = PrefixTree(self.supernet, list(todo.values()), budget, images)
            if tree.depth > 0:  # else nothing is shared: one at a time below
                with torch.autocast(self.device.type, enabled=self.images.fmt.autocast):
                    scores = tree.evaluate(list(self.calib), list(self.val_loader), self.device)
                self.cache.update(((self.state_tag, k), a) for k, a in zip(todo, scores))
                self.evaluated += len(todo)
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


class _Chain(nn.Module):
    """Modules run one after another (the rest of one path, from a prefix's activations)."""

    def __init__(self, modules: Sequence[nn.Module]):
        super().__init__()
        self.chain = nn.ModuleList(modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.chain:
            x = module(x)
        return x


class PrefixTree:
    """A batch of architectures evaluated together: each distinct prefix of their paths (the supernet's modules,
    `Supernet.path_modules`) runs once, the architectures branching where their modules differ.

    Depth first, a node at position d runs its module on the calibration batches in training mode (its
    BatchNorms reset to the exact average, as `recalibrate_bn` does), then on the validation batches in eval mode,
    and hands both outputs to its children. The modules called and their inputs (same tensors, same order, same
    batches) are those of evaluating each architecture alone, so the figures are the same bit for bit. A module
    never changes its input, so a node's outputs serve all its children.

    Memory: the input images and one node's outputs per position along the current branch are held. `depth`
    positions are shared: those whose outputs (all `images` calibration and validation images, at the slot's
    `LayerShape` output size, float32: a bound) fit `budget_bytes` together with the input; from there each
    architecture runs the rest of its path alone, batch by batch (`recalibrate_bn`, `top1`), from its prefix's
    held outputs (the last position, pooling and the classifier, always so). The BatchNorm statistics left in each
    module are those of the last architecture (in batch order) that uses it, as after one at a time."""

    def __init__(self, supernet, archs: Sequence[Architecture], budget_bytes: int, images: int):
        self.supernet = supernet
        self.paths = [supernet.path_modules(a) for a in archs]
        slots = supernet.space.slots
        sk = supernet.space.skeleton
        held = 4 * sk.in_channels * sk.resolution**2 * images  # the input images, float32
        self.depth = -1  # the input does not fit: nothing can be held
        for d, s in enumerate(slots):
            if held > budget_bytes:
                break
            self.depth = d
            held += 4 * s.shape.out_ch * s.shape.out_size**2 * images
        self.depth = min(self.depth, len(slots) - 1)
        self.last = {id(m): i for i, path in enumerate(self.paths) for m in path}  # last user of each module
        self.kept: dict[int, tuple[nn.Module, list[torch.Tensor]]] = {}
        self.scores: list[float] = [0.0] * len(archs)
        self.runs = 0  # modules run over all the images (one at a time: every module of every path)

    @torch.no_grad()
    def evaluate(
        self, calib: Sequence[torch.Tensor], val: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device
    ) -> list[float]:
        """Top-1 of every architecture, in order (calibration batches and (images, labels) validation batches
        ready for the model)."""
        self.labels = [y for _, y in val]
        self.device = device
        self._visit(0, list(range(len(self.paths))), list(calib), [x for x, _ in val])
        for bn, stats in self.kept.values():
            for name, saved in zip(_BN_STATS, stats):
                getattr(bn, name).copy_(saved)
        self.supernet.eval()  # as `top1` leaves it
        return self.scores

    def _keep(self, modules: Sequence[nn.Module], group: Sequence[int]) -> None:
        """Save the statistics of the modules whose last user is in `group` (restored at the end)."""
        for m in modules:
            if self.last[id(m)] in group:
                for bn in _batchnorms([m]):
                    self.kept[id(bn)] = (bn, [getattr(bn, name).clone() for name in _BN_STATS])

    def _branches(self, d: int, members: list[int]) -> list[list[int]]:
        """`members` (sharing their first d modules) grouped by their module at position d, in order."""
        groups: dict[int, list[int]] = {}
        for i in members:
            groups.setdefault(id(self.paths[i][d]), []).append(i)
        return list(groups.values())

    def planned_runs(self) -> int:
        """How many module runs `evaluate` makes (one per distinct prefix, then the rest of each path alone
        below `depth`), counted without running any; one at a time makes `sum(len(path))`."""

        def walk(d: int, members: list[int]) -> int:
            if d == self.depth:
                return sum(len(self.paths[i]) - d for i in members)
            return sum(1 + walk(d + 1, group) for group in self._branches(d, members))

        return walk(0, list(range(len(self.paths))))

    def _visit(self, d: int, members: list[int], calib: list, val: list) -> None:
        if d == self.depth:
            for i in members:
                rest = _Chain(self.paths[i][d:])
                recalibrate_bn(rest, calib, self.device, within=rest.chain)
                self.scores[i] = top1(rest, zip(val, self.labels), self.device)
                self.runs += len(rest.chain)
                self._keep(rest.chain, [i])
            return
        for group in self._branches(d, members):
            module = self.paths[group[0]][d]
            with _exact_statistics([module]):
                module.train()
                calib_out = [module(x) for x in calib]
            module.eval()
            val_out = [module(x) for x in val]
            self.runs += 1
            self._keep([module], group)
            self._visit(d + 1, group, calib_out, val_out)
            del calib_out, val_out  # one level's outputs alive at a time: the budget is the bound


_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")
