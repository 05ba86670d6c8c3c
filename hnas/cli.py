"""The `hnas` command line."""

from __future__ import annotations

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
app.command("profile")(profile)
app.command("devices")(devices)

# wide enough for a large space's candidate lists when the output goes to a file or a pipe
console = Console(width=None if sys.stdout.isatty() else 160)

SpaceArg = Annotated[str, typer.Argument(help="Preset name (basic, large, proxyless) or a .json/.yaml space file.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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
