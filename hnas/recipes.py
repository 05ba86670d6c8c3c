"""Recipes: the defaults a run takes from its data.

The settings classes (`hnas.settings`) hold the paper's numbers (ImageNet at 224 px, batch 1024, 120/80/40
supernet epochs, population 64 x 40 generations). Those do not fit a 2-core laptop with the embedded digits, so
each kind of data has a recipe, and an option not given on the command line takes its recipe's value:

    data kind      examples                     recipe
    embedded       digits, mnist5k              the proxy the README's examples use: 16 px, width 0.5, batch 32,
                                                12/6/4 epochs (lr 0.05, then 0.02), population 24 x 10
                   mnist5k-translated           its own: 32 px, width 0.5, batch 128, 8/5/2 epochs at lr 0.1
    cifar10        cifar10:PATH                 32 px, batch 256 (lr 0.125 by linear scaling), the paper's epochs
    imagenet       imagenet:PATH                the paper's

A recipe changes only what it names; every other setting keeps its one default in `hnas.settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.settings import ProxySettings, RunConfig, SearchSettings, TrainConfig

EMBEDDED = ("digits", "mnist5k", "mnist5k-translated")


def data_kind(spec: str) -> str:
    """`embedded`, `cifar10` or `imagenet` for a data spec (a path is recognised by its layout)."""
    if spec in EMBEDDED:
        return "embedded"
    kind, _, rest = spec.partition(":")
    if kind in ("cifar10", "imagenet") and rest:
        return kind
    path = Path(spec)
    if (path / "data_batch_1").is_file():
        return "cifar10"
    if (path / "train").is_dir():
        return "imagenet"
    raise HnasError(
        f"unknown data {spec!r}: use {', '.join(EMBEDDED)}, cifar10:PATH, imagenet:PATH or a folder of either layout"
    )


def split_epochs(total: int, stages: int) -> list[int]:
    """`total` supernet epochs over M-1 training stages in the paper's 3:2:1-like proportions (120/80/40 for
    M = 4, 160/80 for M = 3), at least one epoch each."""
    import numpy as np

    if total < stages - 1:
        raise HnasError(f"{total} epochs cannot be split over {stages - 1} training stages: give at least {stages - 1}")
    weights = np.array([3.0, 2.0, 1.0][: stages - 1] if stages <= 4 else [1.0] * (stages - 1))
    if stages == 3:
        weights = np.array([2.0, 1.0])
    raw = np.maximum(1, np.round(total * weights / weights.sum())).astype(int)
    raw[0] += total - raw.sum()
    if raw[0] < 1:
        raise HnasError(f"{total} epochs are too few for {stages} stages")
    return raw.tolist()


def continuous_lrs(epochs: list[int], lr: float) -> list[float]:
    """Each training stage's first learning rate when one linear decay from `lr` to 0 runs over all stages'
    `epochs` (the continuous schedule: stage k decays to stage k+1's first rate)."""
    total = sum(epochs)
    starts = [sum(epochs[:k]) for k in range(len(epochs))]
    return [lr * (1 - e / total) for e in starts]


@dataclass(frozen=True)
class Recipe:
    """What one kind of data changes from the paper's defaults (field name -> value, per settings class), and
    its schedule: supernet epochs and learning rates of an M = 4 run (other M split the same total)."""

    name: str
    proxy: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)
    finetune_lr: float = 0.1

    def changed(self, name: str, **parts: dict) -> Recipe:
        """This recipe under another name with some values changed (`proxy`, `train`, `search`: name -> value)."""
        own = {k: {**getattr(self, k), **v} for k, v in parts.items()}
        return replace(self, name=name, **own)

    def proxy_settings(self, **given) -> ProxySettings:
        """The recipe's proxy settings with the options the user gave (None = not given)."""
        return _merged(ProxySettings, self.proxy, given)

    def train_config(self, **given) -> TrainConfig:
        """The recipe's training settings with the options the user gave (None = not given); the recipe's batch
        is shared by torchrun's processes (a given --batch-size is per process); the recipe's warm-up shrinks to
        a third of fewer epochs given."""
        own = dict(self.train)
        world = int(os.environ.get("WORLD_SIZE", 1))  # the recipe's batch is the total over torchrun's processes
        own["batch_size"] = max(1, own.get("batch_size", TrainConfig.batch_size) // world)
        epochs = given["epochs"] if given.get("epochs") is not None else own.get("epochs", TrainConfig.epochs)
        if given.get("warmup_epochs") is None and own.get("warmup_epochs", 0) >= epochs:
            own["warmup_epochs"] = epochs // 3
        return _merged(TrainConfig, own, given)

    def search_settings(self, **given) -> SearchSettings:
        """The recipe's search settings with the options the user gave (None = not given; 0 is a value, held to
        its setting's check)."""
        return _merged(SearchSettings, self.search, given)

    def value(self, cls, name: str):
        """This recipe's value of one setting."""
        own = {ProxySettings: self.proxy, TrainConfig: self.train, SearchSettings: self.search}[cls]
        if name in own:
            return own[name]
        f = {x.name: x for x in fields(cls)}[name]
        return f.default_factory() if callable(f.default_factory) else f.default

    def assemble(
        self, space: dict, data: str, lut: str | None, stages: int, proxy=None, train=None, search=None
    ) -> tuple[RunConfig, SearchSettings]:
        """A search's run config and settings from this recipe plus overrides (`proxy`, `train`, `search`: setting
        name -> value; None is "not given" and dropped, a given 0 is kept and held to its check): the supernet
        epochs and learning rates per stage are the search's `epochs` / `lrs` when given, else this recipe's
        schedule for M = `stages`; the first training stage's epochs and lr default to the schedule's first."""
        search = {k: v for k, v in (search or {}).items() if v is not None}
        epochs, lrs = self.schedule(stages)
        epochs, lrs = search.pop("epochs", epochs), search.pop("lrs", lrs)
        first = {"epochs": epochs[0] if epochs else None, "lr": lrs[0] if lrs else None}
        train = {**first, **{k: v for k, v in (train or {}).items() if v is not None}}
        run = RunConfig(
            space=space,
            data=data,
            proxy=self.proxy_settings(**(proxy or {})),
            train=self.train_config(**train),
            lut=lut,
        )
        return run, self.search_settings(stages=stages, epochs=epochs, lrs=lrs, **search)

    def schedule(self, stages: int) -> tuple[list[int], list[float]]:
        """Supernet epochs and learning rates per training stage for M = `stages`: the recipe's M = 4 schedule,
        or for another M its total split in the paper's proportions; the first stage at the training lr, the
        fine-tuning stages at `finetune_lr`."""
        if stages < 2:
            raise HnasError("--stages must be at least 2 (2 = I-Supernet, 3 = P-Supernet, 4 = HNAS)")
        epochs = self.value(SearchSettings, "epochs")
        lr = self.value(TrainConfig, "lr")
        if stages != len(epochs) + 1:
            epochs = split_epochs(sum(epochs), stages)
        return list(epochs), [lr] + [self.finetune_lr] * (stages - 2)


def _merged(cls, recipe: dict, given: dict):
    """`cls` with the recipe's values, overridden by every given value that is not None (the one place where "not
    given" is decided: 0, an empty list or False are values, and each must pass its setting's check)."""
    chosen = {k: v for k, v in given.items() if v is not None}
    return replace(cls(), **{**recipe, **chosen})


_EMBEDDED = Recipe(
    "embedded",
    proxy={"resolution": 16, "width": 0.5, "bn_images": 256, "eval_batch": 512, "val_archs": 2},
    train={"epochs": 12, "lr": 0.05, "batch_size": 32, "warmup_epochs": 4},
    search={"epochs": [12, 6, 4], "population": 24, "generations": 10},
    finetune_lr=0.02,
)
RECIPES = {
    "embedded": _EMBEDDED,
    # the study's task (benchmarks/README.md, pilot): 32 px so the network must find the digit, batch 128
    "mnist5k-translated": _EMBEDDED.changed(
        "mnist5k-translated",
        proxy={"resolution": 32},
        train={"epochs": 8, "lr": 0.1, "batch_size": 128, "warmup_epochs": 2},
        search={"epochs": [8, 5, 2]},
    ),
    "cifar10": Recipe("cifar10", proxy={"resolution": 32}, train={"batch_size": 256, "lr": 0.125}, finetune_lr=0.025),
    "imagenet": Recipe("imagenet"),
}


def recipe_for(data: str) -> Recipe:
    """The recipe of a data spec: its own when it has one (mnist5k-translated), else its kind's."""
    return RECIPES.get(data) or RECIPES[data_kind(data)]


def recipe_help(cls, name: str) -> str:
    """`Default by --data: digits/mnist5k 16, cifar10 32, imagenet 224.` for one setting."""

    def show(v):
        return ",".join(map(str, v)) if isinstance(v, list) else f"{v:g}" if isinstance(v, float) else str(v)

    own = [k for k in RECIPES if k in EMBEDDED]
    kinds = {"embedded": "/".join(e for e in EMBEDDED if e not in own)}
    parts = [f"{kinds.get(k, k)} {show(r.value(cls, name))}" for k, r in RECIPES.items()]
    return "Default by --data: " + ", ".join(parts) + "."
