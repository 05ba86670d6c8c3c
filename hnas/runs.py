"""Supernet runs on disk: config, checkpoint, history; train, resume, evaluate, prune.

RUN/config.json       deployment space, proxy settings, data, training settings
RUN/checkpoint.pt     model + optimizer + scheduler + RNG state, written atomically every epoch
RUN/history.json      per epoch: loss, train accuracy, supernet validation accuracy, seconds
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hnas.arch import sample
from hnas.data import DataBundle, load_data
from hnas.errors import HnasError
from hnas.evaluate import OneShotEvaluator
from hnas.modules import zero_init_residuals
from hnas.space import SearchSpace
from hnas.supernet import Supernet, proxy_space
from hnas.train import PathSampler, TrainConfig, default_device, load_checkpoint, read_json, train, write_json


@dataclass
class ProxySettings:
    """What makes the trained supernet smaller than the deployed network (LUT shapes never change)."""

    resolution: int = 32
    width: float = 1.0
    per_class: int | None = None
    bn_images: int = 500
    eval_batch: int = 256
    val_archs: int = 3


@dataclass
class RunConfig:
    """Everything a run needs to be rebuilt and resumed."""

    space: dict
    data: str
    proxy: ProxySettings = field(default_factory=ProxySettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    lut: str | None = None

    def to_dict(self) -> dict:
        return {
            "space": self.space,
            "data": self.data,
            "proxy": asdict(self.proxy),
            "train": asdict(self.train),
            "lut": self.lut,
        }

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        return cls(d["space"], d["data"], ProxySettings(**d["proxy"]), TrainConfig(**d["train"]), d.get("lut"))


def training_progress():
    """A rich progress factory for epochs: bar, steps, loss and accuracy."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]{task.description:16s}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    )

    @contextlib.contextmanager
    def factory(label: str, total: int):
        task = prog.add_task(label, total=total, loss=float("nan"), acc=float("nan"))

        def advance(**fields):
            prog.update(task, advance=1, **fields)

        yield advance

    return prog, factory


class SupernetRun:
    """A supernet training run in a folder."""

    def __init__(self, path: str | Path, config: RunConfig):
        """A run of `config` in `path` (nothing is read or written; see `open`)."""
        self.path = Path(path)
        self.config = config
        self.deploy_space = SearchSpace.from_dict(config.space)
        self._data: DataBundle | None = None

    @classmethod
    def open(cls, path: str | Path, config: RunConfig | None = None) -> SupernetRun:
        """The run in `path` (its config.json wins), or a new one of `config`, whose config.json is written once
        the data spec has loaded."""
        cfg_path = Path(path) / "config.json"
        if cfg_path.is_file():
            return cls(path, RunConfig.from_dict(read_json(cfg_path)))
        if config is None:
            raise HnasError(f"{path} is not a supernet run (no config.json): train one with `hnas supernet train`")
        run = cls(path, config)
        run.data()  # a bad data spec fails before anything is written
        run.path.mkdir(parents=True, exist_ok=True)
        write_json(cfg_path, config.to_dict())
        return run

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    def data(self) -> DataBundle:
        """The run's dataset at the proxy resolution."""
        if self._data is None:
            p = self.config.proxy
            self._data = load_data(self.config.data, p.resolution, self.config.train.seed, p.per_class)
        return self._data

    def proxy(self, space: SearchSpace | None = None) -> SearchSpace:
        """The (possibly pruned) space at proxy size."""
        p = self.config.proxy
        return proxy_space(space or self.deploy_space, p.resolution, p.width, self.data().num_classes)

    def build_supernet(self) -> Supernet:
        """The supernet in its latest state (checkpoint weights and pruned space when there is a checkpoint)."""
        space = self.deploy_space
        if self.checkpoint.is_file():
            ck = load_checkpoint(self.checkpoint)
            space = SearchSpace.from_dict(ck["deploy_space"])
            net = Supernet(self.proxy(space))
            net.load_state_dict(ck["model"])
            return net.to(default_device())
        return Supernet(self.proxy(space)).to(default_device())

    def predictor(self):
        """The LUT predictor on the deployment space when the run has a LUT (for latency-banded sampling)."""
        if not self.config.lut:
            return None
        from latency.lut import Lut
        from latency.predict import LatencyPredictor

        return LatencyPredictor(Lut.load(self.config.lut), self.deploy_space, self.config.lut)

    def evaluator(self, supernet: Supernet, tag: str = "") -> OneShotEvaluator:
        """One-shot accuracy of architectures of this run's deployment space."""
        p = self.config.proxy
        data = self.data()
        return _DeployEvaluator(
            supernet, data.val, data.train, p.bn_images, p.eval_batch, state_tag=tag, workers=self.config.train.workers
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
        cfg = cfg or self.config.train
        deploy = deploy_space or self.deploy_space
        supernet = supernet or zero_init_residuals(Supernet(self.proxy(deploy)))
        pred = self.predictor() if (cfg.lat_min is not None or cfg.lat_max is not None) else None
        if pred is not None and deploy != self.deploy_space:
            from latency.lut import Lut
            from latency.predict import LatencyPredictor

            pred = LatencyPredictor(Lut.load(self.config.lut), deploy, self.config.lut)
        sampler = PathSampler(supernet.space, cfg.seed, pred, cfg.lat_min, cfg.lat_max, cfg.max_reject)
        fixed = sample(deploy, self.config.proxy.val_archs, np.random.default_rng(12345))

        def on_epoch(stats):
            if not fixed:
                return None
            ev = self.evaluator(supernet, tag=f"epoch{stats.epoch}")
            return float(np.mean(ev(fixed)))

        prog, factory = training_progress() if progress else (None, None)
        with prog if prog is not None else contextlib.nullcontext():
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
        write_json(self.path / "history.json", [asdict(h) for h in history])
        return history


class _DeployEvaluator(OneShotEvaluator):
    """Evaluates deployment-space architectures on the proxy supernet (same candidates, other widths)."""

    def accuracy(self, arch):
        from hnas.arch import Architecture

        if arch.space is not self.supernet.space:
            arch = Architecture(self.supernet.space, arch.ops)
        return super().accuracy(arch)
