"""The `hnas` command line."""

from __future__ import annotations

import contextlib
import json
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from hnas import arch as archmod
from hnas.cost import arch_cost
from hnas.errors import HnasError
from hnas.space import SearchSpace, load_space
from latency.cli import devices, lut_app, profile

app = typer.Typer(
    help="Hierarchical Neural Architecture Search for phones: search spaces, latency tables, search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
space_app = typer.Typer(
    help="Inspect search spaces (presets basic, large, proxyless, or a JSON/YAML file).", no_args_is_help=True
)
arch_app = typer.Typer(help="Inspect architectures.", no_args_is_help=True)
app.add_typer(space_app, name="space")
app.add_typer(arch_app, name="arch")
app.add_typer(lut_app, name="lut")
supernet_app = typer.Typer(help="Train and evaluate single-path one-shot supernets.", no_args_is_help=True)
app.add_typer(supernet_app, name="supernet")
app.command("profile")(profile)
app.command("devices")(devices)

# wide enough for a large space's candidate lists when the output goes to a file or a pipe
console = Console(width=None if sys.stdout.isatty() else 160)

SpaceArg = Annotated[str, typer.Argument(help="Preset name (basic, large, proxyless) or a .json/.yaml space file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
SpaceOpt = Annotated[str, typer.Option("--space", help="Preset or space file.")]
DataOpt = Annotated[str, typer.Option("--data", help="digits, cifar10:PATH, imagenet:PATH.")]
WorkersOpt = Annotated[int, typer.Option(help="Data loader workers.")]
SeedOpt = Annotated[int, typer.Option(help="Seed.")]
LabelSmoothingOpt = Annotated[float, typer.Option("--label-smoothing")]
ProxyPerClassOpt = Annotated[int | None, typer.Option("--per-class", help="Proxy: training images per class.")]
WarmupOpt = Annotated[
    int,
    typer.Option(
        "--warmup-epochs",
        help="First epochs with each stage-first layer held at its smallest op, then all candidates start from it "
        "(short budgets need it).",
    ),
]


def fmt_size(n: int) -> str:
    """`6.645e17` for large counts, the plain number for small ones."""
    if n < 10**6:
        return str(n)
    mantissa, exponent = f"{n:.3e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def size_formula(sp: SearchSpace) -> str:
    """The size as a product of candidate counts, e.g. `3 * 6^6 * 7^15`."""
    counts = Counter(len(c) for c in sp.candidates)
    return " * ".join(f"{k}^{v}" if v > 1 else str(k) for k, v in sorted(counts.items()))


def emit_json(data) -> None:
    """Print JSON to stdout (no colour, no wrapping)."""
    sys.stdout.write(json.dumps(data, indent=1) + "\n")


def load_arch(text: str, space: SearchSpace) -> archmod.Architecture:
    """An architecture from its string form or from a JSON file holding one."""
    path = Path(text)
    if text.endswith(".json"):
        if not path.is_file():
            raise HnasError(f"architecture file {text} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise HnasError(f"architecture file {text} is not valid JSON: {exc}") from None
        return archmod.from_dict(data, space)
    return archmod.parse_arch(text, space)


@space_app.command("show")
def space_show(space: SpaceArg, as_json: JsonOpt = False) -> None:
    """One row per searchable layer (stage, shapes, stride, candidate ops), then the space size."""
    sp = load_space(space)
    if as_json:
        data = sp.to_dict()
        data["layers"] = [
            {
                "layer": L.index,
                "stage": L.stage,
                "block": L.position,
                "input": L.shape.text().split("->")[0],
                "output": L.shape.text().split("->")[1],
                "stride": L.shape.stride,
                "candidates": [o.name for o in L.candidates],
            }
            for L in sp.layers
        ]
        data["fixed"] = [p.key for p in sp.skeleton.fixed_parts]
        emit_json(data)
        return
    sk = sp.skeleton
    table = Table(title=f"space {sp.name}: {sk.resolution}x{sk.resolution} input, {sk.num_classes} classes")
    for col in ("layer", "stage", "input", "output", "stride", "#", "candidate ops"):
        table.add_column(col, justify="right" if col in ("layer", "stage", "stride", "#") else "left")
    for L in sp.layers:
        i, o = L.shape.text().split("->")
        table.add_row(
            str(L.index),
            str(L.stage),
            i,
            o,
            str(L.shape.stride),
            str(len(L.candidates)),
            " ".join(op.short for op in L.candidates),
        )
    console.print(table)
    console.print("fixed parts: " + ", ".join(p.key for p in sk.fixed_parts))
    console.print(f"searchable layers: {sp.num_layers}")
    console.print(f"size: {fmt_size(sp.size())} = {size_formula(sp)} ({sp.size()} architectures)")


@space_app.command("sample")
def space_sample(
    space: SpaceArg,
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="How many architectures.")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Random valid architectures (uniform per layer), one string per line."""
    sp = load_space(space)
    archs = archmod.sample(sp, n, np.random.default_rng(seed))
    if as_json:
        emit_json([a.to_dict() for a in archs])
    else:
        for a in archs:
            sys.stdout.write(f"{a}\n")


@arch_app.command("info")
def arch_info(
    arch: Annotated[str, typer.Argument(help="Architecture string (e.g. from `hnas space sample`) or a JSON file.")],
    space: Annotated[str, typer.Option("--space", help="Preset name or space file.")] = "basic",
    lut: Annotated[str | None, typer.Option("--lut", help="Also predict latency from this LUT.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """MACs and parameters (and, with --lut, predicted latency) at the space's deployment resolution."""
    sp = load_space(space)
    a = load_arch(arch, sp)
    cost = arch_cost(a)
    latency_ms = None
    if lut is not None:
        from latency.lut import Lut
        from latency.predict import LatencyPredictor

        latency_ms = LatencyPredictor(Lut.load(lut), sp, lut_name=lut).predict_arch(a)
    if as_json:
        extra = {"latency_ms": latency_ms, "lut": lut} if lut else {}
        emit_json({**a.to_dict(), "macs": cost.macs, "params": cost.params, **extra})
        return
    console.print(f"arch: {a}", soft_wrap=True)
    table = Table()
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("space", sp.name)
    table.add_row("MACs", f"{cost.macs / 1e6:.1f} M")
    table.add_row("params", f"{cost.params / 1e6:.3f} M")
    if latency_ms is not None:
        table.add_row("predicted latency", f"{latency_ms:.3f} ms")
        table.add_row("LUT", lut)
    console.print(table)


def parse_band(text: str | None) -> tuple[float | None, float | None]:
    """`60:70` -> (60.0, 70.0); either side may be empty."""
    if text is None:
        return None, None
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return (float(lo) if lo else None, float(hi) if hi else None)
    except ValueError:
        raise HnasError(f"latency band {text!r}: write MIN:MAX in ms, e.g. 60:70") from None


@supernet_app.command("train")
def supernet_train(
    out: Annotated[str, typer.Option("--out", help="Run folder; an existing run resumes.")],
    space: SpaceOpt = "basic",
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option(help="Epochs.")] = 120,
    lr: Annotated[float, typer.Option(help="Initial learning rate (linear decay to 0).")] = 0.5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size (per process).")] = 1024,
    label_smoothing: LabelSmoothingOpt = 0.0,
    resolution: Annotated[int, typer.Option(help="Proxy input resolution for training.")] = 224,
    width: Annotated[float, typer.Option(help="Proxy width multiplier for training.")] = 1.0,
    per_class: ProxyPerClassOpt = None,
    lut: Annotated[str | None, typer.Option("--lut", help="LUT for latency-banded path sampling.")] = None,
    lat: Annotated[str | None, typer.Option("--lat", help="Sample only paths with latency MIN:MAX ms.")] = None,
    warmup_epochs: WarmupOpt = 0,
    workers: WorkersOpt = 0,
    seed: SeedOpt = 0,
) -> None:
    """Train a SPOS supernet (uniform single paths); rerun with the same --out to resume."""
    from hnas.runs import ProxySettings, RunConfig, SupernetRun
    from hnas.train import TrainConfig, init_distributed

    init_distributed()
    lo, hi = parse_band(lat)
    run_dir = Path(out)
    if (run_dir / "config.json").is_file():
        console.print(f"resuming {run_dir} with the settings in its config.json")
        run = SupernetRun.open(run_dir)
    else:
        cfg = RunConfig(
            space=load_space(space).to_dict(),
            data=data,
            proxy=ProxySettings(resolution=resolution, width=width, per_class=per_class),
            train=TrainConfig(
                epochs=epochs,
                lr=lr,
                batch_size=batch_size,
                label_smoothing=label_smoothing,
                seed=seed,
                workers=workers,
                lat_min=lo,
                lat_max=hi,
                warmup_epochs=warmup_epochs,
            ),
            lut=lut,
        )
        run = SupernetRun.open(run_dir, cfg)
    history = run.train()
    for h in history:
        acc = "-" if h.val_acc is None else f"{h.val_acc:.3f}"
        console.print(f"epoch {h.epoch + 1}: loss {h.loss:.3f}  train acc {h.train_acc:.3f}  supernet val acc {acc}")
    from hnas.train import chance_hint

    hint = chance_hint(history, run.data().num_classes, run.config.train)
    if hint:
        console.print(hint)


@supernet_app.command("eval")
def supernet_eval(
    run: Annotated[str, typer.Argument(help="Run folder of `hnas supernet train`.")],
    arch: Annotated[list[str], typer.Option("--arch", help="Architecture string or JSON file; repeatable.")],
    as_json: JsonOpt = False,
) -> None:
    """One-shot top-1 (after exact BN recalibration) of architectures on a trained supernet."""
    from hnas.runs import SupernetRun

    r = SupernetRun.open(run)
    supernet = r.build_supernet()
    space = SearchSpace.from_dict(r.config.space) if not r.checkpoint.is_file() else None
    from hnas.train import load_checkpoint

    if space is None:
        space = SearchSpace.from_dict(load_checkpoint(r.checkpoint)["deploy_space"])
    ev = r.evaluator(supernet, tag="cli")
    rows = []
    for a in arch:
        parsed = load_arch(a, space)
        rows.append({"arch": str(parsed), "top1": ev.accuracy(parsed), "macs": arch_cost(parsed).macs})
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"one-shot top-1 on {r.config.data} val ({len(ev.val_loader.dataset)} images)")
    for col in ("arch", "top-1", "MACs"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["arch"], f"{row['top1']:.4f}", f"{row['macs'] / 1e6:.1f} M")
    console.print(table)


def _floats(text: str | None, what: str, cast=float) -> list | None:
    if text is None:
        return None
    try:
        return [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HnasError(f"{what} {text!r}: write comma-separated numbers, e.g. 120,80,40") from None


@app.command("search")
def search(
    out: Annotated[str, typer.Option("--out", help="Run folder; an existing run resumes.")],
    lut: Annotated[str | None, typer.Option("--lut", help="Latency table of the target device.")] = None,
    space: SpaceOpt = "basic",
    data: DataOpt = "digits",
    stages: Annotated[int, typer.Option("--stages", help="M: 2 = I-Supernet, 3 = P-Supernet, 4 = HNAS.")] = 4,
    lat: Annotated[str | None, typer.Option("--lat", help="Latency band MIN:MAX in ms.")] = None,
    lat_rel: Annotated[str | None, typer.Option("--lat-rel", help="Band relative to --ref, e.g. 0.98:1.15.")] = None,
    ref: Annotated[str | None, typer.Option("--ref", help="Reference architecture for --lat-rel.")] = None,
    epochs: Annotated[str | None, typer.Option("--epochs", help="Per training stage, e.g. 120,80,40.")] = None,
    lrs: Annotated[str | None, typer.Option("--lr", help="Per training stage, e.g. 0.5,0.1,0.1.")] = None,
    population: Annotated[int, typer.Option("--population", help="CES population.")] = 64,
    generations: Annotated[int, typer.Option("--generations", help="CES generations.")] = 40,
    prescreen: Annotated[
        int,
        typer.Option(
            "--prescreen",
            min=1,
            help="Breed this many offspring per evaluation and evaluate the most promising (1: the paper's CES).",
        ),
    ] = 8,
    p_th: Annotated[float, typer.Option("--p-th", help="Pruning threshold P_th.")] = 0.01,
    max_rank: Annotated[int, typer.Option("--max-rank", help="R: ranks < R estimate the distribution.")] = 10,
    max_macs: Annotated[float | None, typer.Option("--max-macs", help="Also cap MACs.")] = None,
    max_params: Annotated[float | None, typer.Option("--max-params", help="Also cap parameters.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 1024,
    resolution: Annotated[int, typer.Option(help="Proxy input resolution for the supernet.")] = 224,
    width: Annotated[float, typer.Option(help="Proxy width multiplier for the supernet.")] = 1.0,
    per_class: ProxyPerClassOpt = None,
    bn_images: Annotated[int, typer.Option("--bn-images", help="Images for BN recalibration.")] = 2000,
    label_smoothing: LabelSmoothingOpt = 0.1,
    warmup_epochs: WarmupOpt = 0,
    workers: WorkersOpt = 0,
    seed: SeedOpt = 0,
) -> None:
    """Run HNAS (Algorithm 1): train, search, prune and fine-tune over M stages under a latency band."""
    from hnas.pipeline import Pipeline, SearchSettings, default_schedule, resolve_band
    from hnas.runs import ProxySettings, RunConfig
    from hnas.train import TrainConfig, init_distributed

    init_distributed()
    run_dir = Path(out)
    if (run_dir / "config.json").is_file():
        console.print(f"resuming {run_dir} with the settings in its config.json")
        pipe = Pipeline(run_dir)
    else:
        if lut is None:
            raise HnasError("--lut is needed: the latency table of the target device (`hnas lut build`)")
        sp = load_space(space)
        ep, lr = default_schedule(stages)
        ep = _floats(epochs, "--epochs", int) or ep
        lr = _floats(lrs, "--lr") or lr
        ref_ms = None
        if ref is not None:
            from latency.lut import Lut
            from latency.predict import LatencyPredictor

            ref_ms = LatencyPredictor(Lut.load(lut), sp, lut).predict_arch(load_arch(ref, sp))
        lo, hi = resolve_band(parse_band(lat), parse_band(lat_rel) if lat_rel else None, ref_ms)
        settings = SearchSettings(
            stages=stages,
            epochs=ep,
            lrs=lr,
            p_th=p_th,
            max_rank=max_rank,
            population=population,
            generations=generations,
            prescreen=prescreen,
            lat_min=lo,
            lat_max=hi,
            max_macs=max_macs,
            max_params=max_params,
            seed=seed,
            lat_rel=list(parse_band(lat_rel)) if lat_rel else None,
            ref=ref,
        )
        run = RunConfig(
            space=sp.to_dict(),
            data=data,
            proxy=ProxySettings(resolution=resolution, width=width, per_class=per_class, bn_images=bn_images),
            train=TrainConfig(
                epochs=ep[0],
                lr=lr[0],
                batch_size=batch_size,
                label_smoothing=label_smoothing,
                seed=seed,
                workers=workers,
                warmup_epochs=warmup_epochs,
            ),
            lut=lut,
        )
        if ref_ms is not None:
            console.print(f"reference {ref}: {ref_ms:.3f} ms on {lut} -> band [{lo:.3f}, {hi:.3f}] ms")
        pipe = Pipeline(run_dir, run, settings, log=console.print)
    pipe.log = console.print
    results = pipe.run()
    print_results(results)


def print_results(results: dict) -> None:
    """Per-stage table and the best architectures."""
    t = Table(title="HNAS stages")
    for col in (
        "stage",
        "space size",
        "supernet val acc",
        "evaluated / budget",
        "best one-shot acc",
        "latency ms",
        "best architecture",
    ):
        t.add_column(col)
    for s in results["stages"]:
        size = s.get("space_size") or s.get("searched_size")
        acc = s.get("supernet_val_acc")
        t.add_row(
            str(s["stage"]),
            fmt_size(int(size)) if size else "-",
            "-" if acc is None else f"{acc:.3f}",
            f"{s['evaluated']} / {s['budget']}" if s.get("budget") else str(s.get("evaluated", "-")),
            "-" if s.get("best_accuracy") is None else f"{s['best_accuracy']:.3f}",
            "-" if s.get("best_latency_ms") is None else f"{s['best_latency_ms']:.2f}",
            s.get("best_arch") or "-",
        )
    console.print(t)
    for s in results["stages"]:
        if s.get("exhausted"):
            console.print(f"stage {s['stage']}: {s['evaluated']} of {s['budget']} evaluations: {s['exhausted']}")
    from hnas.pipeline import format_band

    band = format_band(results["latency_band_ms"])
    console.print(f"latency band {band} ms on {results['lut']}; Pareto set: {len(results['pareto'])} architectures")
    for r in results["best"]:
        console.print(f"  {r['accuracy']:.3f}  {r['latency_ms']:.2f} ms  {r['macs'] / 1e6:.0f} MMACs  {r['arch']}")


def run_verify(
    arch: archmod.Architecture,
    lut: str,
    device: str = "local",
    op_profile: bool = False,
    benchmark_binary: str | None = None,
    progress: bool = True,
) -> dict:
    """Predicted (LUT) against measured (whole network on the device, the LUT's settings) latency."""
    from latency.build import new_progress, progress_on
    from latency.devices import open_device
    from latency.export import Exporter, tflite_ops
    from latency.items import network_items
    from latency.lut import Lut
    from latency.predict import LatencyPredictor
    from latency.verify import check_device, map_op_profile, measure_networks

    table = Lut.load(lut)
    sp = arch.space
    pred = LatencyPredictor(table, sp, lut)
    parts_ms = pred.breakdown(arch)  # raw LUT figures per part
    dev = open_device(device, core=table.device.get("core"), benchmark_binary=benchmark_binary)
    check_device(table, dev, lut)
    ex = Exporter()
    cm = new_progress() if progress else None
    with cm if cm is not None else contextlib.nullcontext():
        (row,) = measure_networks(
            dev, [arch], table, ex, progress=progress_on(cm) if cm else None, op_profile=op_profile
        )
    measured = row["measured_ms"]
    predicted = pred.predict_arch(arch)
    result = {
        "arch": str(arch),
        "space": sp.name,
        "lut": lut,
        "device": dev.describe(),
        "predicted_ms": predicted,
        "predicted_raw_ms": sum(ms for _, ms in parts_ms),
        "calibrated": pred.calibration is not None,
        "measured_ms": measured,
        "repeat_medians_ms": row["repeat_medians_ms"],
        "error": (predicted - measured) / measured,
        "model_sha256": row["model_sha256"],
    }
    if op_profile:
        parts = network_items(arch)
        seqs = [(name, tflite_ops(ex.export(it.build(), it.input_shape).path) if it else []) for name, it in parts]
        if not row["op_profile"]:
            raise HnasError(f"the benchmark on {device} printed no op profile (was --enable_op_profiling ignored?)")
        mapped = map_op_profile(row["op_profile"], seqs)
        result["op_profile"] = [{**m, "lut_ms": ms} for m, (_, ms) in zip(mapped, parts_ms, strict=True)]
        result["op_profile_total_ms"] = sum(m["ms"] for m in mapped)
        result["op_profile_method"] = (
            "host runner: each op of the network run as its own graph, in order (latency.opprofile)"
            if device == "local" and not benchmark_binary
            else "benchmark_model --enable_op_profiling=true"
        )
    return result


@app.command("verify")
def verify(
    run: Annotated[str | None, typer.Argument(help="A search run folder: verifies its best architecture.")] = None,
    arch: Annotated[str | None, typer.Option("--arch", help="An architecture instead of a run's best.")] = None,
    space: Annotated[str, typer.Option("--space", help="Space of --arch.")] = "basic",
    lut: Annotated[str | None, typer.Option("--lut", help="LUT (default: the run's).")] = None,
    device: Annotated[str, typer.Option("--device", help="local or a phone; must be the LUT's device.")] = "local",
    op_profile: Annotated[bool, typer.Option("--op-profile", help="Per-layer times next to the LUT entries.")] = False,
    benchmark_binary: Annotated[str | None, typer.Option("--benchmark-binary")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Measure the chosen network end to end with the LUT's settings; print predicted against measured."""
    from hnas.io import atomic_write_json

    if (run is None) == (arch is None):
        raise HnasError("give a search RUN folder or --arch ARCH (with --space and --lut)")
    if run is not None:
        from hnas.train import read_json

        cfg = read_json(Path(run) / "config.json")
        results = read_json(Path(run) / "results.json")
        if not results.get("best"):
            raise HnasError(f"{run} has no architecture inside the latency band to verify")
        sp = SearchSpace.from_dict(cfg["run"]["space"])
        a = archmod.parse_arch(results["best"][0]["arch"], sp)
        lut = lut or cfg["run"]["lut"]
    else:
        if lut is None:
            raise HnasError("--lut is needed with --arch")
        sp = load_space(space)
        a = load_arch(arch, sp)
    result = run_verify(a, lut, device, op_profile, benchmark_binary, progress=not as_json)
    if run is not None:
        atomic_write_json(Path(run) / "verify.json", result)
    if as_json:
        emit_json(result)
        return
    print_verify(result)


def print_verify(result: dict) -> None:
    """Predicted against measured, and the per-layer table when there is one."""
    t = Table(title=f"{result['arch']} on {result['device'].get('model')} core {result['device'].get('core')}")
    t.add_column("quantity")
    t.add_column("ms", justify="right")
    t.add_row(
        "predicted (LUT sum" + (", calibrated)" if result["calibrated"] else ")"), f"{result['predicted_ms']:.3f}"
    )
    if result["calibrated"]:
        t.add_row("predicted (raw LUT sum)", f"{result['predicted_raw_ms']:.3f}")
    t.add_row("measured end to end (median of repeat medians)", f"{result['measured_ms']:.3f}")
    t.add_row("error", f"{result['error'] * 100:+.2f} %")
    console.print(t)
    if result.get("op_profile"):
        p = Table(
            title="per layer: op profile of the whole network against the LUT entry",
            caption=f"op profile: {result['op_profile_method']}",
        )
        for col, just in (("layer", "left"), ("TFLite ops", "left"), ("in network ms", "right"), ("LUT ms", "right")):
            p.add_column(col, justify=just)
        p.add_column("network - LUT", justify="right")
        for r in result["op_profile"]:
            d = r["ms"] - r["lut_ms"]
            p.add_row(r["layer"], " ".join(r["ops"]) or "-", f"{r['ms']:.3f}", f"{r['lut_ms']:.3f}", f"{d:+.3f}")
        lut_total = sum(r["lut_ms"] for r in result["op_profile"])
        tot = result["op_profile_total_ms"]
        p.add_section()
        p.add_row("sum", "", f"{tot:.3f}", f"{lut_total:.3f}", f"{tot - lut_total:+.3f}")
        p.add_row("measured end to end", "", f"{result['measured_ms']:.3f}", "", "")
        console.print(p)


@app.command("report")
def report(run: Annotated[str, typer.Argument(help="A search run folder.")]) -> None:
    """Write RUN/report/index.html with the Pareto fronts, operation heatmaps, space sizes and latency check."""
    from hnas.report import build_report

    console.print(f"report: {build_report(run)}")


@app.command("train")
def train_cmd(
    arch: Annotated[str, typer.Argument(help="Architecture string or JSON file.")],
    out: Annotated[str, typer.Option("--out", help="Folder; an existing one resumes.")],
    space: SpaceOpt = "basic",
    data: DataOpt = "digits",
    epochs: Annotated[int, typer.Option(help="Epochs (paper: 240).")] = 240,
    lr: Annotated[float, typer.Option(help="Initial learning rate, linear decay (paper: 0.5).")] = 0.5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Batch size (paper: 1024).")] = 1024,
    label_smoothing: LabelSmoothingOpt = 0.1,
    resolution: Annotated[int, typer.Option(help="Input resolution.")] = 224,
    width: Annotated[float, typer.Option(help="Width multiplier (1.0 = the architecture as searched).")] = 1.0,
    per_class: Annotated[int | None, typer.Option("--per-class", help="Training images per class.")] = None,
    workers: WorkersOpt = 0,
    seed: SeedOpt = 0,
) -> None:
    """Train one architecture from scratch (SGD 0.9, wd 4e-5, linear decay); resumable; top-1 on val and test."""
    from hnas.data import load_data
    from hnas.rank import train_standalone
    from hnas.runs import ProxySettings, training_progress
    from hnas.train import TrainConfig, init_distributed

    init_distributed()
    sp = load_space(space)
    a = load_arch(arch, sp)
    proxy = ProxySettings(resolution=resolution, width=width, per_class=per_class)
    cfg = TrainConfig(
        epochs=epochs, lr=lr, batch_size=batch_size, label_smoothing=label_smoothing, seed=seed, workers=workers
    )
    d = load_data(data, resolution, seed, per_class)
    prog, factory = training_progress()
    with prog:
        res = train_standalone(a, d, proxy, cfg, Path(out), factory)
    console.print(
        f"{res.arch}: val top-1 {res.val_top1:.4f}, test top-1 {res.test_top1:.4f} after {res.epochs} "
        f"epochs ({out}/result.json)"
    )


@app.command("rank")
def rank_cmd(
    run: Annotated[str | None, typer.Argument(help="A finished search run.")] = None,
    k: Annotated[int, typer.Option("--k", help="Architectures along the final Pareto front.")] = 11,
    epochs: Annotated[
        int | None, typer.Option("--epochs", help="Stand-alone epochs (default: the run's total).")
    ] = None,
    study: Annotated[str | None, typer.Option("--study", help="Study folder: run M = 2, 3, 4 and rank each.")] = None,
    lut: Annotated[str | None, typer.Option("--lut", help="Study: latency table.")] = None,
    space: Annotated[str, typer.Option("--space", help="Study: space.")] = "basic",
    data: Annotated[str, typer.Option("--data", help="Study: data.")] = "digits",
    total_epochs: Annotated[int, typer.Option("--total-epochs", help="Study: supernet epochs for every M.")] = 240,
    lr: Annotated[float, typer.Option("--lr", help="Study: first-stage learning rate (later stages / 5).")] = 0.5,
    lat_rel: Annotated[str, typer.Option("--lat-rel", help="Study: band relative to --ref.")] = "0.9:1.1",
    ref: Annotated[str | None, typer.Option("--ref", help="Study: reference architecture.")] = None,
    population: Annotated[int, typer.Option("--population")] = 64,
    generations: Annotated[int, typer.Option("--generations")] = 40,
    batch_size: Annotated[int, typer.Option("--batch-size")] = 1024,
    resolution: Annotated[int, typer.Option(help="Proxy resolution.")] = 224,
    width: Annotated[float, typer.Option(help="Proxy width.")] = 1.0,
    bn_images: Annotated[int, typer.Option("--bn-images")] = 2000,
) -> None:
    """Kendall tau and Spearman rho between one-shot and stand-alone top-1 (Table 4, Fig. 5)."""
    from hnas.pipeline import Pipeline, SearchSettings, resolve_band
    from hnas.rank import rank_run, scatter
    from hnas.runs import ProxySettings, RunConfig, training_progress
    from hnas.train import TrainConfig

    prog, factory = training_progress()
    if study is None:
        if run is None:
            raise HnasError("give a search RUN folder, or --study FOLDER to run M = 2, 3, 4 first")
        with prog:
            res = rank_run(run, k, epochs, log=console.print, progress=factory)
        console.print(
            f"{run}: Kendall tau {res['kendall_tau']:.3f}, Spearman rho {res['spearman_rho']:.3f} over "
            f"{res['k']} architectures ({run}/rank/rank.json, rank.png)"
        )
        return
    if lut is None:
        raise HnasError("--study needs --lut (the latency table the searches use)")
    sp = load_space(space)
    from latency.lut import Lut
    from latency.predict import LatencyPredictor

    ref_arch = load_arch(ref or DEMO_REF, sp)
    ref_ms = LatencyPredictor(Lut.load(lut), sp, lut).predict_arch(ref_arch)
    lo, hi = resolve_band((None, None), parse_band(lat_rel), ref_ms)
    from hnas.pipeline import split_epochs

    schedules = {m: split_epochs(total_epochs, m) for m in (2, 3, 4)}
    results = []
    for M, ep in schedules.items():
        folder = Path(study) / f"M{M}"
        console.rule(f"M = {M}: supernet epochs {ep}")
        settings = SearchSettings(
            stages=M,
            epochs=ep,
            lrs=[lr] + [lr / 5] * (M - 2),
            population=population,
            generations=generations,
            lat_min=lo,
            lat_max=hi,
            lat_rel=list(parse_band(lat_rel)),
            ref=str(ref_arch),
        )
        rc = RunConfig(
            space=sp.to_dict(),
            data=data,
            proxy=ProxySettings(resolution=resolution, width=width, bn_images=bn_images, val_archs=2),
            train=TrainConfig(
                epochs=ep[0], lr=lr, batch_size=batch_size, label_smoothing=0.1, warmup_epochs=ep[0] // 3
            ),
            lut=lut,
        )
        pipe = (
            Pipeline(folder, rc, settings, log=console.print)
            if not (folder / "config.json").is_file()
            else Pipeline(folder, log=console.print)
        )
        pipe.run()
        with prog:
            results.append(rank_run(folder, k, epochs or total_epochs, lr=lr, log=console.print, progress=factory))
    from hnas.io import atomic_write_json

    table = [
        {
            "M": r["stages"],
            "kendall_tau": r["kendall_tau"],
            "spearman_rho": r["spearman_rho"],
            "space_size": r["space_size"],
            "k": r["k"],
        }
        for r in results
    ]
    atomic_write_json(Path(study) / "study.json", {"table": table, "runs": results})
    scatter(Path(study) / "study.png", results)
    t = Table(title="ranking consistency (paper Table 4)")
    for col in ("M", "tau", "rho", "size of the searched space", "K"):
        t.add_column(col)
    for r in table:
        t.add_row(
            str(r["M"]),
            f"{r['kendall_tau']:.3f}",
            f"{r['spearman_rho']:.3f}",
            fmt_size(int(r["space_size"])),
            str(r["k"]),
        )
    console.print(t)


DEMO_REF = "K3E1|K3E6-K3E6-ID-ID|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-K3E6|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-ID|K3E6"


@app.command("demo")
def demo(
    out: Annotated[str, typer.Option("--out", help="Run folder (an existing one resumes).")] = "runs/demo",
    space: SpaceOpt = "basic",
    lut: Annotated[str | None, typer.Option("--lut", help="Host LUT (default lut/local-<cpu>.json).")] = None,
    epochs: Annotated[str, typer.Option("--epochs", help="Supernet epochs per training stage.")] = "12,6,4",
    population: Annotated[int, typer.Option("--population", help="CES population.")] = 24,
    generations: Annotated[int, typer.Option("--generations", help="CES generations.")] = 10,
) -> None:
    """The main job on embedded defaults: host LUT, proxy supernet on the bundled digits, four-stage HNAS with
    pruning, end-to-end latency check of the result on this CPU, and the HTML report."""
    import time

    from hnas.pipeline import Pipeline, SearchSettings, resolve_band
    from hnas.report import build_report
    from hnas.runs import ProxySettings, RunConfig
    from hnas.train import TrainConfig
    from latency.build import default_lut_path
    from latency.cli import _run_build
    from latency.devices import LocalDevice
    from latency.items import items_for_space
    from latency.lut import Lut
    from latency.predict import LatencyPredictor

    t0 = time.perf_counter()
    sp = load_space(space)
    dev = LocalDevice()
    lut_path = Path(lut) if lut else default_lut_path(dev.describe())
    if lut_path.is_file() and Lut.load(lut_path).device.get("id") == "local":
        dev = LocalDevice(core=Lut.load(lut_path).device.get("core"))  # measure where the table was measured
    console.rule("1/4 host latency table")
    console.print(
        f"{lut_path}: building or reusing the entries of space {sp.name} on {dev.describe()['cpu']} core {dev.core}"
    )
    from latency.bench import BenchSettings

    settings, repeats = BenchSettings(), 5
    if lut_path.is_file():
        from latency.verify import lut_settings

        settings, repeats = lut_settings(Lut.load(lut_path))
    _run_build(dev, items_for_space(sp), lut_path, settings, repeats, 0.10, None, None)
    run_dir = Path(out)
    console.rule("2/4 HNAS: supernet, search, pruning (M = 4)")
    if (run_dir / "config.json").is_file():
        console.print(f"resuming {run_dir}")
        pipe = Pipeline(run_dir, log=console.print)
    else:
        ref = (
            archmod.parse_arch(DEMO_REF, sp)
            if sp.name in ("basic", "proxyless")
            else archmod.sample(sp, 1, np.random.default_rng(0))[0]
        )
        ref_ms = LatencyPredictor(Lut.load(lut_path), sp, str(lut_path)).predict_arch(ref)
        lo, hi = resolve_band((None, None), (0.9, 1.1), ref_ms)
        console.print(
            f"latency band: 0.9-1.1 x the MobileNetV2-like reference ({ref_ms:.2f} ms) = "
            f"[{lo:.2f}, {hi:.2f}] ms on this CPU"
        )
        settings_s = SearchSettings(
            stages=4,
            epochs=_floats(epochs, "--epochs", int),
            lrs=[0.05, 0.02, 0.02],
            population=population,
            generations=generations,
            lat_min=lo,
            lat_max=hi,
            lat_rel=[0.9, 1.1],
            ref=str(ref),
        )
        run = RunConfig(
            space=sp.to_dict(),
            data="digits",
            proxy=ProxySettings(resolution=16, width=0.5, bn_images=256, eval_batch=512, val_archs=2),
            train=TrainConfig(epochs=12, lr=0.05, batch_size=32, label_smoothing=0.1, warmup_epochs=4),
            lut=str(lut_path),
        )
        pipe = Pipeline(run_dir, run, settings_s, log=console.print)
    results = pipe.run()
    print_results(results)
    console.rule("3/4 end-to-end latency of the found network on this CPU")
    if results["best"]:
        best = archmod.parse_arch(results["best"][0]["arch"], pipe.sn.deploy_space)
        from hnas.io import atomic_write_json

        result = run_verify(best, str(lut_path), "local", op_profile=True)
        atomic_write_json(run_dir / "verify.json", result)
        print_verify(result)
    else:
        console.print("no architecture inside the latency band: nothing to verify")
    console.rule("4/4 report")
    page = build_report(run_dir)
    console.print(f"report: {page}  (open it in a browser)")
    console.print(f"total {time.perf_counter() - t0:.0f} s")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except HnasError as exc:
        message = str(exc)
        if type(exc).__name__ == "PhoneGone":
            message += "; resume with: " + " ".join(["hnas", *(shlex.quote(a) for a in sys.argv[1:])])
        sys.stderr.write(f"error: {message}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
