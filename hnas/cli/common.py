"""What every command module shares: the console, JSON output, architecture arguments, and the option types
derived from the settings (`hnas.settings`), so each option's default, help and check are defined once."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import typer
from rich.console import Console

from hnas.core.errors import HnasError
from hnas.recipes import recipe_help
from hnas.settings import (
    Deployment,
    ProxySettings,
    RankSettings,
    SearchSettings,
    StudyDefaults,
    TrainConfig,
    flag_of,
    option,
)

# wide enough for a large space's candidate lists when the output goes to a file or a pipe
console = Console(width=None if sys.stdout.isatty() else 160)

SpaceArg = Annotated[str, typer.Argument(help="Preset name (basic, large, proxyless) or a .json/.yaml space file.")]
SpaceOpt = Annotated[str, typer.Option("--space", help="Preset (basic, large, proxyless) or space file.")]
DataOpt = Annotated[
    str, typer.Option("--data", help="digits, mnist5k, mnist5k-translated, cifar10:PATH, imagenet:PATH.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
LutOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--lut",
        help="Latency table (LUT file) of the target device; repeat it for a fleet (one network for every table: the "
        "first table's latency is the objective, every table's band a constraint).",
    ),
]
OutOpt = Annotated[str, typer.Option("--out", help="Run folder; an existing run resumes.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="`local` (this CPU) or a phone (serial or host:port).")]


def recipe_option(cls, name: str):
    """An option whose default comes from the recipe of `--data` (`hnas.recipes`): None until resolved, its
    help naming each recipe's value."""
    import dataclasses
    import typing

    f = {x.name: x for x in dataclasses.fields(cls)}[name]
    hint = typing.get_type_hints(cls)[name]
    text = f"{f.metadata.get('help')} {recipe_help(cls, name)}"
    return Annotated[hint | None, typer.Option(flag_of(f), help=text, show_default=False)]


EpochsOpt = recipe_option(TrainConfig, "epochs")
LrOpt = recipe_option(TrainConfig, "lr")
BatchOpt = recipe_option(TrainConfig, "batch_size")
LabelSmoothingOpt = option(TrainConfig, "label_smoothing")
WarmupOpt = recipe_option(TrainConfig, "warmup_epochs")
WorkersOpt = option(TrainConfig, "workers")
SeedOpt = option(TrainConfig, "seed")
ResolutionOpt = recipe_option(ProxySettings, "resolution")
WidthOpt = recipe_option(ProxySettings, "width")
PerClassOpt = option(ProxySettings, "per_class")
BnImagesOpt = recipe_option(ProxySettings, "bn_images")
PopulationOpt = recipe_option(SearchSettings, "population")
GenerationsOpt = recipe_option(SearchSettings, "generations")
PrescreenOpt = option(SearchSettings, "prescreen")
PrecisionOpt = option(Deployment, "precision")
LatOpt = Annotated[
    list[str] | None,
    typer.Option("--lat", help="Latency band MIN:MAX in ms (with several --lut: one per table, in order)."),
]
LatRelOpt = Annotated[
    list[str] | None,
    typer.Option("--lat-rel", help="Band relative to --ref, e.g. 0.98:1.15 (with several --lut: one per table)."),
]
RefOpt = Annotated[
    list[str] | None,
    typer.Option("--ref", help="Reference architecture for --lat-rel (with several --lut: one, or one per table)."),
]


def precision_arg(precision: str | None) -> str | None:
    """`--precision` checked (one line naming the choices when it is not one)."""
    return Deployment(precision=precision).precision


def emit_json(data) -> None:
    """Print JSON to stdout (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=1) + "\n")


def fmt_size(n: int) -> str:
    """`6.645e17` for large counts, the plain number for small ones."""
    if n < 10**6:
        return str(n)
    mantissa, exponent = f"{n:.3e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def size_formula(space) -> str:
    """The size as a product of candidate counts, e.g. `3 * 6^6 * 7^15`."""
    counts = Counter(len(c) for c in space.candidates)
    return " * ".join(f"{k}^{v}" if v > 1 else str(k) for k, v in sorted(counts.items()))


def load_arch(text: str, space):
    """An architecture from its string form or from a JSON file holding one."""
    from hnas.spec import arch as archmod

    if text.endswith(".json"):
        from hnas.core.io import MiB, read_json

        fix = "fix it, or give the architecture as a string"
        data = read_json(text, what="architecture file", broken=fix, max_bytes=MiB)
        where = f"architecture file {text}"
        given = data.get("space") if isinstance(data, dict) else None
        if isinstance(given, str) and given.split("@")[0] != space.name.split("@")[0]:  # name@stageK: pruned from it
            raise HnasError(
                f"{where} is an architecture of space {given!r}, not of {space.name!r}: pass --space with its space "
                "(a preset name or the space file)"
            )
        return archmod.from_dict(data, space, where)
    return archmod.parse_arch(text, space)


def numbers(text: str | None, what: str, cast=float) -> list | None:
    """`120,80,40` -> [120, 80, 40]; None (not given) stays None, an empty list is refused."""
    if text is None:
        return None
    try:
        values = [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values:
        raise HnasError(f"{what} {text!r}: write comma-separated numbers, e.g. 120,80,40")
    return values


def refuse_changed_settings(ctx: typer.Context, saved: dict[str, object], out: str, normalize=None) -> None:
    """A run resumes with its saved settings: an option given on this command line whose value differs from the
    saved one is refused in one line naming each difference and how to go on (`saved`: flag -> saved value;
    `normalize`: flag -> function turning the given text into the saved form)."""
    normalize = normalize or {}
    changed = []
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        flag = next((o for o in param.opts if o in saved), None)
        if flag is None:
            continue
        given = ctx.params[param.name]
        now = normalize[flag](given) if flag in normalize else given
        if now != saved[flag]:
            changed.append(f"{flag} {_plain(saved[flag])} (given {_plain(now)})")
    if changed:
        raise HnasError(
            f"{out} was started with " + "; ".join(changed) + ": rerun without those options to resume with the "
            "saved settings, or give another --out (or delete the folder) to start afresh"
        )


def _plain(value) -> str:
    from hnas.core.band import Band

    if isinstance(value, Band):
        return ":".join("" if b is None else f"{b:g}" for b in (value.lo, value.hi))
    if isinstance(value, list | tuple):
        return ",".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return value.get("name", "a space file") if "skeleton" in value else str(value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def figure_ci(row: dict, name: str) -> str:
    """`0.42 [0.10, 0.71]`: a figure of `row` and its interval (`NAME_ci`); `-` where undefined."""

    def num(v):
        return "-" if v is None else f"{v:.2f}"

    lo, hi = row.get(name + "_ci") or (None, None)
    return num(row[name]) + (f" [{num(lo)}, {num(hi)}]" if lo is not None else "")


def option_group(into: str, params: dict[str, tuple[object, object]], make: Callable[..., object]):
    """A decorator for options several commands share, written once: it adds `params` (parameter name ->
    (annotated type, default)) to a command's options and hands the command `make(**their values)` as its
    parameter `into`."""

    def wrap(fn):
        sig = inspect.signature(fn, eval_str=True)
        own = [p for name, p in sig.parameters.items() if name != into]
        kind = inspect.Parameter.KEYWORD_ONLY
        extra = [inspect.Parameter(n, kind, annotation=a, default=d) for n, (a, d) in params.items()]

        @functools.wraps(fn)
        def command(*args, **kwargs):
            values = {n: kwargs.pop(n) for n in params}
            return fn(*args, **kwargs, **{into: make(**values)})

        command.__signature__ = sig.replace(parameters=own + extra)
        return command

    return wrap


def settings_options(cls, into: str, rename: dict[str, str] | None = None, defaults: dict | None = None):
    """`option_group` of every field of settings class `cls` (flag, help, check and default from the field, or
    from `defaults` for a command with its own; `rename`: field -> parameter name), handed to the command as one
    `cls`."""
    rename = rename or {}
    names = {rename.get(f.name, f.name): f.name for f in dataclasses.fields(cls)}
    defaults = {**{f.name: f.default for f in dataclasses.fields(cls)}, **(defaults or {})}
    params = {n: (option(cls, f), defaults[f]) for n, f in names.items()}
    return option_group(into, params, lambda **kw: cls(**{names[n]: v for n, v in kw.items()}))


# `hnas rank` and `hnas study`: the ranking settings (the stand-alone recipe's flags are --standalone-*)
_RANK_PARAMS = {"lr": "standalone_lr", "batch_size": "standalone_batch"}
rank_options = settings_options(RankSettings, "rank", _RANK_PARAMS)
study_rank_options = settings_options(RankSettings, "rank", _RANK_PARAMS, {"pick": StudyDefaults.pick})


@dataclass(frozen=True)
class Given:
    """The training options a command was given (None: not given, the recipe of --data decides; 0 is a value)."""

    proxy: dict
    train: dict


_PROXY = {f.name for f in dataclasses.fields(ProxySettings)}  # which of the options below take over the proxy
_TRAINING = {
    "batch_size": (BatchOpt, None),
    "label_smoothing": (LabelSmoothingOpt, TrainConfig.label_smoothing),
    "resolution": (ResolutionOpt, None),
    "width": (WidthOpt, None),
    "per_class": (PerClassOpt, None),
    "warmup_epochs": (WarmupOpt, None),
    "workers": (WorkersOpt, TrainConfig.workers),
    "seed": (SeedOpt, TrainConfig.seed),
}
# `hnas search` and `hnas supernet train`: the proxy and training options both take over the recipe
training_options = option_group(
    "given",
    _TRAINING,
    lambda **kw: Given({k: v for k, v in kw.items() if k in _PROXY}, {k: v for k, v in kw.items() if k not in _PROXY}),
)
