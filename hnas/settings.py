"""Settings are defined once: a dataclass field carries its default, its help text and its check, and the
command-line option is derived from the field (`option`), so a default or a check is changed in one place.

    epochs: int = setting(120, "Supernet training epochs.", check=at_least(0))

`check(obj)` runs every field's check and names the option in its one-line error; `from_dict` reads a saved
settings block and says what is wrong with it (unknown or missing keys, wrong types) instead of a KeyError.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import asdict, dataclass, field
from typing import Annotated, ClassVar

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.core.precision import PRECISIONS
from hnas.core.schema import ListOf, Num, OneOf, Said, Spec, preview
from hnas.spec.ops import MAX_SIZE

Check = Spec  # a setting's check: a schema spec whose complaint says what the option allows (`Said`)


def setting(default, help: str, *, flag: str | None = None, check: Check | None = None, factory=None):
    """A dataclass field with its help, its command-line flag (default `--name-with-dashes`) and its check."""
    meta = {"help": help, "flag": flag, "check": check}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_of(f: dataclasses.Field) -> str:
    """The command-line flag of a settings field."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def option(cls, name: str, **typer_kwargs):
    """`Annotated[type, typer.Option(...)]` for field `name` of settings class `cls` (help and flag from it)."""
    import typer

    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    return Annotated[hint, typer.Option(flag_of(f), help=f.metadata.get("help"), **typer_kwargs)]


def by_flag(*objs) -> dict[str, object]:
    """The values of settings objects keyed by their command-line flags (later objects win a shared flag)."""
    out = {}
    for obj in objs:
        for f in dataclasses.fields(obj):
            out[flag_of(f)] = getattr(obj, f.name)
    return out


def check(obj) -> None:
    """Run every field's check; the first failure is one line naming the option and what is allowed."""
    for f in dataclasses.fields(obj):
        test = f.metadata.get("check")
        value = getattr(obj, f.name)
        found = test.problem(value, "") if test is not None and value is not None else None
        if found:
            raise HnasError(f"{flag_of(f)} {_show(value)}: {found[1]}")


def check_value(flag: str, value, test: Check) -> None:
    """One option that is not a settings field (`hnas space sample -n`), checked like one."""
    found = test.problem(value, "") if value is not None else None
    if found:
        raise HnasError(f"{flag} {_show(value)}: {found[1]}")


def _show(value) -> str:
    if isinstance(value, list | tuple):
        return ",".join(_show(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else preview(value).strip('"')


# --- checks: schema specs (`hnas.core.schema`) that say what an option allows --------------------------


def _number(v) -> bool:
    return _NUMBER.problem(v, "") is None


_NUMBER = Num()


def at_least(lo: float) -> Check:
    """A finite number >= lo."""
    return Said(Num(at_least=lo), f"must be a number of at least {lo:g}")


def above(lo: float) -> Check:
    """A finite number > lo."""
    return Said(Num(above=lo), f"must be a number above {lo:g}")


def _bound(x: float) -> str:
    """A limit as a message shows it: whole numbers in full (2,147,483,647), others in short (0.05)."""
    return f"{x:,}" if isinstance(x, int) else f"{x:g}"


def between(lo: float, hi: float) -> Check:
    """A finite number in [lo, hi]."""
    return Said(Num(at_least=lo, at_most=hi), f"must be between {_bound(lo)} and {_bound(hi)}")


MAX_COUNT = 1_000_000  # architectures, populations: more than any search draws, few enough to hold in memory

# Seeds feed numpy's legacy seeding (pymoo: below 2**32) and torch.manual_seed (below 2**64), some after adding a
# stage or seed index: this bound leaves room for those offsets.
MAX_SEED = 2**31 - 1
SEED = between(0, MAX_SEED)


def one_of(*values) -> Check:
    """One of `values`."""
    return Said(OneOf(values), f"must be one of {', '.join(map(str, values))}")


def each(test: Check) -> Check:
    """A non-empty list whose every item passes `test` (the first failing item's complaint is the message)."""
    return Said(ListOf(test, 1), "must be a non-empty comma-separated list")


# --- reading saved settings ----------------------------------------------------------------------------


def from_dict(cls, data, where: str):
    """`cls(**data)` for a saved settings block, with one-line errors for what a file from another version or a
    hand edit may hold: not a mapping, unknown keys, missing keys, values of the wrong type."""
    if not isinstance(data, dict):
        raise HnasError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        raise HnasError(
            f"{where}: unknown settings {unknown} (written by another hnas version?); start a new run folder"
        )
    required = {f.name for f in dataclasses.fields(cls) if _required(f)}
    missing = sorted(required - set(data))
    if missing:
        raise HnasError(f"{where}: settings {missing} are missing; start a new run folder")
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        if not _fits(value, hints[name]):
            raise HnasError(f"{where}: {name} = {preview(value)} is not a {_type_name(hints[name])}")
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise HnasError(f"{where}: {exc}") from None


def _required(f: dataclasses.Field) -> bool:
    return f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _fits(value, hint) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_fits(value, h) for h in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return _number(value) or (isinstance(value, float) and not math.isnan(value))
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (list, tuple):
        args = typing.get_args(hint)
        return isinstance(value, list | tuple) and all(_fits(v, args[0]) for v in value) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if dataclasses.is_dataclass(hint):
        return isinstance(value, dict | hint)
    return True


def _type_name(hint) -> str:
    return str(hint).replace("typing.", "")


# --- the settings of a run -------------------------------------------------------------------------------


@dataclass
class Deployment:
    """How the searched network runs on the device: its numeric precision, which is also the precision of the
    latency table's entries (a table holds one precision; `None` takes the table's own)."""

    precision: str | None = setting(
        None,
        "float32 or int8 (full-integer quantized): the precision of the LUT's entries and of the networks measured; "
        "default: the LUT's own (a new LUT: float32). Given with a LUT of another precision, it is an error.",
        check=one_of(*PRECISIONS),
    )

    def __post_init__(self):
        check(self)


@dataclass
class FleetTable:
    """One more latency table of a fleet search (`--lut A.json --lat 60:70 --lut B.json --lat :120`: this is B): its
    band is a constraint beside the first table's, whose latency stays the objective; it prices at its own precision.
    `band` is in ms; when it came from `--lat-rel`, that and the reference are kept beside it (`band_rel`, `ref`). A
    run folder records the table as an absolute path with its sha256 (`hnas.runs.pin_lut`, as the first table's)."""

    lut: str
    band: Band = field(default_factory=Band)
    band_rel: Band | None = None
    ref: str | None = None
    lut_sha256: str | None = None

    def __post_init__(self):
        self.band, self.band_rel = Band.read(self.band), Band.read(self.band_rel)

    @classmethod
    def read_all(cls, tables: list) -> list[FleetTable]:
        """A fleet as a setting holds it: its tables, each itself or read from its JSON form."""
        return [cls(**t) if isinstance(t, dict) else t for t in tables]


def table_names(paths) -> list[str]:
    """How lines, results and figures name a fleet's tables: each file's stem (`local-amd-epyc-ce862bd4-int8`), or
    its path as given where two stems are the same."""
    from pathlib import Path

    stems = [Path(p).stem for p in paths]
    return [stem if stems.count(stem) == 1 else str(p) for stem, p in zip(stems, paths, strict=True)]


class _Fleet:
    """What a setting with a fleet (`band`, the first table's; `fleet`, the others) says of every table, the
    first's first."""

    def bands(self) -> list[Band]:
        """Every table's band, the first table's first."""
        return [self.band, *(t.band for t in self.fleet)]

    def luts(self, first: str | None) -> list[str | None]:
        """Every table's path: `first` (the run's, `RunConfig.lut`), then the fleet's others."""
        return [first, *(t.lut for t in self.fleet)]


@dataclass
class TrainConfig(_Fleet):
    """Optimisation settings (the paper's where it gives them): each field's default, help and check, once."""

    epochs: int = setting(120, "Training epochs.", check=at_least(0))
    lr: float = setting(0.5, "Initial learning rate (linear decay to 0).", check=above(0))
    momentum: float = setting(0.9, "SGD momentum.", check=between(0, 1))
    weight_decay: float = setting(4e-5, "Weight decay (not on BatchNorm and biases).", check=at_least(0))
    batch_size: int = setting(1024, "Batch size per process.", check=at_least(1))
    label_smoothing: float = setting(0.1, "Label smoothing of the cross-entropy loss.", check=between(0, 0.99))
    seed: int = setting(0, "Seed.", check=SEED)
    workers: int = setting(0, "Data loader workers.", check=at_least(0))
    amp: bool = setting(True, "Mixed precision on CUDA.")
    band: Band = setting(None, "Sample only paths whose LUT latency lies in MIN:MAX ms.", flag="--lat", factory=Band)
    max_reject: int = setting(1000, "Draws per path before a latency band is given up on.", check=at_least(1))
    fleet: list[FleetTable] = setting(
        None,
        "The other latency tables whose bands every sampled path must also lie in (--lut A --lat 7:9 --lut B --lat :5)",
        factory=list,
    )
    warmup_epochs: int = setting(
        0,
        "First epochs with each stage-first layer held at its smallest op, then all candidates start from it "
        "(short budgets need it).",
        check=at_least(0),
    )
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.band, self.fleet = Band.read(self.band), FleetTable.read_all(self.fleet)
        check(self)
        if self.warmup_epochs and not 0 < self.warmup_epochs < self.epochs:
            raise HnasError(f"--warmup-epochs must be 0 or fewer than the {self.epochs} epochs of training")


FIXED_ARCHS_SEED = 12345  # the architectures whose mean one-shot accuracy is logged as "supernet val acc"


@dataclass
class ProxySettings:
    """What makes the trained supernet smaller than the deployed network (LUT shapes never change), and how
    one-shot accuracy is measured."""

    resolution: int = setting(224, "Input resolution the supernet trains at (proxy).", check=between(8, MAX_SIZE))
    width: float = setting(1.0, "Width multiplier of the trained supernet (proxy).", check=between(0.05, 4))
    per_class: int | None = setting(None, "Training images per class (proxy subset).", check=at_least(1))
    bn_images: int = setting(2000, "Training images for exact BatchNorm recalibration.", check=at_least(1))
    eval_batch: int = setting(256, "Batch size of one-shot evaluation.", check=at_least(1))
    val_archs: int = setting(
        3, "Fixed architectures whose mean one-shot top-1 is logged per epoch.", check=between(0, MAX_COUNT)
    )

    def __post_init__(self):
        check(self)


@dataclass
class RunConfig:
    """Everything a run needs to be rebuilt and resumed (`lut`: the table its latency band refers to; a run folder
    records it as an absolute path with its sha256, `hnas.runs.pin_lut`, so the run opens from any directory and
    never silently uses another table)."""

    space: dict
    data: str
    proxy: ProxySettings = field(default_factory=ProxySettings)
    train: TrainConfig = field(default_factory=TrainConfig)
    lut: str | None = None
    lut_sha256: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d, where: str = "run config") -> RunConfig:
        """A saved config, with one-line errors for anything another version or a hand edit left in it."""
        d = dict(from_dict(_Raw, d, where).__dict__)
        d["proxy"] = from_dict(ProxySettings, d["proxy"], f"{where}, proxy")
        d["train"] = from_dict(TrainConfig, d["train"], f"{where}, train")
        return cls(**d)


@dataclass
class _Raw:
    """The top level of a saved RunConfig, checked before its parts are."""

    space: dict
    data: str
    proxy: dict
    train: dict
    lut: str | None = None
    lut_sha256: str | None = None  # absent in runs of older versions: recorded when they are next opened


SCHEDULES = ("restart", "continuous")


@dataclass
class SearchSettings(_Fleet):
    """Algorithm 1's numbers (paper defaults) and the latency band: each field's default, help and check, once.
    `band` is in ms; when it came from `--lat-rel` with `--ref`, those are kept beside it (`band_rel`, `ref`)."""

    stages: int = setting(4, "M: 2 = I-Supernet, 3 = P-Supernet, 4 = HNAS.", check=at_least(2))
    epochs: list[int] = setting(
        None,
        "Supernet epochs per training stage, e.g. 120,80,40.",
        check=each(at_least(0)),
        factory=lambda: [120, 80, 40],
    )
    lrs: list[float] = setting(
        None,
        "Learning rate per training stage, e.g. 0.5,0.1,0.1.",
        flag="--lr",
        check=each(above(0)),
        factory=lambda: [0.5, 0.1, 0.1],
    )
    p_th: float = setting(0.01, "Pruning threshold P_th: ops rarer than this are removed.", check=between(0, 1))
    max_rank: int = setting(
        10, "R: architectures of nondomination rank < R estimate the distribution.", check=at_least(2)
    )
    population: int = setting(64, "CES population.", check=at_least(2))
    generations: int = setting(40, "CES generations.", check=at_least(1))
    prescreen: int = setting(
        8,
        "Breed this many offspring per evaluation and evaluate the most promising (1: the paper's CES).",
        check=at_least(1),
    )
    schedule: str = setting(
        "restart",
        "restart: each training stage decays its own --lr to 0 (the paper's 0.5 then 0.1, 0.1); continuous: each "
        "stage decays to the next stage's --lr, so one curve runs over all stages with pruning at the boundaries.",
        check=one_of(*SCHEDULES),
    )
    band: Band = setting(None, "Latency band MIN:MAX in ms.", flag="--lat", factory=Band)
    max_macs: float | None = setting(None, "Also cap MACs.", check=above(0))
    max_params: float | None = setting(None, "Also cap parameters.", check=above(0))
    top: int = setting(5, "How many of the most accurate architectures the results list.", check=at_least(1))
    seed: int = setting(0, "Seed.", check=SEED)
    band_rel: Band | None = setting(None, "Band relative to --ref, e.g. 0.98:1.15.", flag="--lat-rel")
    ref: str | None = setting(None, "Reference architecture for --lat-rel.")
    fleet: list[FleetTable] = setting(
        None,
        "The other latency tables of a fleet search, each with its band (a constraint; the first --lut's latency is "
        "the objective): --lut A.json --lat 60:70 --lut B.json --lat :120.",
        factory=list,
    )

    def __post_init__(self):
        self.band, self.band_rel = Band.read(self.band), Band.read(self.band_rel)
        self.fleet = FleetTable.read_all(self.fleet)
        check(self)
        if len(self.epochs) != self.stages - 1 or len(self.lrs) != self.stages - 1:
            raise HnasError(
                f"{self.stages} stages train {self.stages - 1} supernets: give that many --epochs and "
                f"--lr values (got {len(self.epochs)} and {len(self.lrs)})"
            )

    def stage_lr(self, k: int) -> tuple[float, float]:
        """Training stage k's learning rate at its first and at its last step (linear in between)."""
        last = self.lrs[k] if self.schedule == "continuous" and k < self.stages - 1 else 0.0
        return self.lrs[k - 1], last


PICKS = ("front", "space", "band", "both", "all")


@dataclass
class RankSettings:
    """How a search run's one-shot ranking is checked against stand-alone training (Table 4, Fig. 5): which
    architectures, how many trainings each, and how the intervals are drawn."""

    k: int = setting(11, "Architectures ranked per pick.", check=at_least(2))
    pick: str = setting(
        "front",
        "front: K along the final Pareto front (the paper's choice); space: K drawn uniformly from the final "
        "(pruned) space; band: K of the final space at evenly spaced latencies across the band (`hnas study`: "
        "the same K for every M); both: front and space; all: the three.",
        check=one_of(*PICKS),
    )
    seeds: int = setting(
        3, "S: stand-alone trainings per architecture (seeds 0..S-1); their spread is the noise.", check=at_least(1)
    )
    epochs: int | None = setting(
        None, "Stand-alone epochs (default: the run's total supernet epochs).", check=at_least(1)
    )
    lr: float | None = setting(
        None, "Stand-alone learning rate (default: the run's first).", flag="--standalone-lr", check=above(0)
    )
    batch_size: int | None = setting(
        None, "Stand-alone batch size (default: the run's).", flag="--standalone-batch-size", check=at_least(1)
    )
    jobs: int | None = setting(
        None,
        "Trainings run at once, in worker processes of one torch thread each (on a GPU: all on it); default: one "
        "per CPU core.",
        check=at_least(1),
    )
    bootstrap: int = setting(
        2000, "Bootstrap resamples over architectures for the 95 % intervals of tau and rho.", check=at_least(100)
    )
    draw_seed: int = setting(0, "Seed of the space draws and of the bootstrap.", check=SEED)

    def __post_init__(self):
        check(self)
        if self.jobs is None:
            import os

            self.jobs = os.cpu_count() or 1

    @property
    def picks(self) -> tuple[str, ...]:
        """The picks this setting asks for, in order."""
        return {"both": ("front", "space"), "all": ("front", "space", "band")}.get(self.pick, (self.pick,))


@dataclass
class StudyDefaults:
    """The study's own settings (`hnas study`); its design (data, band, recipe) was chosen by measuring the noise
    ceiling of candidate designs (benchmarks/pilot_truth.py, benchmarks/README.md)."""

    data: str = setting(
        "mnist5k-translated",
        "Data of the study (default: translated MNIST, on which stand-alone training ranks).",
    )
    total_epochs: int | None = setting(
        None, "Supernet epochs of every M (split 3:2:1 or 2:1). Default: the data's recipe.", check=at_least(3)
    )
    lr: float | None = setting(None, "First-stage learning rate. Default: the data's recipe.", check=above(0))
    lat_rel: str = setting(
        "0.25:2", "Band relative to --ref (a wide band: architectures inside it differ in truth).", flag="--lat-rel"
    )
    schedule: str = setting(
        "continuous",
        "continuous (the study's default: every M on one learning-rate curve, so M alone differs) or restart (each "
        "stage decays its own --lr to 0, the paper's).",
        check=one_of(*SCHEDULES),
    )
    # the study ranks K architectures every M's final space holds, spread over the band: one truth for all M,
    # and one that ranks (benchmarks/README.md, the pilot); `hnas rank` keeps the paper's front picks
    pick: ClassVar[str] = "band"
    search_seeds: int = setting(3, "Search seeds per M (Table 5: mean and sd over them).", check=at_least(1))
    val_archs: int = setting(
        4,
        "Fixed architectures whose mean one-shot top-1 is the supernet's accuracy per epoch (Fig. 6).",
        check=at_least(1),
    )

    def __post_init__(self):
        check(self)
