"""One-shot evaluation: exact BatchNorm recalibration, then top-1 on the validation split, memoized.

An architecture's path runs inside the supernet, its BatchNorm statistics are recomputed as the exact cumulative
mean and variance over N training images (momentum=None, not a moving average), and top-1 is measured on `val`.
Results are memoized per (supernet state tag, architecture string), so the search never pays twice for the same
architecture.

A batch of architectures (a generation) is evaluated together over a prefix tree (`PrefixTree`): a layer's
statistics depend only on the layers before it, so each distinct prefix of a batch runs its calibration and
validation images through its modules once and the architectures branch where their ops differ; branches that run
the same module from different prefixes run it as one larger batch, each with its own BatchNorm statistics. Every
image meets the same modules, in the same calibration batches, as when its architectures are evaluated one at a
time, so the accuracies (and the BatchNorm statistics left in the supernet) are the same: bit for bit where the
device's convolution gives an image the same result in a larger batch (torch's CPU kernels; the tests hold it).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence

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
    average over `images` batches (no pass when there is none: the pooling and classifier of a path's end)."""
    scope = within if within is not None else [model]
    if not _batchnorms(scope):
        return
    was = model.training
    with _exact_statistics(scope):
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
    quarter of the device's free memory at the call); `wide` runs the tree's independent branches that share a
    module as one larger batch (`PrefixTree`)."""

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
        wide: bool = True,
    ):
        self.supernet = supernet
        self.together = together  # False: one architecture at a time (the reference path the benchmark times)
        self.tree_bytes = tree_bytes  # the prefix tree's activation budget; None: a share of free memory
        self.wide = wide  # the tree's branches that share a module run it as one batch
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
        recalibrated in place (each op has its own, so no other path is touched), nothing is copied. The supernet
        is left in eval mode."""
        score = self._alone(arch)
        self.supernet.eval()
        return score

    def _alone(self, arch: Architecture) -> float:
        """`accuracy` without setting the whole supernet's mode (only the path's modules change theirs: walking
        every module of the supernet cost about as much as a proxy path's forward passes)."""
        arch = self.own(arch)
        key = (self.state_tag, str(arch))
        if key not in self.cache:
            with torch.autocast(self.device.type, enabled=self.images.fmt.autocast):
                self.cache[key] = _path_top1(self.supernet.path_modules(arch), self.calib, self.val_loader, self.device)
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
            tree = PrefixTree(self.supernet, list(todo.values()), budget, images, self.wide)
            if tree.depth > 0:  # else nothing is shared: one at a time below
                with torch.autocast(self.device.type, enabled=self.images.fmt.autocast):
                    scores = tree.evaluate(list(self.calib), list(self.val_loader), self.device)
                self.cache.update(((self.state_tag, k), a) for k, a in zip(todo, scores))
                self.evaluated += len(todo)
        scores = np.array([self._alone(a) for a in archs])
        self.supernet.eval()
        return scores


class _Batches:
    """A re-iterable view of a generator function (each iteration starts again)."""

    def __init__(self, make: Callable[[], Iterator]):
        self.make = make

    def __iter__(self) -> Iterator:
        return self.make()


def _path_top1(
    modules: Sequence[nn.Module], calib: Iterable[torch.Tensor], val: Iterable, device: torch.device
) -> float:
    """Top-1 of the path `modules` (all of one, or the rest from a prefix's outputs): its BatchNorms recalibrated
    on `calib`, then `val` ((images, labels) batches); only these modules' modes change."""
    chain = _Chain(modules)
    recalibrate_bn(chain, calib, device, within=chain.chain)
    return top1(chain, val, device)


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

    Position by position, the prefixes that reach a position (the tree's nodes there) run their module on the
    calibration batches in training mode (each BatchNorm accumulating the exact average, as `recalibrate_bn` does),
    then on the validation batches in eval mode, and hand both outputs to their children. `wide`: the nodes that run
    the same module from different prefixes (independent branches) run it as one larger batch, their inputs
    concatenated, every BatchNorm normalizing each node's slice with that node's own statistics (`_branch_norm`):
    one call in place of one per branch (on a GPU, or on the small maps of a proxy, a call's fixed cost dominates),
    and a module's last calibration batch shares its call with the first validation batch (`_call`). Each node's
    images meet the same module weights, in the same calibration batches, as when its architectures are evaluated
    one at a time; the accuracies are the same, and the statistics left in the supernet the same bit for bit where
    the device's convolution gives an image the same result in a larger batch (torch's CPU kernels do; the tests
    check it); `wide=False` runs every node's batches alone, as one at a time does, bit for bit on every device. A
    module never changes its input, so a node's outputs serve all its children.

    Memory: `depth` positions are shared: those whose outputs (all `images` calibration and validation images, at
    the slot's `LayerShape` output size, float32: a bound) fit `budget_bytes` for one chain of nodes, together with
    the input; a position's nodes run in as few chunks as the budget left allows (the rest kept for one chain
    below), depth first over the chunks, and a wide call takes as many of them as its working memory leaves room
    for (`_wide_cap`). From `depth` each architecture runs the rest of its path alone, batch by
    batch (`recalibrate_bn`, `top1`), from its prefix's held outputs (the last position, pooling and the classifier,
    always so). The BatchNorm statistics left in each module are those of the last architecture (in batch order)
    that uses it, as after one at a time."""

    def __init__(self, supernet, archs: Sequence[Architecture], budget_bytes: int, images: int, wide: bool = True):
        self.supernet = supernet
        self.wide = wide
        self.paths = [supernet.path_modules(a) for a in archs]
        slots = supernet.space.slots
        sk = supernet.space.skeleton
        self.budget = budget_bytes
        self.alive = 4 * sk.in_channels * sk.resolution**2 * images  # held now: the input images, float32
        self.bytes = [4 * s.shape.out_ch * s.shape.out_size**2 * images for s in slots]  # one node's outputs
        held = self.alive
        self.depth = -1  # the input does not fit: nothing can be held
        for d, out in enumerate(self.bytes):
            if held > budget_bytes:
                break
            self.depth = d
            held += out
        self.depth = min(self.depth, len(slots) - 1)
        self.below = [sum(self.bytes[d : max(d, self.depth)]) for d in range(len(slots) + 1)]  # one chain from d
        self.last = {id(m): i for i, path in enumerate(self.paths) for m in path}  # last user of each module
        self.kept: dict[int, tuple[nn.Module, list[torch.Tensor]]] = {}
        self.scores: list[float] = [0.0] * len(archs)
        self.runs = 0  # modules run over all the images (one at a time: every module of every path)
        self.calls = 0  # module calls over all the images (a wide call runs several nodes)

    @torch.no_grad()
    def evaluate(
        self, calib: Sequence[torch.Tensor], val: Sequence[tuple[torch.Tensor, torch.Tensor]], device: torch.device
    ) -> list[float]:
        """Top-1 of every architecture, in order (calibration batches and (images, labels) validation batches
        ready for the model)."""
        self.labels = [y for _, y in val]
        self.device = device
        root = _Node(list(range(len(self.paths))), None, None)
        root.calib, root.val = list(calib), [x for x, _ in val]
        self._advance(0, [root])
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

    def _advance(self, d: int, nodes: list[_Node]) -> None:
        """Run position d for the children of `nodes` (their outputs are its inputs), then on from them."""
        if d == self.depth:
            for node in nodes:
                for i in node.members:
                    rest = self.paths[i][d:]
                    self.scores[i] = _path_top1(rest, node.calib, zip(node.val, self.labels), self.device)
                    self.runs += len(rest)
                    self.calls += len(rest)
                    self._keep(rest, [i])
            return
        kids = [
            _Node(group, parent, self.paths[group[0]][d])
            for parent in nodes
            for group in self._branches(d, parent.members)
        ]
        done = 0
        while done < len(kids):
            room = self.budget - self.alive - self.below[d + 1]
            chunk = kids[done : done + max(1, room // max(1, self.bytes[d]))]
            done += len(chunk)
            self._run(d, chunk)
            if done == len(kids):  # every child of `nodes` has its outputs: theirs are not needed any more
                for node in nodes:
                    self.alive -= node.drop()
            self._advance(d + 1, chunk)
            for kid in chunk:
                self.alive -= kid.drop()

    def _run(self, d: int, kids: list[_Node]) -> None:
        """The outputs of `kids` at position d: one call per module (`wide`, with parameters; as many nodes per call
        as its working memory leaves room for, `_wide_cap`) or per kid."""
        by_module: dict[int, list[_Node]] = {}
        for kid in kids:
            by_module.setdefault(id(kid.module), []).append(kid)
        for same in by_module.values():
            batched = self.wide and len(same) > 1 and any(True for _ in same[0].module.parameters())
            cap = self._wide_cap(d, same) if batched else 1
            for group in [same[i : i + cap] for i in range(0, len(same), cap)]:
                self._call(group)
                for kid in group:
                    kid.held = self.bytes[d]
                self.alive += len(group) * self.bytes[d]
                self.runs += len(group)
                self.calls += 1

    def _wide_cap(self, d: int, kids: list[_Node]) -> int:
        """How many of `kids` one call may run: the working memory of a call (per node, the images of its largest
        step: its input slice and the concatenated copy, the module's widest maps before and after the depthwise
        convolution, the BatchNorm outputs and their concatenation; at the input's size, float32, a bound) within
        the budget left once these kids' outputs and one chain below are counted; at least one."""
        parent, module = kids[0].parent, kids[0].module
        x = (parent.calib or parent.val)[0]
        step = max((len(b) for b in parent.calib[-1:]), default=0) + max((len(b) for b in parent.val[:1]), default=0)
        widest = max((m.out_channels for m in module.modules() if isinstance(m, nn.Conv2d)), default=x.shape[1])
        per_node = step * x[0].numel() * 4 * (2 + 3 * widest / x.shape[1])
        room = self.budget - self.alive - self.below[d + 1] - len(kids) * self.bytes[d]
        return max(1, int(room // max(1.0, per_node)))

    def _call(self, group: list[_Node]) -> None:
        """Run the module of `group` (one module, several prefixes) on their parents' outputs: the calibration
        batches with BatchNorms in training mode, then the validation batches in eval mode, each node's BatchNorm
        statistics its own. `wide` (and no dropout in the module): the last calibration batch and the first
        validation batch go in one call, its calibration slices first in every BatchNorm, whose statistics are then
        complete for the validation slices (one call per module where the calibration images are one batch); that
        needs BatchNorms to be the module's only layers that depend on its mode (`hnas.spec.modules`: they are).
        Narrow, every call is one node's batch, as one at a time runs it."""
        module = group[0].module
        bns = _batchnorms([module])
        stats = [[_Statistics(bn) for bn in bns] for _ in group]
        calib = list(zip(*(kid.parent.calib for kid in group)))  # per batch: each node's slice
        val = list(zip(*(kid.parent.val for kid in group)))
        steps = [[(True, parts)] for parts in calib] + [[(False, parts)] for parts in val]
        mode_free = not any(isinstance(m, nn.modules.dropout._DropoutNd) for m in module.modules())
        if self.wide and mode_free and calib and val:
            n = len(calib)
            steps[n - 1 : n + 1] = [steps[n - 1] + steps[n]]
        for step in steps:
            module.train(step[0][0])  # a shared step's BatchNorms take each slice's mode themselves
            slices = [(train, k, x) for train, parts in step for k, x in enumerate(parts)]
            sizes = [len(x) for _, _, x in slices]
            norms = [[(stats[k][j], train) for train, k, _ in slices] for j in range(len(bns))]
            with _branch_norms(bns, norms, sizes):
                y = module(slices[0][2] if len(slices) == 1 else torch.cat([x for _, _, x in slices]))
            for (train, k, _), part in zip(slices, y.split(sizes)):
                (group[k].calib if train else group[k].val).append(part)
        module.eval()
        for kid, own in zip(group, stats):
            if self.last[id(module)] in kid.members:
                for bn, saved in zip(bns, own):
                    self.kept[id(bn)] = (bn, saved.buffers())


class _Statistics:
    """One node's statistics of one BatchNorm, apart from the BatchNorm's own buffers: reset (mean 0, variance 1,
    no batch seen), then the exact average (`_branch_norm`); the batches seen also counted here, so that weighing a
    batch reads nothing back from the device."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm):
        self.mean = torch.zeros_like(bn.running_mean)
        self.var = torch.ones_like(bn.running_var)
        self.seen = torch.zeros_like(bn.num_batches_tracked)
        self.count = 0

    def buffers(self) -> list[torch.Tensor]:
        """As `_BN_STATS` names them."""
        return [self.mean, self.var, self.seen]


class _Node:
    """A prefix of the tree: the architectures sharing it, its parent and the module it ends with, and its outputs
    (calibration and validation batches) once run."""

    def __init__(self, members: list[int], parent: _Node | None, module: nn.Module | None = None):
        self.members, self.parent, self.module = members, parent, module
        self.calib: list[torch.Tensor] = []
        self.val: list[torch.Tensor] = []
        self.held = 0

    def drop(self) -> int:
        """Let go of the outputs; return the bytes they were counted as (once)."""
        self.calib, self.val = [], []
        held, self.held = self.held, 0
        return held


@contextlib.contextmanager
def _branch_norms(
    bns: Sequence[nn.modules.batchnorm._BatchNorm],
    slices: Sequence[Sequence[tuple[_Statistics, bool]]],
    sizes: list[int],
) -> Iterator[None]:
    """Inside: BatchNorm j normalizes the i-th slice (`sizes`) of its input as a BatchNorm holding the statistics
    `slices[j][i][0]` (momentum None: the exact average) would, in training mode where `slices[j][i][1]`, else in
    eval mode."""
    for bn, own in zip(bns, slices):
        bn.forward = functools.partial(_branch_norm, bn, own, sizes)
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


def _branch_norm(
    bn: nn.modules.batchnorm._BatchNorm,
    slices: Sequence[tuple[_Statistics, bool]],
    sizes: list[int],
    x: torch.Tensor,
) -> torch.Tensor:
    """`torch.nn.BatchNorm2d.forward` (momentum None) on each slice of `x`, in order, with its own statistics and
    mode."""
    outs = []
    for (st, train), part in zip(slices, x.split(sizes)):
        factor = 0.0
        if train:
            st.seen.add_(1)
            st.count += 1
            factor = 1.0 / st.count  # what BatchNorm2d computes from its num_batches_tracked
        outs.append(nn.functional.batch_norm(part, st.mean, st.var, bn.weight, bn.bias, train, factor, bn.eps))
    return outs[0] if len(outs) == 1 else torch.cat(outs)


_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")
