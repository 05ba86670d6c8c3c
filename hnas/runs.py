"""Supernet runs on disk: config, checkpoint, history; train, resume, evaluate, prune.

RUN/config.json       deployment space, proxy settings, data, training settings
RUN/checkpoint.pt     model + optimizer + scheduler + RNG state, written atomically every epoch
RUN/history.json      per epoch: loss, train accuracy, supernet validation accuracy, seconds

Under torchrun rank 0 alone writes these files; the per-epoch evaluation of the fixed architectures is split
across the ranks (hnas.dist).
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_json, read_json, sha256_file
from hnas.core.progress import bars
from hnas.data import DataBundle, load_data
from hnas.dist import exists, is_main, shared, write_on_main
from hnas.evalimages import EvalFormat, EvalImages
from hnas.evaluate import OneShotEvaluator
from hnas.settings import FIXED_ARCHS_SEED, RunConfig, SearchSettings, TrainConfig
from hnas.spec.arch import sample
from hnas.spec.modules import zero_init_residuals
from hnas.spec.space import SearchSpace
from hnas.supernet import Supernet, proxy_space
from hnas.train import PathSampler, default_device, load_checkpoint, load_weights, train


def pin_lut(table):
    """A new run's table (its first, a `RunConfig`, or one of its others, a `FleetTable`) as an absolute path with
    the sha256 of the file (what the run is tied to); unchanged when there is none, or none at that path (whoever
    opens it says so)."""
    if table.lut is None or not Path(table.lut).is_file():
        return table
    path = Path(table.lut).resolve()
    return replace(table, lut=str(path), lut_sha256=sha256_file(path))


def pin_fleet(search: SearchSettings | TrainConfig) -> SearchSettings | TrainConfig:
    """New settings' fleet (the other tables: `SearchSettings.fleet`, `TrainConfig.fleet`), each pinned (`pin_lut`)."""
    return replace(search, fleet=[pin_lut(t) for t in search.fleet])


def run_fleet(search: SearchSettings | TrainConfig, run: str | Path, given: list[str] | None = None):
    """The settings (search or training) of the run in `run` with its fleet's other tables where they are now: each
    recorded file when its sha256 is the recorded one, or the one `given` in its place (the table moved; `given`: the
    other tables' paths in order, as `--lut` named them after the first). A changed table list, or a missing or
    changed table, is one line naming the fix."""
    fleet = search.fleet
    if given is not None and len(given) != len(fleet):
        had = ", ".join(t.lut for t in fleet) or "none"
        raise HnasError(
            f"{run} was started with {len(fleet) + 1} latency table(s) and {len(given) + 1} --lut were given: a run "
            f"keeps its table list (the others: {had}); resume without --lut, or with every table in the same order, "
            "or start a new run with --out"
        )
    moved = [locate_table(t, run, given[i] if given is not None else None) for i, t in enumerate(fleet)]
    if [(t.lut, t.lut_sha256) for t in moved] != [(t.lut, t.lut_sha256) for t in fleet]:
        _record_fleet(Path(run) / "config.json", isinstance(search, SearchSettings), moved)
    return replace(search, fleet=moved)


def locate_table(table, run: str | Path, given: str | None = None):
    """`table` (a run's first table, its `RunConfig`, or one of its others, a `FleetTable`: each has `lut` and
    `lut_sha256`) where it is now: its recorded file when its sha256 is the recorded one, or `given` in its place
    (the table moved) when its sha256 is that one; pinned to the absolute path and sha256 it has now (a run of an
    older version recorded none). A missing or changed table is one line naming the path, both sha256 and the fix."""
    recorded = table.lut_sha256
    short = recorded[:16] if recorded else None
    path = Path(given if given is not None else table.lut)  # recorded absolute; an older run's relative from here
    if not path.is_file():
        if given is not None:
            raise HnasError(f"--lut {given} does not exist: give the table {run} was started with ({table.lut})")
        sha_note = f" (sha256 {short})" if short else ""
        raise HnasError(
            f"{run} was started with the latency table {table.lut}{sha_note}, which is not there: pass --lut PATH "
            "to where the table is now (a run of several tables: every --lut, in order; accepted only if its sha256 "
            "is the same)"
        )
    sha = sha256_file(path)
    if recorded is not None and sha != recorded:
        if given is not None:
            raise HnasError(
                f"--lut {given} (sha256 {sha[:16]}) is not the table {run} was started with ({table.lut}, sha256 "
                f"{short}): give that table (a moved copy is accepted), or start a new run with --out"
            )
        raise HnasError(
            f"{run} was started with the latency table {table.lut} (sha256 {short}), which has changed since "
            f"(sha256 now {sha[:16]}): restore it, or pass --lut PATH to a copy of the table the run used"
        )
    return replace(table, lut=str(path.resolve()), lut_sha256=sha)


def _record_fleet(cfg_file: Path, search: bool, fleet: list) -> None:
    """Write a run's other tables where they are now (moved, or their sha256 first recorded) into its config.json,
    as `_record_lut` does for the first: the search's (`search`) or the supernet training's."""
    if not cfg_file.is_file():
        return
    data = read_json(cfg_file)
    block = data["search"] if search else _run_block(data)["train"]
    block["fleet"] = [asdict(t) for t in fleet]
    write_on_main(lambda: atomic_write_json(cfg_file, data))


def run_lut(config: RunConfig, run: str | Path, given: str | None = None, missing_ok: bool = False) -> RunConfig:
    """The config of the run in `run` with its LUT where it is now (`locate_table`; `missing_ok`: the config
    without a LUT instead of an error for a missing one), written into its config.json when that moved it or
    first recorded its sha256."""
    if config.lut is None:
        if given is not None:
            raise HnasError(f"{run} was started without a latency table: --lut cannot join it; start a new run")
        return config
    if given is None and missing_ok and not Path(config.lut).is_file():
        return replace(config, lut=None, lut_sha256=None)
    return _record_lut(Path(run) / "config.json", config, locate_table(config, run, given))


def _record_lut(cfg_file: Path, config: RunConfig, pinned: RunConfig) -> RunConfig:
    """`pinned` (`config` with its LUT where it is now), also written into the run's config.json when it differs
    (a moved table, or an older run that recorded no sha256)."""
    if (pinned.lut, pinned.lut_sha256) != (config.lut, config.lut_sha256) and cfg_file.is_file():
        data = read_json(cfg_file)
        _run_block(data).update(lut=pinned.lut, lut_sha256=pinned.lut_sha256)
        write_on_main(lambda: atomic_write_json(cfg_file, data))
    return pinned


def _run_block(data: dict) -> dict:
    """The `RunConfig` block of a config.json: a supernet run's whole file, a search's `run`."""
    return data["run"] if isinstance(data.get("run"), dict) and "search" in data else data


class SupernetRun:
    """A supernet training run in a folder. `latency` (a latency model with `for_space(space)`, e.g. a LUT
    predictor) is needed only when the training samples paths inside a latency band; `more`: the models of the
    training's other tables (`TrainConfig.fleet`, in order), whose bands every path must also lie in."""

    def __init__(self, path: str | Path, config: RunConfig, latency=None, more: tuple = ()):
        """A run of `config` in `path` (nothing is read or written; see `open`)."""
        self.path = Path(path)
        self.config = config
        self.latency = latency
        self.more = tuple(more)
        self.deploy_space = SearchSpace.from_dict(config.space)
        self._data: DataBundle | None = None
        self._fits = False  # require_memory passed in this process
        self._eval_fits = False  # one-shot evaluation's memory check passed in this process
        self._eval_images: dict[tuple[str, bool], EvalImages] = {}

    @staticmethod
    def saved_config(path: str | Path) -> RunConfig | None:
        """The config.json of the run in `path`, or None when there is none."""
        cfg_path = Path(path) / "config.json"
        return RunConfig.from_dict(read_json(cfg_path), str(cfg_path)) if cfg_path.is_file() else None

    @classmethod
    def open(cls, path: str | Path, config: RunConfig | None = None, latency=None, more: tuple = ()) -> SupernetRun:
        """The run in `path` (its config.json wins), or a new one of `config`, whose config.json is written once
        the data spec has loaded (`more`: the models of its other tables, `TrainConfig.fleet`)."""
        cfg_path = Path(path) / "config.json"
        if exists(cfg_path):  # rank 0's answer under torchrun: every rank takes the same branch
            return cls(path, cls.saved_config(path), latency, more)
        if config is None:
            raise HnasError(f"{path} is not a supernet run (no config.json): train one with `hnas supernet train`")
        pinned = pin_lut(config)
        run = cls(path, replace(pinned, train=pin_fleet(pinned.train)), latency, more)
        run.require_memory()
        band, fleet = config.train.band, config.train.fleet
        if not band.is_open or fleet:  # a band no path lies in is refused before anything is written
            if latency is None:
                raise HnasError("a latency band for sampling (--lat) needs the LUT that prices it (--lut)")
            from hnas.ces import Constraints, require_feasible
            from hnas.settings import table_names

            names = table_names(config.train.luts(config.lut))
            cons = Constraints.of_tables(names, config.train.bands(), list(more))
            require_feasible(run.deploy_space, latency, cons)
        run.data()  # a bad data spec fails before anything is written
        write_on_main(lambda: atomic_write_json(cfg_path, run.config.to_dict()))
        return run

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    def require_memory(self) -> None:
        """Refuse, in one line naming settings that fit, a training that would not fit this machine's memory
        (or its GPU's); checked before the data is loaded or the supernet built, once per process."""
        if self._fits:
            return
        from hnas.data import check_data
        from hnas.memory import require_fit

        check_data(self.config.data)  # a wrong folder is named before any estimate

        p, t = self.config.proxy, self.config.train
        space = proxy_space(self.deploy_space, p.resolution, p.width)
        require_fit(space, self.config.data, t.batch_size, p.per_class, t.workers, default_device())
        self._fits = True

    def data(self) -> DataBundle:
        """The run's dataset at the proxy resolution (refused in one line when it cannot fit this machine's memory:
        evaluating, verifying or ranking an existing run loads it too)."""
        if self._data is None:
            from hnas.memory import require_data_fit

            p, t = self.config.proxy, self.config.train
            require_data_fit(self.config.data, p.resolution, p.per_class, max(t.batch_size, p.eval_batch), t.workers)
            self._data = load_data(self.config.data, p.resolution, t.seed, p.per_class)
        return self._data

    def proxy(self, space: SearchSpace | None = None) -> SearchSpace:
        """The (possibly pruned) space at proxy size."""
        p = self.config.proxy
        return proxy_space(space or self.deploy_space, p.resolution, p.width, self.data().num_classes)

    def latest(self) -> tuple[Supernet, SearchSpace]:
        """The supernet in its latest state and its deployment space (the checkpoint's weights and pruned space
        when there is a checkpoint)."""
        if not self.checkpoint.is_file():
            return Supernet(self.proxy(self.deploy_space)).to(default_device()), self.deploy_space
        return self.from_checkpoint(self.checkpoint)

    def from_checkpoint(self, checkpoint: Path) -> tuple[Supernet, SearchSpace]:
        """The supernet saved in `checkpoint` (this run's, or a stage's of an HNAS run) and its deployment space."""
        ck = load_checkpoint(checkpoint)
        space = SearchSpace.from_dict(ck["deploy_space"])
        net = Supernet(self.proxy(space))
        load_weights(net, ck["model"], checkpoint)
        return net.to(default_device()), space

    def eval_images(self, device: torch.device) -> EvalImages:
        """The calibration and validation images of one-shot evaluation on `device`, decoded once per process
        (every evaluator of this run shares them), at the evaluation batch size `ProxySettings.eval_batch`."""
        amp = self.config.train.amp and device.type == "cuda"
        key = (str(device), amp)
        if key not in self._eval_images:
            p, data = self.config.proxy, self.data()
            self._eval_images[key] = EvalImages(
                data.train,
                data.val,
                p.bn_images,
                p.eval_batch,
                EvalFormat.for_device(device, amp),
                workers=self.config.train.workers,
            )
        return self._eval_images[key]

    def evaluator(self, supernet: Supernet, tag: str = "") -> OneShotEvaluator:
        """One-shot accuracy of architectures of this run's deployment space (refused in one line when one
        evaluation batch cannot fit the memory of the supernet's device)."""
        from hnas.memory import require_fit

        p = self.config.proxy
        data = self.data()
        device = next(supernet.parameters()).device
        if not self._eval_fits:
            t = self.config.train
            batch = min(p.eval_batch, max(len(data.val), min(p.bn_images, len(data.train))))  # its largest batch
            require_fit(supernet.space, self.config.data, batch, p.per_class, t.workers, device, inference=True)
            self._eval_fits = True
        return _DeployEvaluator(
            supernet,
            data.val,
            data.train,
            p.bn_images,
            p.eval_batch,
            device=device,
            state_tag=tag,
            workers=self.config.train.workers,
            images=self.eval_images(device),
        )

    def train(
        self,
        supernet: Supernet | None = None,
        progress=True,
        cfg: TrainConfig | None = None,
        checkpoint: Path | None = None,
        deploy_space: SearchSpace | None = None,
    ) -> list:
        """Train (or resume) the supernet; returns the per-epoch history."""
        self.require_memory()  # a run resumed on another machine is checked against that one
        cfg = cfg or self.config.train
        deploy = deploy_space or self.deploy_space
        supernet = supernet or zero_init_residuals(Supernet(self.proxy(deploy)))
        pred = None
        if not cfg.band.is_open or cfg.fleet:
            if self.latency is None:
                raise HnasError("a latency band for sampling needs a LUT (--lut)")
            pred = self.latency.for_space(deploy)
        more = tuple((m.for_space(deploy), t.band) for m, t in zip(self.more, cfg.fleet, strict=True))
        sampler = PathSampler(supernet.space, cfg.seed, pred, cfg.band, cfg.max_reject, more)
        fixed = sample(deploy, self.config.proxy.val_archs, np.random.default_rng(FIXED_ARCHS_SEED))

        def on_epoch(stats):
            if not fixed:
                return None
            ev = shared(self.evaluator(supernet, tag=f"epoch{stats.epoch}"))
            return float(np.mean(ev(fixed)))

        with bars() if progress and is_main() else contextlib.nullcontext() as factory:
            history = train(
                supernet,
                self.data().train,
                cfg,
                checkpoint or self.checkpoint,
                sampler,
                factory,
                on_epoch,
                extra_state=lambda: {"deploy_space": deploy.to_dict()},
            )
        write_on_main(lambda: atomic_write_json(self.path / "history.json", [asdict(h) for h in history]))
        return history


class _DeployEvaluator(OneShotEvaluator):
    """Evaluates deployment-space architectures on the proxy supernet (same candidates, other widths)."""

    def own(self, arch):
        from hnas.spec.arch import Architecture

        return arch if arch.space is self.supernet.space else Architecture(self.supernet.space, arch.ops)
