"""`hnas lut …` and `hnas profile`: build, refresh, show, diff and import latency tables; one-off profiling."""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from hnas.errors import HnasError
from hnas.ops import LayerShape, parse_op
from hnas.space import load_space
from latency.bench import BenchSettings
from latency.items import LutItem, items_for_space
from latency.lut import Lut, now_iso

lut_app = typer.Typer(help="Latency lookup tables: build, refresh, show, diff, import.", no_args_is_help=True)
console = Console(width=None if sys.stdout.isatty() else 160)

DeviceOpt = Annotated[str, typer.Option("--device", help="`local` (this CPU) or a phone (serial or host:port).")]
CoreOpt = Annotated[int | None, typer.Option("--core", help="CPU to pin to (default: the device's big core).")]
BinaryOpt = Annotated[
    str | None, typer.Option("--benchmark-binary", help="A real TFLite benchmark_model binary instead of the runner.")
]
RepeatsOpt = Annotated[int, typer.Option("--repeats", min=1, help="Repeats per entry, interleaved round-robin.")]
RunsOpt = Annotated[int, typer.Option("--runs", min=1, help="Timed runs per repeat (benchmark_model --num_runs).")]
WarmupOpt = Annotated[int, typer.Option("--warmup", min=0, help="Warm-up runs per repeat.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
CacheOpt = Annotated[str | None, typer.Option("--cache", help="TFLite cache folder (default $HNAS_CACHE or ~/.cache).")]


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `12h`, `7d` -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m:
        raise HnasError(f"--max-age {text!r}: write a number with s, m, h or d, e.g. 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def _device(spec: str, core: int | None, binary: str | None, **adb_options):
    from latency.devices import open_device

    return open_device(spec, core=core, benchmark_binary=binary, **adb_options)


def _exporter(cache: str | None):
    from latency.export import Exporter

    return Exporter(cache)


def _report_line(out: Path, report) -> str:
    line = (
        f"{out}: measured {len(report.measured)} entries ({len(report.remeasured)} with extra repeats), "
        f"{report.skipped_fresh} already fresh; exported {report.exported} models, {report.cached} from cache"
    )
    if report.throttled:
        line += f"; {len(report.throttled)} throttled runs re-measured"
    if report.measured:
        line += f"; why: {', '.join(statistics.multimode(report.planned.values()))}"
    return line


def _run_builds(
    jobs: list[tuple],
    items,
    settings: BenchSettings,
    repeats: int,
    spread: float,
    max_age,
    cache,
    performance: bool = False,
):
    """Build one LUT per (device, path) job; several phones measure in parallel, one bar each."""
    import threading

    from latency.build import BuildOptions, build, new_progress, progress_on

    opts = BuildOptions(settings=settings, repeats=repeats, spread_threshold=spread, max_age_s=max_age)
    exporter = _exporter(cache)
    reports, errors = {}, {}
    with new_progress() as prog:
        # convert once, in this thread (conversion is not thread-safe; the cache serves every device)
        with progress_on(prog)("export", len(items)) as advance:
            for it in items:
                exporter.export(it.build(), it.input_shape)
                advance()

        def work(dev, path):
            try:
                if performance:
                    dev.set_performance()
                try:
                    prefix = f"{dev.name} " if len(jobs) > 1 else ""
                    reports[dev.name] = build(dev, items, path, opts, exporter, progress_on(prog, prefix))
                finally:
                    if performance:
                        dev.restore_governor()
                    dev.close()
            except BaseException as exc:  # noqa: BLE001 - reported per device below
                errors[dev.name] = exc

        if len(jobs) == 1:
            work(*jobs[0])
        else:
            threads = [threading.Thread(target=work, args=job, daemon=True) for job in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    for dev, path in jobs:
        if dev.name in reports:
            console.print(_report_line(path, reports[dev.name]))
    if errors:
        name, exc = next(iter(errors.items()))
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.write("interrupted: every finished measurement is saved; rerun the same command to go on\n")
            raise typer.Exit(130)
        if isinstance(exc, HnasError):
            if len(errors) > 1 or len(jobs) > 1:
                raise type(exc)(f"{name}: {exc}") from None
            raise exc
        raise exc
    return reports


def _run_build(device, items, out: Path, settings: BenchSettings, repeats: int, spread: float, max_age, cache):
    return _run_builds([(device, out)], items, settings, repeats, spread, max_age, cache)[device.name]


@lut_app.command("build")
def lut_build(
    device: Annotated[
        list[str], typer.Option("--device", help="`local` or a phone (serial or host:port); repeat for several.")
    ] = None,
    space: Annotated[list[str], typer.Option("--space", help="Preset or space file; repeat for several.")] = None,
    out: Annotated[str | None, typer.Option("--out", help="LUT file (default lut/<device>.json).")] = None,
    repeats: RepeatsOpt = 5,
    runs: RunsOpt = 20,
    warmup: WarmupOpt = 5,
    spread: Annotated[float, typer.Option(help="Re-measure when repeat medians differ by more than this.")] = 0.10,
    core: CoreOpt = None,
    benchmark_binary: BinaryOpt = None,
    cache: CacheOpt = None,
    cool: Annotated[float, typer.Option("--cool", help="Phones: seconds of pause after each model.")] = 0.0,
    max_temp: Annotated[float, typer.Option("--max-temp", help="Phones: re-measure above this many C.")] = 45.0,
    min_freq: Annotated[
        float, typer.Option("--min-freq", help="Phones: re-measure below this fraction of max frequency.")
    ] = 0.9,
    performance: Annotated[
        bool, typer.Option("--performance", help="Phones, root only: performance governor while measuring.")
    ] = False,
    cooldown: Annotated[
        float, typer.Option("--cooldown", help="Phones: seconds to cool after a throttled run.")
    ] = 30.0,
    retries: Annotated[int, typer.Option("--retries", help="Phones: reconnect attempts after a dropped link.")] = 4,
    backoff: Annotated[float, typer.Option("--backoff", help="Phones: first reconnect wait, doubling.")] = 1.0,
) -> None:
    """Measure every entry the spaces need on one or more devices; rerun to continue after an interruption."""
    from latency.build import default_lut_path

    specs = device or ["local"]
    if out and len(specs) > 1:
        raise HnasError("--out names one file; with several --device each phone gets lut/<device>.json")
    spaces = [load_space(s) for s in (space or ["basic"])]
    adb = {
        "cool_s": cool,
        "max_temp_c": max_temp,
        "min_freq_fraction": min_freq,
        "cooldown_s": cooldown,
        "retries": retries,
        "backoff_s": backoff,
    }
    devs = [_device(d, core, benchmark_binary, **({} if d == "local" else adb)) for d in specs]
    items = _dedupe([it for sp in spaces for it in items_for_space(sp)])
    jobs = [(d, Path(out) if out else default_lut_path(d.describe())) for d in devs]
    settings = BenchSettings(warmup_runs=warmup, num_runs=runs)
    _run_builds(jobs, items, settings, repeats, spread, None, cache, performance)


def _dedupe(items: list[LutItem]) -> list[LutItem]:
    seen, out = set(), []
    for it in items:
        if it.key not in seen:
            seen.add(it.key)
            out.append(it)
    return out


@lut_app.command("refresh")
def lut_refresh(
    lut: Annotated[str, typer.Option("--lut", help="The LUT file to refresh.")],
    device: DeviceOpt = "local",
    space: Annotated[list[str], typer.Option("--space", help="Also cover these spaces' entries.")] = None,
    max_age: Annotated[str | None, typer.Option("--max-age", help="Re-measure entries older than this (7d).")] = None,
    core: CoreOpt = None,
    benchmark_binary: BinaryOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Re-measure only missing or stale entries (other settings, runtime, op spec, or older than --max-age)."""
    table = Lut.load(lut)
    if table.device.get("kind") == "published":
        raise HnasError(f"{lut} holds a published table; re-import it with `hnas lut import` instead")
    stored = dict(table.data["settings"])
    repeats = int(stored.pop("repeats", 5))
    stored.pop("core", None)
    settings = BenchSettings.from_dict(stored)
    items = [LutItem.from_spec(e["spec"]) for e in table.entries.values() if e.get("source") == "measured"]
    items += [it for s in (space or []) for it in items_for_space(load_space(s))]
    dev = _device(device, core if core is not None else table.device.get("core"), benchmark_binary)
    age = parse_duration(max_age) if max_age else None
    _run_build(dev, _dedupe(items), Path(lut), settings, repeats, 0.10, age, cache)


@lut_app.command("show")
def lut_show(
    lut: Annotated[str, typer.Argument(help="LUT file.")],
    space: Annotated[str | None, typer.Option("--space", help="Report coverage of this space.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Entries as a table, and the coverage of a space."""
    table = Lut.load(lut)
    coverage = None
    if space:
        sp = load_space(space)
        keys = [it.key for it in items_for_space(sp)]
        have = [k for k in keys if table.latency_ms(k) is not None]
        coverage = {
            "space": sp.name,
            "needed": len(keys),
            "present": len(have),
            "missing": [k for k in keys if k not in set(have)],
        }
    if as_json:
        sys.stdout.write(json.dumps({**table.data, "coverage": coverage}, indent=1) + "\n")
        return
    d, r = table.device, table.data["runtime"]
    console.print(f"device: {d.get('model')} | {d.get('cpu')} | core {d.get('core')} | {d.get('os', '')}")
    console.print(f"runtime: {r.get('kind')} {r.get('tflite_version', '')} | settings: {table.data['settings']}")
    t = Table(title=f"{lut}: {len(table.entries)} entries, {len(table.pending)} unfinished")
    for col in ("key", "median ms", "mean ms", "std ms", "min ms", "runs", "measured", "source"):
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
        )
    console.print(t)
    if coverage:
        console.print(f"coverage of {coverage['space']}: {coverage['present']}/{coverage['needed']} entries")
        for k in coverage["missing"][:20]:
            console.print(f"  missing {k}")


@lut_app.command("diff")
def lut_diff(
    a: Annotated[str, typer.Argument(help="First LUT.")],
    b: Annotated[str, typer.Argument(help="Second LUT.")],
    as_json: JsonOpt = False,
) -> None:
    """Per-entry ratios B / A of the keys both tables have."""
    ta, tb = Lut.load(a), Lut.load(b)
    common = sorted(set(ta.entries) & set(tb.entries))
    rows = [(k, ta.latency_ms(k), tb.latency_ms(k), tb.latency_ms(k) / ta.latency_ms(k)) for k in common]
    only_a, only_b = sorted(set(ta.entries) - set(tb.entries)), sorted(set(tb.entries) - set(ta.entries))
    ratios = [r[3] for r in rows]
    summary = {
        "common": len(rows),
        "only_a": len(only_a),
        "only_b": len(only_b),
        "median_ratio": statistics.median(ratios) if ratios else None,
        "min_ratio": min(ratios) if ratios else None,
        "max_ratio": max(ratios) if ratios else None,
    }
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "summary": summary,
                    "rows": [{"key": k, "a_ms": x, "b_ms": y, "ratio": q} for k, x, y, q in rows],
                    "only_a": only_a,
                    "only_b": only_b,
                },
                indent=1,
            )
            + "\n"
        )
        return
    t = Table(title=f"B/A: {b} over {a}")
    for col in ("key", "A ms", "B ms", "B/A"):
        t.add_column(col, justify="left" if col == "key" else "right")
    for k, x, y, q in rows:
        t.add_row(k, f"{x:.4f}", f"{y:.4f}", f"{q:.3f}")
    console.print(t)
    console.print(
        f"{summary['common']} common entries; median ratio "
        f"{summary['median_ratio'] if summary['median_ratio'] is None else round(summary['median_ratio'], 3)}; "
        f"{len(only_a)} only in A, {len(only_b)} only in B"
    )


@lut_app.command("import")
def lut_import(
    file: Annotated[str, typer.Argument(help="A published table (YAML).")],
    fmt: Annotated[str, typer.Option("--format", help="proxylessnas or ofa.")],
    space: Annotated[list[str], typer.Option("--space", help="Spaces whose keys to map (default proxyless).")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Output LUT (default lut/published-FORMAT.json).")] = None,
    device_name: Annotated[str | None, typer.Option("--device-name", help="Phone the table was measured on.")] = None,
) -> None:
    """Map a published ProxylessNAS or Once-for-All table onto our keys; list what did not map."""
    from hnas.io import sha256_file
    from latency.published import FORMATS, map_published, read_published_table

    if fmt not in FORMATS:
        raise HnasError(f"--format {fmt!r}: use one of {', '.join(FORMATS)}")
    spaces = [load_space(s) for s in (space or ["proxyless"])]
    result = map_published(read_published_table(file, fmt), fmt, spaces)
    default_phone = {"proxylessnas": "Google Pixel 1", "ofa": "Samsung Note10"}[fmt]
    device = {
        "id": f"published-{fmt}",
        "kind": "published",
        "model": device_name or default_phone,
        "cpu": None,
        "core": None,
        "source_file": Path(file).name,
    }
    runtime = {"kind": "published", "name": f"{fmt} table", "tflite_version": None, "sha256": sha256_file(file)}
    path = Path(out) if out else Path("lut") / f"published-{fmt}.json"
    table = Lut.new(device, runtime, {"imported_from": fmt}, path)
    specs = {it.key: it for sp in spaces for it in items_for_space(sp)}
    for key, fig in sorted(result.mapped.items()):
        item: LutItem = specs[key]
        table.entries[key] = {
            "spec": item.to_spec(),
            "median_ms": None,
            "mean_ms": fig.mean_ms,
            "std_ms": fig.std_ms,
            "min_ms": None,
            "runs": fig.count,
            "repeats": 1,
            "measured_at": None,
            "imported_at": now_iso(),
            "source": f"imported:{fmt}",
            "source_key": fig.source_key,
        }
    table.save()
    console.print(f"{path}: {len(result.mapped)} entries mapped from {file}")
    console.print(f"not mapped ({len(result.unmapped)}): " + (", ".join(result.unmapped) or "none"))
    console.print(
        f"missing for {', '.join(s.name for s in spaces)} ({len(result.missing)}): "
        + (", ".join(result.missing) or "none")
    )


def parse_hwc(text: str) -> tuple[int, int]:
    """`28x28x40` -> (28, 40); the feature map must be square."""
    m = re.fullmatch(r"(\d+)x(\d+)x(\d+)", text.strip())
    if not m or m.group(1) != m.group(2):
        raise HnasError(f"--in {text!r}: write HxWxC with H == W, e.g. 28x28x40")
    return int(m.group(1)), int(m.group(3))


def profile(
    model: Annotated[str | None, typer.Argument(help="A .tflite file to measure.")] = None,
    device: DeviceOpt = "local",
    op: Annotated[str | None, typer.Option("--op", help="An op such as IBConv_K5_E6, measured at --in.")] = None,
    in_shape: Annotated[str | None, typer.Option("--in", help="Input HxWxC of --op, e.g. 28x28x40.")] = None,
    out_ch: Annotated[int | None, typer.Option("--out-ch", help="Output channels of --op.")] = None,
    stride: Annotated[int, typer.Option("--stride", help="Stride of --op.")] = 1,
    repeats: RepeatsOpt = 3,
    runs: RunsOpt = 50,
    warmup: WarmupOpt = 5,
    core: CoreOpt = None,
    benchmark_binary: BinaryOpt = None,
    cache: CacheOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One-off measurement of a .tflite model or of one op at one shape, printed as a table."""
    from latency.bench import parse_benchmark_output

    if (model is None) == (op is None):
        raise HnasError("give either MODEL.tflite or --op OP --in HxWxC --out-ch N [--stride S]")
    if op is not None:
        if in_shape is None or out_ch is None:
            raise HnasError("--op needs --in HxWxC and --out-ch N")
        size, in_ch = parse_hwc(in_shape)
        item = LutItem(op=parse_op(op), shape=LayerShape(size, in_ch, out_ch, stride))
        if item.op.is_identity:
            raise HnasError("Identity has no kernel to measure (0 ms by definition)")
        label, path = item.key, _exporter(cache).export(item.build(), item.input_shape).path
    else:
        path = Path(model)
        if not path.is_file() or path.suffix != ".tflite":
            raise HnasError(f"{model} is not a .tflite file")
        label = path.name
    dev = _device(device, core, benchmark_binary)
    remote = dev.push(path)
    settings = BenchSettings(warmup_runs=warmup, num_runs=runs)
    rows = []
    for _ in range(repeats):
        for out in dev.benchmark_batch([remote], settings):
            if out.rc != 0:
                raise HnasError(f"benchmark failed (exit {out.rc}): {out.text.strip().splitlines()[-1:]}")
            rows.append(parse_benchmark_output(out.text).runs)
    desc = dev.describe()
    result = {
        "model": label,
        "device": desc.get("model"),
        "core": desc.get("core"),
        "median_ms": statistics.median(r.median_or_avg_ms for r in rows),
        "repeats": [
            {
                "count": r.count,
                "median_ms": r.median_or_avg_ms,
                "avg_ms": r.avg_ms,
                "min_ms": r.min / 1000 if r.min is not None else None,
                "std_ms": r.std / 1000 if r.std is not None else None,
            }
            for r in rows
        ],
    }
    if as_json:
        sys.stdout.write(json.dumps(result, indent=1) + "\n")
        return
    t = Table(title=f"{label} on {desc.get('model')} core {desc.get('core')}")
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


@lut_app.command("validate")
def lut_validate(
    lut: Annotated[str, typer.Option("--lut", help="The LUT to check (its calibration is refitted).")],
    device: DeviceOpt = "local",
    space: Annotated[str, typer.Option("--space", help="Space to draw architectures from.")] = "basic",
    n: Annotated[int, typer.Option("-n", min=4, help="Random architectures measured end to end.")] = 50,
    fit: Annotated[int, typer.Option("--fit", min=2, help="Of those, how many fit the calibration.")] = 10,
    out: Annotated[str | None, typer.Option("--out", help="Folder for validate.json and the plot.")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    benchmark_binary: BinaryOpt = None,
    cache: CacheOpt = None,
) -> None:
    """Predicted against measured end-to-end latency of N random architectures, before and after calibration."""
    import numpy as np

    from hnas.arch import sample
    from latency.build import new_progress, progress_on
    from latency.predict import LatencyPredictor
    from latency.verify import (
        check_device,
        error_stats,
        fit_calibration,
        measure_networks,
        scatter_plot,
        store_calibration,
    )

    if fit >= n:
        raise HnasError(f"--fit {fit} leaves no held-out architecture of -n {n}: use --fit < -n")
    table = Lut.load(lut)
    sp = load_space(space)
    raw = LatencyPredictor(table, sp, lut, calibrated=False)
    dev = _device(device, table.device.get("core"), benchmark_binary)
    check_device(table, dev, lut)
    archs = sample(sp, n, np.random.default_rng(seed))
    with new_progress() as prog:
        rows = measure_networks(dev, archs, table, _exporter(cache), progress_on(prog))
    pred = np.array([raw.predict_arch(a) for a in archs])
    meas = np.array([r["measured_ms"] for r in rows])
    cal = fit_calibration(pred[:fit], meas[:fit])
    held = slice(fit, n)
    stats_raw, stats_cal = error_stats(pred[held], meas[held]), error_stats(cal.apply(pred[held]), meas[held])
    store_calibration(table, cal, sp.name, fit, stats_raw, stats_cal)
    folder = Path(out) if out else Path(lut).with_suffix("").parent / (Path(lut).stem + "-validate")
    from hnas.io import atomic_write_json

    report = {
        "lut": lut,
        "space": sp.name,
        "device": dev.describe(),
        "n": n,
        "fit": fit,
        "calibration": {"offset_ms": cal.offset_ms, "scale": cal.scale},
        "held_out_raw": stats_raw,
        "held_out_calibrated": stats_cal,
        "networks": [
            {**r, "predicted_raw_ms": float(p), "predicted_calibrated_ms": float(cal.apply(p)), "used_for_fit": i < fit}
            for i, (r, p) in enumerate(zip(rows, pred))
        ],
    }
    atomic_write_json(folder / "validate.json", report)
    scatter_plot(
        folder / "validate.png",
        pred,
        meas,
        cal.apply(pred),
        title=f"{sp.name} on {table.device.get('model')}: {n} networks",
    )
    t = Table(title=f"{n - fit} held-out networks ({fit} fitted the calibration)")
    for col in ("prediction", "MAPE", "within 5 %", "within 10 %", "max error", "Kendall tau"):
        t.add_column(col, justify="right")
    for name, st in (("raw LUT sum", stats_raw), ("calibrated", stats_cal)):
        t.add_row(
            name,
            f"{st['mape'] * 100:.2f} %",
            f"{st['within_5'] * 100:.0f} %",
            f"{st['within_10'] * 100:.0f} %",
            f"{st['max_abs_error'] * 100:.1f} %",
            f"{st['kendall_tau']:.3f}",
        )
    console.print(t)
    console.print(
        f"calibration: measured = {cal.offset_ms:.3f} ms + {cal.scale:.4f} x LUT sum (stored in {lut}); "
        f"report {folder / 'validate.json'}, plot {folder / 'validate.png'}"
    )
