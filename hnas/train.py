"""Training: SPOS uniform single-path supernet training and stand-alone training, resumable, DDP-aware.

Every step samples one op per layer uniformly from the layer's current candidates (optionally only paths whose
LUT latency lies in a band, by rejection, as SPOS does with FLOPs). With `warmup_epochs`, the first
epochs hold every chain layer (no residual path) at its reference op, and at the end of the warm-up the other
candidates are aligned to it (`Supernet.align_candidates`); see `hnas.supernet` for why. SGD with momentum 0.9, weight
decay 4e-5, learning rate decayed linearly per step to zero, optional label smoothing and AMP; the model and its
inputs are channels_last on every device (`hnas.spec.modules.MEMORY_FORMAT`).
A checkpoint (model, optimizer, scheduler, every RNG, history) is written atomically after each epoch; a rerun
resumes from it. Under `torchrun`, ranks draw the same path each step (same seed), and gradients are averaged.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import os
import random
import re
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_bytes
from hnas.settings import TrainConfig
from hnas.spec.arch import Architecture, from_vector
from hnas.spec.modules import MEMORY_FORMAT
from hnas.spec.space import SearchSpace
from hnas.spec.vectors import ArchCodec

# --- distributed ----------------------------------------------------------------------------------


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) otherwise."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def init_distributed() -> bool:
    """Join the process group when launched by torchrun (nccl on GPUs, gloo on CPUs)."""
    import torch.distributed as dist

    _, world, local = dist_info()
    if world <= 1 or dist.is_initialized():
        return dist.is_initialized()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    dist.init_process_group(backend)
    # leave the group while the interpreter is whole: gloo's threads still holding work at finalization abort the
    # process (SIGABRT) after a run that otherwise succeeded
    atexit.register(_leave_group)
    return True


def _leave_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def default_device() -> torch.device:
    """This rank's GPU when there is one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", dist_info()[2])
    return torch.device("cpu")


# --- path sampling --------------------------------------------------------------------------------


class PathSampler:
    """Uniform single-path sampling over a layer-wise space, optionally inside a latency band: drawn uniformly from
    the paths inside it when the predictor is additive (a LUT predictor's `distribution()`,
    `hnas.core.additive`), else by rejection. `more`: a fleet's other (predictor, band) pairs, each band checked on
    every path drawn (inside the first band) by rejection."""

    def __init__(
        self,
        space: SearchSpace,
        seed: int,
        predictor=None,
        band: Band | None = None,
        max_reject=1000,
        more: tuple = (),
    ):
        self.space = space
        self.rng = np.random.default_rng(seed)
        self.codec = ArchCodec(space)
        self.predictor, self.band, self.max_reject = predictor, band or Band(), max_reject
        self.more = tuple(more)
        if predictor is None and (not self.band.is_open or self.more):
            raise HnasError("a latency band for sampling needs a LUT (--lut)")
        self._banded: dict[tuple, tuple] = {}  # held layers -> (in-band distribution, original indices)

    def _feasible(self, vec: np.ndarray) -> bool:
        if self.predictor is None:
            return True
        pairs = ((self.predictor, self.band), *self.more)
        return all(bool(b.contains(float(p.predict(vec)[0]))) for p, b in pairs)

    def _source(self) -> tuple | None:
        """(predictor, band) that in-band draws come from: of the tables with a known distribution and a band, the one
        whose band holds the smallest share of the space, as CES draws (`hnas.ces.ArchProblem.draw_from`; the only
        one with one table); the other bands are checked on what is drawn."""
        if not hasattr(self, "_src"):
            from hnas.core.additive import rarest

            found = rarest(
                [
                    (p, p.distribution(), b)
                    for p, b in ((self.predictor, self.band), *self.more)
                    if p is not None and not b.is_open and hasattr(p, "distribution")
                ]
            )
            self._src = None if found is None else (found[0], found[2])
        return self._src

    def _draw(self, hold: dict[int, int]) -> np.ndarray:
        """One path: in-band when a table's distribution is known (`_source`), else uniform per layer."""
        source = self._source()
        if source is not None:
            predictor, band = source
            key = tuple(sorted(hold.items()))
            if key not in self._banded:
                from hnas.core.additive import LatencyDistribution

                model, keep = predictor.distribution().model.restricted(dict(hold))
                self._banded[key] = (LatencyDistribution(model), keep)
            dist, keep = self._banded[key]
            rows = dist.sample(band, 1, self.rng)
            if not len(rows):
                raise HnasError(f"no path of the space lies inside latency {band} ms: widen --lat")
            return np.array([k[i] for k, i in zip(keep, rows[0], strict=True)], dtype=np.int64)
        vec = self.codec.sample(self.rng, 1)[0]
        for j, i in hold.items():
            vec[j] = i
        return vec

    def sample(self, hold: dict[int, int] | None = None) -> Architecture:
        """One path; inside the latency band when one is set. `hold` fixes some layers' candidates ({layer index:
        candidate index})."""
        for _ in range(self.max_reject):
            vec = self._draw(hold or {})
            if self._feasible(vec):
                return from_vector(self.space, vec)
        bands = " and ".join(str(b) for b in (self.band, *(b for _, b in self.more)))
        raise HnasError(f"no path inside latency {bands} ms in {self.max_reject} draws: widen --lat")


# --- checkpoints ----------------------------------------------------------------------------------


def rng_state() -> dict:
    """Every RNG the training touches, as tensors and plain Python values (numpy's state as a list, not an array),
    so a checkpoint loads with `weights_only=True` and no numpy global."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` saved (numpy's state as a list, or as the array older checkpoints hold)."""
    random.setstate(state["python"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict) -> None:
    """torch.save into memory, then an atomic file write."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def _legacy_globals() -> list:
    """What checkpoints written before hnas stored numpy's RNG state as a list refer to besides tensors: the numpy
    array of that state (its reconstruct function, ndarray, dtype and the uint32 dtype class). Nothing callable
    beyond building an array is admitted."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    return [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _allowing(extra: list):
    """A context in which torch's weights-only unpickler also admits `extra` (torch 2.4 has no context manager:
    there they are added for the process)."""
    if hasattr(torch.serialization, "safe_globals"):
        return torch.serialization.safe_globals(extra)
    torch.serialization.add_safe_globals(extra)
    return contextlib.nullcontext()


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by `save_checkpoint` (CPU tensors) with torch's weights-only unpickler: tensors,
    containers and plain values, plus `_legacy_globals`; a file that refers to anything else (a pickled function
    call) is refused before it runs."""
    try:
        with _allowing(_legacy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is a user-facing problem
        raise HnasError(
            f"checkpoint {path} {_why_unreadable(path, str(exc))}; delete it to start that step again"
        ) from None


def _why_unreadable(path: Path, text: str) -> str:
    """What torch's error says about a checkpoint it refused, in a few words (its advice to load the file with
    `weights_only=False` is left out: that would run what the file names)."""
    unsafe = re.search(r"GLOBAL ([\w.]+)", text)
    if unsafe:
        return f"refers to {unsafe.group(1)}, which hnas never writes into a checkpoint: not loaded, nothing in it ran"
    if not zipfile.is_zipfile(path):
        return "is not a checkpoint (torch.save writes a zip archive)"
    boilerplate = ("Weights only load failed", "Check the documentation", "Please file an issue", "(1)", "(2)")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(boilerplate)]
    return f"cannot be read ({lines[0] if lines else 'torch could not unpickle it'})"


def load_weights(model: nn.Module, state: dict, path: Path) -> None:
    """Load a checkpoint's weights; weights that do not fit (another hnas version, another space) are one line."""
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise HnasError(
            f"checkpoint {path} does not fit this network (written by another hnas version or for another space); "
            "delete it, or the run folder, to start that step again"
        ) from None


# --- the loop -------------------------------------------------------------------------------------


@dataclass
class EpochStats:
    """One epoch's figures."""

    epoch: int
    loss: float
    train_acc: float
    lr: float
    seconds: float
    val_acc: float | None = None


def _loader(
    ds: Dataset,
    batch: int,
    shuffle: bool,
    seed: int,
    epoch: int,
    workers: int,
    world: int,
    rank: int,
    pin: bool = False,
) -> DataLoader:
    """Epoch `epoch`'s loader: the order from (seed, epoch); a dataset with `set_epoch` (seeded augmentation) is
    set to `epoch` before the workers start, so batches do not depend on the worker count. The loader is made
    anew each epoch (which is why its workers are not persistent: they would keep the previous epoch)."""
    if hasattr(ds, "set_epoch"):
        ds.set_epoch(epoch)
    if world > 1:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
        return DataLoader(ds, batch_size=batch, sampler=sampler, num_workers=workers, drop_last=True, pin_memory=pin)
    gen = torch.Generator().manual_seed(seed * 1000 + epoch)
    return DataLoader(
        ds,
        batch_size=batch,
        shuffle=shuffle,
        generator=gen,
        num_workers=workers,
        drop_last=shuffle and len(ds) > batch,
        pin_memory=pin,
    )


def train(
    model: nn.Module,
    train_set: Dataset,
    cfg: TrainConfig,
    checkpoint: Path,
    sampler: PathSampler | None = None,
    progress: Callable[[str, int], object] | None = None,
    on_epoch: Callable[[EpochStats], float | None] | None = None,
    extra_state: Callable[[], dict] | None = None,
    device: torch.device | None = None,
    lr_end: float = 0.0,
) -> list[EpochStats]:
    """Train `model` (a Supernet when `sampler` draws paths, else a stand-alone Network), resuming from
    `checkpoint` when it exists; the learning rate falls linearly per step from `cfg.lr` to `lr_end`. `on_epoch`
    may return a validation accuracy to record. Returns the history."""
    import torch.distributed as dist

    device = device or default_device()
    rank, world, _ = dist_info()
    distributed = world > 1 and dist.is_initialized()
    torch.manual_seed(cfg.seed)
    model.to(device)
    cuda = device.type == "cuda"
    model.to(memory_format=MEMORY_FORMAT)
    params_decay = [p for n, p in model.named_parameters() if p.dim() > 1]
    params_no = [p for n, p in model.named_parameters() if p.dim() <= 1]
    opt = torch.optim.SGD(
        [{"params": params_decay, "weight_decay": cfg.weight_decay}, {"params": params_no, "weight_decay": 0.0}],
        lr=cfg.lr,
        momentum=cfg.momentum,
        nesterov=False,
    )
    steps_per_epoch = max(1, len(_loader(train_set, cfg.batch_size, True, cfg.seed, 0, 0, world, rank)))
    total = max(1, cfg.epochs * steps_per_epoch)
    drop = 1.0 - lr_end / cfg.lr
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - drop * min(1.0, s / total))
    use_amp = cfg.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    crit = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history: list[EpochStats] = []
    start = 0
    if checkpoint.is_file():
        ck = load_checkpoint(checkpoint)
        load_weights(model, ck["model"], checkpoint)
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        if sampler is not None and ck.get("path_rng") is not None:
            sampler.rng.bit_generator.state = ck["path_rng"]
        history = [EpochStats(**h) for h in ck["history"]]
        start = ck["epoch"] + 1
    net = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            find_unused_parameters=sampler is not None,
        )
    if rank == 0 and cfg.epochs == 0 and not checkpoint.is_file():
        save_checkpoint(
            checkpoint,
            {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "path_rng": None,
                "epoch": -1,
                "history": [],
                "config": asdict(cfg),
                **(extra_state() if extra_state else {}),
            },
        )
    hold = model.chain_layers() if sampler is not None and cfg.warmup_epochs > 0 else {}
    for epoch in range(start, cfg.epochs):
        if hold and epoch == cfg.warmup_epochs:
            model.align_candidates(hold)  # the warm-up ends: every candidate starts from its trained reference
        warming = bool(hold) and epoch < cfg.warmup_epochs
        model.train()
        loader = _loader(train_set, cfg.batch_size, True, cfg.seed, epoch, cfg.workers, world, rank, pin=cuda)
        t0 = time.perf_counter()
        loss_sum, correct, seen = 0.0, 0, 0
        bar = progress(f"epoch {epoch + 1}/{cfg.epochs}", len(loader)) if progress and rank == 0 else None
        advance = bar.__enter__() if bar is not None else None
        try:
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                x = x.contiguous(memory_format=MEMORY_FORMAT)
                with torch.autocast(device.type, enabled=use_amp):
                    if sampler is None:
                        out = net(x)
                    else:
                        out = net(x, sampler.sample(hold) if warming else sampler.sample())
                    loss = crit(out, y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                loss_sum += float(loss.detach()) * len(y)
                correct += int((out.argmax(1) == y).sum())
                seen += len(y)
                if advance is not None:
                    advance(loss=loss_sum / seen, acc=correct / seen)
        finally:
            if bar is not None:
                bar.__exit__(None, None, None)
        stats = EpochStats(
            epoch, loss_sum / max(1, seen), correct / max(1, seen), opt.param_groups[0]["lr"], time.perf_counter() - t0
        )
        if on_epoch is not None:
            stats.val_acc = on_epoch(stats)
        history.append(stats)
        if rank == 0:
            payload = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(),
                "rng": rng_state(),
                "path_rng": sampler.rng.bit_generator.state if sampler is not None else None,
                "epoch": epoch,
                "history": [asdict(h) for h in history],
                "config": asdict(cfg),
                **(extra_state() if extra_state else {}),
            }
            save_checkpoint(checkpoint, payload)
        if distributed:
            dist.barrier()
    return history


# the training flags of `hnas supernet train` and `hnas search` a hint may name: a warm-up, more epochs, a lower lr
TRAINING_OPTIONS = ("--warmup-epochs", "--epochs", "--lr")


def chance_hint(
    history: list[EpochStats],
    num_classes: int,
    cfg: TrainConfig,
    options: tuple[str, ...] = TRAINING_OPTIONS,
    first: bool = True,
) -> str | None:
    """A line for the user when a supernet ended at chance accuracy (the short-budget stall of chain layers); its fix
    names only `options`, the flags of the command that trained, and a warm-up only for a run's `first` training."""
    if not history or history[-1].train_acc > 1.5 / num_classes:
        return None
    if first and cfg.warmup_epochs == 0 and "--warmup-epochs" in options:
        fix = f"add --warmup-epochs {max(1, cfg.epochs // 3)} (see README, Supernet)"
    else:
        steps = [
            f"train longer ({o})" if o.endswith("epochs") else f"lower {o}" for o in options if o != "--warmup-epochs"
        ]
        fix = " or ".join(steps) or "train longer"
    return (
        f"warning: the supernet ended at chance accuracy (train top-1 {history[-1].train_acc:.3f} for "
        f"{num_classes} classes): one-shot accuracies of this run rank nothing; {fix}"
    )
