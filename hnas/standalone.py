"""Stand-alone training: one architecture trained from scratch at proxy size (resumable, keyed by what decides
its outcome), and a pool that runs many such trainings at once.

    OUT/arch.json         the architecture, its space and the training's identity (a folder never mixes two)
    OUT/checkpoint.pt     written every epoch; a rerun resumes
    OUT/result.json       val and test top-1 and loss when the training is done

`train_jobs` runs trainings in worker processes, each with one torch thread (small networks: two threads on a
shared core are slower than one), on the CPU or all on one GPU; each worker loads its data once. A worker whose
parent died stops at once, so a killed study never leaves a training running that a resumed one would race.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_json, read_json
from hnas.data import DataBundle
from hnas.settings import ProxySettings, TrainConfig, from_dict
from hnas.spec.arch import Architecture


@dataclass
class StandaloneResult:
    """A stand-alone training's outcome (losses: mean cross-entropy without label smoothing)."""

    arch: str
    val_top1: float
    test_top1: float
    epochs: int
    seed: int = 0
    val_loss: float | None = None
    test_loss: float | None = None
    seconds: float | None = None


def _identity(arch: Architecture, data: str, proxy: ProxySettings, cfg: TrainConfig) -> dict:
    """What decides a stand-alone training's outcome: the network, the data and the optimisation."""
    return json.loads(
        json.dumps(
            {
                "arch": str(arch),
                "skeleton": arch.space.skeleton.to_dict(),
                "data": data,
                "resolution": proxy.resolution,
                "width": proxy.width,
                "per_class": proxy.per_class,
                "train": {k: v for k, v in asdict(cfg).items() if k != "workers"},
            }
        )
    )


def train_standalone(
    arch: Architecture, data: DataBundle, proxy: ProxySettings, cfg: TrainConfig, out: Path, progress=None
) -> StandaloneResult:
    """Train `arch` from scratch at proxy size, initialised and shuffled from `cfg.seed` (resumes from
    out/checkpoint.pt); top-1 and loss on val and test."""
    out = Path(out)
    done = out / "result.json"
    ident = _identity(arch, data.name, proxy, cfg)
    meta_file = out / "arch.json"
    if meta_file.is_file():
        meta = read_json(meta_file)
        if isinstance(meta, dict) and "identity" in meta and meta["identity"] != ident:
            raise HnasError(
                f"{out} holds a training of another architecture or with other settings: give another --out "
                "folder, or delete that one to train again"
            )
    if done.is_file():
        saved = from_dict(StandaloneResult, read_json(done), str(done))
        if saved.test_loss is not None:
            return saved  # else: written before losses were recorded; the checkpoint is evaluated again below
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta_file, {**arch.to_dict(), "space_def": arch.space.to_dict(), "identity": ident})
    import torch
    from torch.utils.data import DataLoader

    from hnas.evaluate import loss_top1
    from hnas.spec.modules import zero_init_residuals
    from hnas.spec.network import Network
    from hnas.supernet import proxy_space
    from hnas.train import default_device, train

    space = proxy_space(arch.space, proxy.resolution, proxy.width, data.num_classes)
    with torch.random.fork_rng(devices=[]):  # the initial weights are the seed's, whatever ran before
        torch.manual_seed(cfg.seed)
        net = Network(Architecture(space, arch.ops))
    if not (out / "checkpoint.pt").is_file():
        zero_init_residuals(net)
    device = default_device()
    history = train(net, data.train, cfg, out / "checkpoint.pt", progress=progress, device=device)
    val_loss, val = loss_top1(net, DataLoader(data.val, batch_size=proxy.eval_batch), device)
    test_loss, test = loss_top1(net, DataLoader(data.test, batch_size=proxy.eval_batch), device)
    res = StandaloneResult(
        str(arch), val, test, len(history), cfg.seed, val_loss, test_loss, round(sum(h.seconds for h in history), 2)
    )
    atomic_write_json(done, asdict(res))
    return res


def standalone_folder(root: Path, arch: Architecture, data: str, proxy: ProxySettings, cfg: TrainConfig) -> Path:
    """root/<key>: the folder of one architecture's stand-alone trainings (one `seed<s>` folder per seed); the key
    hashes the architecture, the data's name, proxy and training settings except the seed, so a pick that recurs
    (another K, front and space both) reuses its trainings and changed settings never reuse stale ones."""
    ident = _identity(arch, data, proxy, replace(cfg, seed=0))
    key = hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]
    return Path(root) / key


# --- many trainings at once ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One stand-alone training, in a form a worker process can rebuild: the architecture's string, its space
    (JSON), the data spec and its split seed, proxy and training settings, and the output folder."""

    arch: str
    space: dict
    data: str
    data_seed: int
    proxy: ProxySettings
    cfg: TrainConfig
    out: str

    def done(self) -> StandaloneResult | None:
        """The finished result, when this training was done before (nothing is loaded or trained)."""
        f = Path(self.out) / "result.json"
        if not f.is_file():
            return None
        saved = from_dict(StandaloneResult, read_json(f), str(f))
        return saved if saved.test_loss is not None else None


_DATA: dict[tuple, DataBundle] = {}  # one worker's data, loaded once


def _data_for(job: Job) -> DataBundle:
    from hnas.data import load_data

    key = (job.data, job.proxy.resolution, job.data_seed, job.proxy.per_class)
    if key not in _DATA:
        _DATA.clear()
        _DATA[key] = load_data(job.data, job.proxy.resolution, job.data_seed, job.proxy.per_class)
    return _DATA[key]


def _run(job: Job, progress=None) -> StandaloneResult:
    from hnas.spec.arch import parse_arch
    from hnas.spec.space import SearchSpace

    arch = parse_arch(job.arch, SearchSpace.from_dict(job.space))
    return train_standalone(arch, _data_for(job), job.proxy, job.cfg, Path(job.out), progress)


def _watch_parent(parent: int) -> None:
    """Exit this worker as soon as its parent is gone (a killed study must not leave trainings running)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(parent: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _in_worker(job: Job) -> tuple[StandaloneResult | None, str | None]:
    try:
        return _run(job), None
    except HnasError as exc:  # a user-facing problem travels back as its one line
        return None, str(exc)


def train_jobs(
    jobs: list[Job],
    workers: int = 1,
    log: Callable[[str], None] = print,
    progress=None,
    threads: int = 1,
) -> list[StandaloneResult]:
    """Run (or resume) every job; results in the jobs' order. `workers` > 1 trains that many at once in worker
    processes with `threads` torch threads each; 1 trains here, one after another, with `progress` bars."""
    results: list[StandaloneResult | None] = [j.done() for j in jobs]
    todo = [i for i, r in enumerate(results) if r is None]
    n_done = len(jobs) - len(todo)
    if n_done and todo:
        log(f"stand-alone: {n_done} of {len(jobs)} trainings done before, {len(todo)} to go")

    def finished(i: int, res: StandaloneResult) -> None:
        nonlocal n_done
        n_done += 1
        results[i] = res
        log(
            f"stand-alone {n_done}/{len(jobs)} (seed {jobs[i].cfg.seed}, {res.seconds or 0:.0f} s): {res.arch} "
            f"-> test top-1 {res.test_top1:.4f}, loss {res.test_loss:.4f}"
        )

    if workers <= 1 or len(todo) <= 1:
        for i in todo:
            finished(i, _run(jobs[i], progress))
        return results  # type: ignore[return-value]
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")  # no forked torch state; the same on Linux and macOS
    with ProcessPoolExecutor(
        max_workers=min(workers, len(todo)),
        mp_context=ctx,
        initializer=_init_worker,
        initargs=(os.getpid(), threads),
    ) as pool:
        futures = {pool.submit(_in_worker, jobs[i]): i for i in todo}
        pending = set(futures)
        try:
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in done:
                    res, problem = f.result()
                    if problem is not None:
                        raise HnasError(problem)
                    finished(futures[f], res)
        except BaseException:
            for f in pending:
                f.cancel()
            raise
    return results  # type: ignore[return-value]
