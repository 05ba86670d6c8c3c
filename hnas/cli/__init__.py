"""The `hnas` command line: the command layer parses, calls and prints; the work happens in the modules it calls.

    spaces      hnas space show|sample, hnas arch info
    supernet    hnas supernet train|eval, hnas train
    search      hnas search, hnas report, hnas rank, hnas demo
    study       hnas study (M = 2, 3, 4 against stand-alone truth)
    lut         hnas lut build|refresh|show|diff|import|validate, hnas profile, hnas devices, hnas verify
    export      hnas export (the trained network's TFLite files and model card)

Heavy libraries (torch, TensorFlow) are imported inside the commands that need them, so `hnas --help` is quick.
"""

from __future__ import annotations

import shlex
import sys

import typer

from hnas.cli import export, lut, search, spaces, study, supernet
from hnas.core.errors import DeviceGone, HnasError

app = typer.Typer(
    rich_markup_mode=None,
    help="Hierarchical Neural Architecture Search for phones: search spaces, latency tables, search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(spaces.space_app, name="space")
app.add_typer(spaces.arch_app, name="arch")
app.add_typer(lut.lut_app, name="lut")
app.add_typer(supernet.supernet_app, name="supernet")
app.command("profile")(lut.profile)
app.command("devices")(lut.devices)
app.command("verify")(lut.verify)
app.command("search")(search.search)
app.command("report")(search.report)
app.command("rank")(search.rank)
app.command("study")(study.study)
app.command("demo")(search.demo)
app.command("train")(supernet.train_standalone_cmd)
app.command("export")(export.export)


def main() -> None:
    """Entry point, the one error boundary: user errors and file-system errors become one line on stderr and exit
    code 2 (files are written atomically, so what was there before is intact); an interrupt exits 130."""
    try:
        app()
    except HnasError as exc:
        message = str(exc)
        if isinstance(exc, DeviceGone):
            message += "; resume with: " + " ".join(["hnas", *(shlex.quote(a) for a in sys.argv[1:])])
        _fail(message)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        _fail(
            f"{exc.strerror or exc}{where}: check that the path exists, is a folder where one is expected, is "
            "writable and that the disk has space; nothing was overwritten"
        )
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: what was finished is saved; rerun the same command to go on\n")
        sys.exit(130)


def _fail(message: str) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)
