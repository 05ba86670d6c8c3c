"""`hnas lut build|refresh|show|diff|import|validate`, `hnas profile`, `hnas devices` and `hnas verify`."""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hnas.cli.common import (
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    console,
    emit_json,
    load_arch,
    option_group,
    precision_arg,
)
from hnas.cli.show import print_diff, print_validation, print_verify
from hnas.core.errors import HnasError
from latency import defaults

lut_app = typer.Typer(
    rich_markup_mode=None,
    help="Latency lookup tables: build, refresh, show, diff, import, validate.",
    no_args_is_help=True,
)

CoreOpt = Annotated[int | None, typer.Option("--core", help="CPU to pin to (default: the device's big core).")]
BinaryOpt = Annotated[
    str | None,
    typer.Option("--benchmark-binary", help="A real TFLite benchmark_model binary (phones: the Android arm64 one)."),
]
RepeatsOpt = Annotated[int, typer.Option("--repeats", min=1, help="Repeats per entry, interleaved round-robin.")]
RunsOpt = Annotated[int, typer.Option("--runs", min=1, help="Timed runs per repeat (benchmark_model --num_runs).")]
WarmupRunsOpt = Annotated[int, typer.Option("--warmup", min=0, help="Warm-up runs per repeat.")]
CacheOpt = Annotated[str | None, typer.Option("--cache", help="TFLite cache folder (default $HNAS_CACHE or ~/.cache).")]
SpreadOpt = Annotated[
    float,
    typer.Option(
        "--spread", min=0.0001, help="Repeats agree when their medians differ by at most this (else: measured again)."
    ),
]


@dataclass(frozen=True)
class Measuring:
    """How `hnas lut build` and `hnas profile` measure: the options they share."""

    repeats: int
    runs: int
    warmup: int
    spread: float
    core: int | None
    benchmark_binary: str | None
    cache: str | None

    @property
    def bench(self):
        from latency.bench import BenchSettings

        return BenchSettings(warmup_runs=self.warmup, num_runs=self.runs)

    @property
    def stability(self):
        from latency.stability import Stability

        return Stability(spread=self.spread)


def measuring_options(runs: int):
    """The measuring options (`Measuring`), `runs` timed runs per repeat by default."""
    params = {
        "repeats": (RepeatsOpt, defaults.REPEATS),
        "runs": (RunsOpt, runs),
        "warmup": (WarmupRunsOpt, defaults.WARMUP_RUNS),
        "spread": (SpreadOpt, defaults.SPREAD),
        "core": (CoreOpt, None),
        "benchmark_binary": (BinaryOpt, None),
        "cache": (CacheOpt, None),
    }
    return option_group("measuring", params, Measuring)


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `12h`, `7d` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise HnasError(f"--max-age {text!r}: write a number with s, m, h or d, e.g. 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def parse_hwc(text: str) -> tuple[int, int]:
    """`28x28x40` -> (28, 40); the feature map must be square and within the shape limits of `hnas.spec.ops`."""
    from hnas.spec.ops import MAX_CHANNELS, MAX_SIZE

    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text.strip())
    if not m or m.group(1) != m.group(2):
        raise HnasError(f"--in {text!r}: write HxWxC with H == W, e.g. 28x28x40")
    size, channels = int(m.group(1)), int(m.group(3))
    if not (1 <= size <= MAX_SIZE and 1 <= channels <= MAX_CHANNELS):
        raise HnasError(f"--in {text!r}: H and W must be from 1 to {MAX_SIZE}, C from 1 to {MAX_CHANNELS}")
    return size, channels


def _exporter(cache: str | None):
    from latency.export import Exporter

    return Exporter(cache)


def _builds(jobs, items, options, cache, performance: bool = False) -> None:
    """Run `build_many` under progress bars and print one line per table; an interrupt is one line too."""
    from hnas.core.progress import bars
    from latency.build import build_many, report_line

    try:
        with bars() as factory:
            reports = build_many(jobs, items, options, _exporter(cache), factory, performance)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: every finished measurement is saved; rerun the same command to go on\n")
        raise typer.Exit(130) from None
    for report in reports.values():
        console.print(report_line(report))


@lut_app.command("build")
@measuring_options(defaults.RUNS)
def lut_build(
    device: Annotated[
        list[str], typer.Option("--device", help="`local` or a phone (serial or host:port); repeat for several.")
    ] = None,
    space: Annotated[list[str], typer.Option("--space", help="Preset or space file; repeat for several.")] = None,
    out: Annotated[str | None, typer.Option("--out", help="LUT file (default lut/<device>.json).")] = None,
    measuring: Measuring = None,
    cool: Annotated[
        float, typer.Option("--cool", min=0, help="Phones: seconds of pause after each model.")
    ] = defaults.COOL_S,
    max_temp: Annotated[
        float, typer.Option("--max-temp", help="Phones: re-measure above this many C.")
    ] = defaults.MAX_TEMP_C,
    min_freq: Annotated[
        float, typer.Option("--min-freq", min=0, max=1, help="Phones: re-measure below this fraction of max frequency.")
    ] = defaults.MIN_FREQ_FRACTION,
    performance: Annotated[
        bool, typer.Option("--performance", help="Phones, root only: performance governor while measuring.")
    ] = False,
    cooldown: Annotated[
        float, typer.Option("--cooldown", min=0, help="Phones: seconds to cool after a throttled run.")
    ] = defaults.COOLDOWN_S,
    retries: Annotated[
        int, typer.Option("--retries", min=0, help="Phones: reconnect attempts after a dropped link.")
    ] = defaults.RETRIES,
    backoff: Annotated[
        float, typer.Option("--backoff", min=0, help="Phones: first reconnect wait, doubling.")
    ] = defaults.BACKOFF_S,
    precision: PrecisionOpt = None,
    beside: Annotated[
        bool,
        typer.Option(
            "--convert-beside/--measure-alone",
            help="The host: convert on its other CPUs while its pinned core measures, or convert everything first "
            "and measure with the other CPUs idle (a phone's build always converts while the phone measures).",
        ),
    ] = defaults.CONVERT_BESIDE_HOST,
) -> None:
    """Measure every entry the spaces need on one or more devices; rerun to continue after an interruption."""
    from hnas.spec.space import load_space
    from latency.backends import open_device
    from latency.build import BuildOptions, default_lut_path
    from latency.items import dedupe, items_for_space
    from latency.precision import build_precision

    specs = device or ["local"]
    if out is not None and len(specs) > 1:
        raise HnasError("--out names one file; with several --device each phone gets lut/<device>.json")
    spaces = [load_space(s) for s in (space or ["basic"])]
    phone = {
        "cool_s": cool,
        "max_temp_c": max_temp,
        "min_freq_fraction": min_freq,
        "cooldown_s": cooldown,
        "retries": retries,
        "backoff_s": backoff,
    }
    prec = build_precision(precision_arg(precision), Path(out) if out is not None else None)
    m = measuring
    options = BuildOptions(m.bench, m.repeats, m.stability, precision=prec, beside_host=beside)
    devs = [open_device(d, m.core, m.benchmark_binary, **({} if d == "local" else phone)) for d in specs]
    items = dedupe([it for sp in spaces for it in items_for_space(sp, prec)])
    jobs = [(d, Path(out) if out is not None else default_lut_path(d.describe(), precision=prec)) for d in devs]
    _builds(jobs, items, options, m.cache, performance)


@lut_app.command("refresh")
def lut_refresh(
    lut: Annotated[str, typer.Option("--lut", help="The LUT file to refresh.")],
    device: DeviceOpt = "local",
    space: Annotated[list[str], typer.Option("--space", help="Also cover these spaces' entries.")] = None,
    max_age: Annotated[str | None, typer.Option("--max-age", help="Re-measure entries older than this (7d).")] = None,
    unstable: Annotated[
        bool, typer.Option("--unstable", help="Also re-measure entries marked unstable (best on a quiet machine).")
    ] = False,
    core: CoreOpt = None,
    benchmark_binary: BinaryOpt = None,
    cache: CacheOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Re-measure only missing or stale entries (other settings, runtime, op spec, or older than --max-age; with
    --unstable, entries whose repeats disagreed)."""
    from hnas.spec.parts import Part
    from hnas.spec.space import load_space
    from latency.backends import open_device
    from latency.build import BuildOptions
    from latency.items import dedupe, items_for_space
    from latency.lut import Lut
    from latency.precision import require

    age = parse_duration(max_age) if max_age is not None else None
    table = Lut.load(lut)
    if table.is_published:
        raise HnasError(f"{lut} holds a published table; re-import it with `hnas lut import` instead")
    prec = require(table, precision_arg(precision), lut)
    settings, repeats = table.bench_settings()
    items = [Part.from_spec(e["spec"]) for e in table.entries.values() if e.get("source") == "measured"]
    items += [it for s in (space or []) for it in items_for_space(load_space(s), prec)]
    dev = open_device(device, core if core is not None else table.device.get("core"), benchmark_binary)
    options = BuildOptions(settings, repeats, max_age_s=age, precision=prec, unstable=unstable)
    _builds([(dev, Path(lut))], dedupe(items), options, cache)


@lut_app.command("show")
def lut_show(
    lut: Annotated[str, typer.Argument(help="LUT file.")],
    space: Annotated[str | None, typer.Option("--space", help="Report coverage of this space.")] = None,
    as_json: JsonOpt = False,
    precision: PrecisionOpt = None,
) -> None:
    """Entries as a table, and the coverage of a space."""
    from hnas.spec.space import load_space
    from latency.items import items_for_space
    from latency.lut import Lut
    from latency.precision import require

    table = Lut.load(lut)
    prec = require(table, precision_arg(precision), lut)
    coverage = None
    if space:
        sp = load_space(space)
        keys = [it.key for it in items_for_space(sp, prec)]
        have = {k for k in keys if table.latency_ms(k) is not None}
        coverage = {
            "space": sp.name,
            "needed": len(keys),
            "present": len(have),
            "missing": [k for k in keys if k not in have],
        }
    if as_json:
        emit_json({**table.data, "precision": prec, "coverage": coverage})
        return
    d, r = table.device, table.data["runtime"]
    console.print(f"device: {d.get('model')} | {d.get('cpu')} | core {d.get('core')} | {d.get('os', '')}")
    console.print(f"precision: {prec}")
    console.print(f"runtime: {r.get('kind')} {r.get('tflite_version', '')} | settings: {table.data['settings']}")
    t = Table(title=f"{lut}: {len(table.entries)} entries, {len(table.pending)} unfinished")
    for col in ("key", "median ms", "mean ms", "std ms", "min ms", "runs", "measured", "source", "stable"):
        t.add_column(col, justify="left" if col in ("key", "measured", "source") else "right")

    def f(x):
        return "-" if x is None else f"{x:.4f}"

    for key in sorted(table.entries):
        e = table.entries[key]
        t.add_row(
            key,
            f(e.get("median_ms")),
            f(e.get("mean_ms")),
            f(e.get("std_ms")),
            f(e.get("min_ms")),
            str(e.get("runs", "")),
            (e.get("measured_at") or "")[:19],
            e.get("source", "measured"),
            _stable_cell(e),
        )
    console.print(t)
    if coverage:
        console.print(f"coverage of {coverage['space']}: {coverage['present']}/{coverage['needed']} entries")
        for k in coverage["missing"][:20]:
            console.print(f"  missing {k}")


def _stable_cell(entry: dict) -> str:
    """`yes`, `no (14 %)`, `no (1 repeat)` or `-` (not judged: an imported or older entry)."""
    from latency.lut import entry_doubt

    doubt = entry_doubt(entry)
    if doubt == "measured once":
        return "no (1 repeat)"
    if doubt == "unstable":
        spread = entry.get("spread")
        return "no" if spread is None else f"no ({spread * 100:.0f} %)"
    return {True: "yes"}.get(entry.get("stable"), "-")


@lut_app.command("diff")
def lut_diff(
    a: Annotated[str, typer.Argument(help="First LUT.")],
    b: Annotated[str, typer.Argument(help="Second LUT.")],
    as_json: JsonOpt = False,
    precision: PrecisionOpt = None,
) -> None:
    """Per-entry ratios B / A of the parts both tables measured, and per op how the ratio varies (an int8 table
    over a float32 one: each part's int8 / float32 ratio). --precision: both tables must hold it."""
    from latency.compare import diff_tables
    from latency.lut import Lut
    from latency.precision import require

    ta, tb = Lut.load(a), Lut.load(b)
    prec = precision_arg(precision)
    require(ta, prec, a)
    require(tb, prec, b)
    result = diff_tables(ta, tb)
    if as_json:
        emit_json(result)
        return
    print_diff(result, a, b)


@lut_app.command("import")
def lut_import(
    file: Annotated[str, typer.Argument(help="A published table (YAML).")],
    fmt: Annotated[str, typer.Option("--format", help="proxylessnas or ofa.")],
    space: Annotated[list[str], typer.Option("--space", help="Spaces whose keys to map (default proxyless).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Output LUT (default lut/published-FORMAT.json).")] = None,
    device_name: Annotated[str | None, typer.Option("--device-name", help="Phone the table was measured on.")] = None,
) -> None:
    """Map a published ProxylessNAS or Once-for-All table onto our keys; list what did not map."""
    from hnas.spec.space import load_space
    from latency.published import FORMATS, import_table

    if fmt not in FORMATS:
        raise HnasError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    spaces = [load_space(s) for s in (space or ["proxyless"])]
    path = Path(out) if out is not None else Path("lut") / f"published-{fmt}.json"
    _, result = import_table(file, fmt, spaces, path, device_name)
    console.print(f"{path}: {len(result.mapped)} entries mapped from {file}")
    console.print(f"not mapped ({len(result.unmapped)}): " + (", ".join(result.unmapped) or "none"))
    console.print(
        f"missing for {', '.join(s.name for s in spaces)} ({len(result.missing)}): "
        + (", ".join(result.missing) or "none")
    )


@lut_app.command("validate")
def lut_validate(
    lut: Annotated[str, typer.Option("--lut", help="The LUT to check (its calibration is refitted).")],
    device: DeviceOpt = "local",
    space: Annotated[str, typer.Option("--space", help="Space to draw architectures from.")] = "basic",
    n: Annotated[int, typer.Option("-n", help="Random architectures measured end to end (at least 4).")] = 50,
    fit: Annotated[int, typer.Option("--fit", min=2, help="Of those, how many fit the calibration.")] = 10,
    out: Annotated[str | None, typer.Option("--out", help="Folder for validate.json and the plot.")] = None,
    seed: Annotated[int, typer.Option(help="Seed (the same seed draws the same networks for every table).")] = 0,
    spread: SpreadOpt = defaults.SPREAD,
    benchmark_binary: BinaryOpt = None,
    cache: CacheOpt = None,
    precision: PrecisionOpt = None,
) -> None:
    """Predicted against measured end-to-end latency of N random architectures, before and after calibration."""
    from hnas.core.progress import bars
    from hnas.settings import MAX_COUNT, SEED, between, check_value
    from hnas.spec.space import load_space
    from latency.backends import open_device
    from latency.lut import Lut
    from latency.stability import Stability
    from latency.validate import validate

    check_value("-n", n, between(4, MAX_COUNT))
    check_value("--seed", seed, SEED)
    if fit >= n:
        raise HnasError(f"--fit {fit} leaves no held-out architecture of -n {n}: use --fit < -n")
    sp = load_space(space)
    dev = open_device(device, Lut.load(lut).device.get("core"), benchmark_binary)
    with bars() as factory:
        report = validate(
            lut,
            dev,
            sp,
            n,
            fit,
            out,
            seed,
            _exporter(cache),
            factory,
            Stability(spread=spread),
            precision_arg(precision),
        )
    print_validation(report)


@measuring_options(defaults.PROFILE_RUNS)
def profile(
    model: Annotated[str | None, typer.Argument(help="A .tflite file to measure.")] = None,
    device: DeviceOpt = "local",
    op: Annotated[str | None, typer.Option("--op", help="An op such as IBConv_K5_E6, measured at --in.")] = None,
    in_shape: Annotated[str | None, typer.Option("--in", help="Input HxWxC of --op, e.g. 28x28x40.")] = None,
    out_ch: Annotated[int | None, typer.Option("--out-ch", help="Output channels of --op.")] = None,
    stride: Annotated[int, typer.Option("--stride", help="Stride of --op.")] = 1,
    measuring: Measuring = None,
    as_json: JsonOpt = False,
    precision: PrecisionOpt = None,
) -> None:
    """One-off measurement of a .tflite model or of one op at one shape (at --precision, default float32),
    printed as a table."""
    from latency.backends import open_device
    from latency.profile import profile_model

    if (model is None) == (op is None):
        raise HnasError("give either MODEL.tflite or --op OP --in HxWxC --out-ch N [--stride S]")
    precision = precision_arg(precision)
    if op is not None:
        from hnas.core.precision import FLOAT32
        from hnas.settings import between, check_value
        from hnas.spec.ops import MAX_CHANNELS, LayerShape, parse_op
        from hnas.spec.parts import block

        if in_shape is None or out_ch is None:
            raise HnasError("--op needs --in HxWxC and --out-ch N")
        size, in_ch = parse_hwc(in_shape)
        check_value("--out-ch", out_ch, between(1, MAX_CHANNELS))
        item = block(parse_op(op), LayerShape(size, in_ch, out_ch, stride)).at(precision or FLOAT32)
        if item.op.is_identity:
            raise HnasError("Identity has no kernel to measure (0 ms by definition)")
        from latency.export import require_parts_fit

        require_parts_fit([item], "--op")
        label, path = item.key, _exporter(measuring.cache).export_part(item).path
    else:
        from latency.quantize import precision_of

        path = Path(model)
        if not path.is_file() or path.suffix != ".tflite":
            raise HnasError(f"{model} is not a .tflite file")
        if precision is not None and precision_of(path) != precision:
            raise HnasError(
                f"{model} is {precision_of(path)}, not {precision}: drop --precision (a model has its own precision)"
            )
        label = path.name
    m = measuring
    dev = open_device(device, m.core, m.benchmark_binary)
    result = profile_model(dev, path, label, m.bench, m.repeats, m.stability)
    if as_json:
        emit_json(result)
        return
    t = Table(title=f"{label} on {result['device']} core {result['core']}")
    for col in ("repeat", "runs", "median ms", "mean ms", "std ms", "min ms"):
        t.add_column(col, justify="right")
    for i, rep in enumerate(result["repeats"], 1):
        t.add_row(
            str(i),
            str(rep["count"]),
            f"{rep['median_ms']:.4f}",
            f"{rep['avg_ms']:.4f}",
            "-" if rep["std_ms"] is None else f"{rep['std_ms']:.4f}",
            "-" if rep["min_ms"] is None else f"{rep['min_ms']:.4f}",
        )
    console.print(t)
    console.print(f"median of repeat medians: {result['median_ms']:.4f} ms")
    if not result["stable"]:
        from latency.stability import why_unstable

        medians = [r["median_ms"] for r in result["repeats"]]
        console.print(f"unstable: {why_unstable(medians, result['spread'])}")
    if result["host_busy"]:
        console.print(f"the host was busy while measuring: {result['host_busy']}")


def devices(
    tcp: Annotated[list[str], typer.Option("--tcp", help="Also probe a phone at HOST:PORT.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Attached phones (serial, model, state) and `local`."""
    from latency.adb import list_devices
    from latency.devices import LocalDevice

    rows = [{"serial": "local", "model": LocalDevice().describe()["cpu"], "state": "device", "transport": "host"}]
    rows += list_devices(tcp or [])
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=1) + "\n")
        return
    t = Table(title="devices")
    for col in ("serial", "model", "state", "transport"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["serial"], r.get("model") or "-", r["state"], r["transport"])
    console.print(t)


def verify_model_line(r: dict) -> str:
    """One line for `hnas verify --model`."""
    dev = r["device"]
    state = "stable" if r["stable"] else f"unstable (spread {r['spread']})"
    busy = f"; host busy: {r['host_busy']}" if r["host_busy"] else ""
    return (
        f"{r['model']} ({r['precision']}, sha256 {r['sha256'][:16]}) on {dev.get('model')} core {dev.get('core')}: "
        f"{r['measured_ms']:.4f} ms, median of {len(r['repeat_medians_ms'])} repeats, {state}{busy}"
    )


def verify(
    run: Annotated[str | None, typer.Argument(help="A search run folder: verifies its best architecture.")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="An architecture instead of a run's best.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="A .tflite file (e.g. a shipped one) instead of a network.")
    ] = None,
    space: Annotated[str, typer.Option("--space", help="Space of --arch.")] = "basic",
    lut: Annotated[str | None, typer.Option("--lut", help="LUT (default: the run's).")] = None,
    device: Annotated[str, typer.Option("--device", help="local or a phone; must be the LUT's device.")] = "local",
    op_profile: Annotated[bool, typer.Option("--op-profile", help="Per-layer times next to the LUT entries.")] = False,
    spread: SpreadOpt = defaults.SPREAD,
    benchmark_binary: BinaryOpt = None,
    as_json: JsonOpt = False,
    precision: PrecisionOpt = None,
) -> None:
    """Measure the chosen network end to end with the LUT's settings and precision; print predicted against
    measured. An int8 verification of a RUN also reports the int8 network's top-1 against the float one's."""
    from contextlib import nullcontext

    from hnas.core.progress import bars
    from latency.stability import Stability
    from latency.verify import verify_arch

    if sum(x is not None for x in (run, arch, model)) != 1:
        raise HnasError("give a search RUN folder, --arch ARCH (with --space and --lut) or --model FILE.tflite")
    precision = precision_arg(precision)
    if model is not None:
        from hnas.workflows.ship import verify_model

        result = verify_model(model, device, lut, benchmark_binary, Stability(spread=spread))
        if as_json:
            emit_json(result)
            return
        console.print(verify_model_line(result))
        return
    if run is not None:
        from hnas.workflows.verify import verify_run

        with nullcontext(None) if as_json else bars() as factory:
            result = verify_run(
                run, lut, device, op_profile, benchmark_binary, precision, factory, stability=Stability(spread=spread)
            )
    else:
        from hnas.spec.space import load_space

        if lut is None:
            raise HnasError("--lut is needed with --arch")
        a = load_arch(arch, load_space(space))
        with nullcontext(None) if as_json else bars() as factory:
            result = verify_arch(
                a,
                lut,
                device,
                op_profile,
                benchmark_binary,
                factory,
                stability=Stability(spread=spread),
                precision=precision,
            )
    if as_json:
        emit_json(result)
        return
    print_verify(result)
