"""`hnas space show|sample` and `hnas arch info`."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from hnas.cli.common import JsonOpt, SpaceArg, console, emit_json, fmt_size, load_arch, size_formula
from hnas.settings import MAX_COUNT

SAMPLE_CHUNK = 10_000  # architectures drawn at once by `space sample`

space_app = typer.Typer(
    rich_markup_mode=None,
    help="Inspect search spaces (presets basic, large, proxyless, or a JSON/YAML file).",
    no_args_is_help=True,
)
arch_app = typer.Typer(rich_markup_mode=None, help="Inspect architectures.", no_args_is_help=True)


@space_app.command("show")
def space_show(space: SpaceArg, as_json: JsonOpt = False) -> None:
    """One row per searchable layer (stage, shapes, stride, candidate ops), then the space size."""
    from hnas.spec.space import load_space

    sp = load_space(space)
    described = sp.describe()
    fixed = described["fixed"]
    if as_json:
        emit_json({**sp.to_dict(), **described})
        return
    sk = sp.skeleton
    table = Table(title=f"space {sp.name}: {sk.resolution}x{sk.resolution} input, {sk.num_classes} classes")
    for col in ("layer", "stage", "input", "output", "stride", "#", "candidate ops"):
        table.add_column(col, justify="right" if col in ("layer", "stage", "stride", "#") else "left")
    for L in sp.layers:
        i, o = L.shape.text().split("->")
        ops = " ".join(op.short for op in L.candidates)
        table.add_row(str(L.index), str(L.stage), i, o, str(L.shape.stride), str(len(L.candidates)), ops)
    console.print(table)
    console.print("fixed parts: " + ", ".join(fixed))
    console.print(f"searchable layers: {sp.num_layers}")
    console.print(f"size: {fmt_size(sp.size())} = {size_formula(sp)} ({sp.size()} architectures)")


@space_app.command("sample")
def space_sample(
    space: SpaceArg,
    n: Annotated[int, typer.Option("-n", "--num", help=f"How many architectures (at most {MAX_COUNT:,}).")] = 5,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Random valid architectures (uniform per layer), one string per line."""
    import numpy as np

    from hnas.settings import SEED, between, check_value
    from hnas.spec.arch import sample
    from hnas.spec.space import load_space

    check_value("-n", n, between(1, MAX_COUNT))
    check_value("--seed", seed, SEED)
    sp, rng = load_space(space), np.random.default_rng(seed)
    sys.stdout.write("[\n" if as_json else "")
    for start in range(0, n, SAMPLE_CHUNK):  # drawn and printed a chunk at a time: memory does not grow with -n
        for i, a in enumerate(sample(sp, min(SAMPLE_CHUNK, n - start), rng), start):
            line = json.dumps(a.to_dict()) if as_json else str(a)
            sys.stdout.write(f"{',' if as_json and i else ''}{line}\n")
    sys.stdout.write("]\n" if as_json else "")


@arch_app.command("info")
def arch_info(
    arch: Annotated[str, typer.Argument(help="Architecture string (e.g. from `hnas space sample`) or a JSON file.")],
    space: Annotated[str, typer.Option("--space", help="Preset name or space file.")] = "basic",
    lut: Annotated[
        list[str] | None,
        typer.Option("--lut", help="Also predict latency from this LUT (repeat it: every table's, at its precision)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """MACs and parameters (and, with --lut, predicted latency on each table) at the space's deployment resolution."""
    from hnas.spec.cost import arch_cost
    from hnas.spec.space import load_space

    sp = load_space(space)
    a = load_arch(arch, sp)
    cost = arch_cost(a)
    rows, notes, extra = [], [], {}
    if lut:
        from hnas.settings import table_names
        from latency.predict import LatencyPredictor

        for name, path in zip(table_names(lut), lut, strict=True):
            pred = LatencyPredictor.from_file(path, sp)  # each table at its own precision
            rows.append((name, path, str(pred.precision), pred.predict_arch(a), pred.doubtful(a)[0]))
            notes.append(pred.doubt_note(a))
        name, path, _, ms, doubtful = rows[0]
        extra = {"latency_ms": ms, "lut": path, "unstable_entries": doubtful}
        if len(rows) > 1:
            keys = ("name", "lut", "precision", "latency_ms", "unstable_entries")
            extra["tables"] = [dict(zip(keys, r, strict=True)) for r in rows]
    if as_json:
        emit_json({**a.to_dict(), "macs": cost.macs, "params": cost.params, **extra})
        return
    console.print(f"arch: {a}", soft_wrap=True)
    table = Table()
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("space", sp.name)
    table.add_row("MACs", f"{cost.macs / 1e6:.1f} M")
    table.add_row("params", f"{cost.params / 1e6:.3f} M")
    for name, path, precision, ms, _ in rows:
        on = "" if len(rows) == 1 else f" on {name} ({precision})"
        table.add_row(f"predicted latency{on}", f"{ms:.3f} ms")
        if len(rows) == 1:
            table.add_row("LUT", path)
    console.print(table)
    for note in notes:
        if note:
            console.print(note, soft_wrap=True)
