"""`hnas export`: the deployable TFLite files of a trained architecture, checked, with a model card."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from hnas.cli.common import DeviceOpt, JsonOpt, console, emit_json
from hnas.core.errors import HnasError


def export(
    run: Annotated[str, typer.Argument(help="A finished `hnas train` folder, or a search run (its best arch).")],
    out: Annotated[str, typer.Option("--out", help="New folder for the files and the card.")],
    io: Annotated[
        str, typer.Option("--io", help="int8: int8 input and logits (what the LUT measures); float: quantize inside.")
    ] = "int8",
    device: DeviceOpt = "local",
    lut: Annotated[
        str | None,
        typer.Option("--lut", help="LUT: predicted latency and its benchmark settings (default: a search run's own)."),
    ] = None,
    max_drop: Annotated[
        float, typer.Option("--max-drop", min=0.0, help="Exit 1 when int8 top-1 falls more points below float32.")
    ] = 1.0,
    space: Annotated[str | None, typer.Option("--space", help="Refuse a folder of another space.")] = None,
    no_measure: Annotated[bool, typer.Option("--no-measure", help="Skip the latency measurement.")] = False,
    spread: Annotated[
        float, typer.Option("--spread", min=0.0001, help="Repeats agree when their medians differ by at most this.")
    ] = 0.10,
    benchmark_binary: Annotated[
        str | None, typer.Option("--benchmark-binary", help="A real TFLite benchmark_model binary (phones).")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Seed of the calibration images.")] = 0,
    cache: Annotated[str | None, typer.Option("--cache", help="TFLite cache folder.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write model-float32.tflite, model-int8.tflite, model.onnx and a model card (card.json, card.md) into --out:
    accuracy of each file on the test split, latency on --device; exit 1 when the int8 drop passes --max-drop."""
    from hnas.workflows.ship import check_out, export_trained, open_measuring_device, open_trained
    from latency.quantize import check_io
    from latency.stability import Stability

    check_io(io)
    check_out(out)
    stability = Stability(spread=spread)
    folder = Path(run)
    lut_path = _lut_for(folder, lut)
    dev = None
    if not no_measure:
        from latency.lut import Lut

        dev = open_measuring_device(device, Lut.load(lut_path) if lut_path else None, benchmark_binary)
    trained = open_trained(folder, space)
    log = (lambda _: None) if as_json else console.print
    from latency.export import Exporter

    try:
        command = ["hnas", *sys.argv[1:]]
        card = export_trained(
            trained, out, dev, lut_path, io, Exporter(cache), stability, seed=seed, command=command, log=log
        )
    finally:
        if dev is not None:
            dev.close()
    drop = card["accuracy"]["int8_drop_points"]
    if as_json:
        emit_json(card)
    else:
        from hnas.workflows.ship import card_summary

        for line in card_summary(card):
            console.print(line)
        console.print(f"wrote {out}/: model-float32.tflite, model-int8.tflite, model.onnx, card.json, card.md")
    if drop > max_drop:
        sys.stderr.write(
            f"error: int8 top-1 is {drop:.2f} points below float32, more than --max-drop {max_drop:g}: the files and "
            f"the card are in {out}; calibrate on more images or ship model-float32.tflite\n"
        )
        raise typer.Exit(1)


def _lut_for(folder: Path, lut: str | None) -> str | None:
    """`lut` (which must exist), else a search run's own table when it is there, else None."""
    if lut is not None:
        if not Path(lut).is_file():
            raise HnasError(f"--lut {lut} does not exist: give a latency table, or drop --lut")
        return lut
    if (folder / "config.json").is_file():
        from hnas.runs import run_lut
        from hnas.searchrun import saved_settings

        saved = saved_settings(folder)
        if saved is not None:
            return run_lut(saved[0], folder, missing_ok=True).lut
    return None
