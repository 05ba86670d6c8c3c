"""An HNAS search on a latency table: the LUT is opened here and handed to the pipeline as its latency objective (a
fleet's other tables as constraints beside it, `hnas.workflows.fleet`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.pipeline import Pipeline
from hnas.recipes import Recipe
from hnas.runs import run_fleet, run_lut
from hnas.searchrun import SearchRun
from hnas.settings import FleetTable, RunConfig, SearchSettings, table_names
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from hnas.train import TRAINING_OPTIONS
from hnas.workflows.fleet import Fleet, open_fleet, open_tables
from latency.predict import LatencyPredictor

# the demo's and the study's MobileNetV2-like reference: bands are written relative to its latency
REFERENCE = "K3E1|K3E6-K3E6-ID-ID|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-K3E6|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-ID|K3E6"


def require_lut(run: RunConfig) -> str:
    """The run's latency table; one line when it has none."""
    if not run.lut:
        raise HnasError("a search needs a latency table: pass --lut (build one with `hnas lut build`)")
    return run.lut


def latency_of(run: RunConfig, precision: str | None = None) -> LatencyPredictor:
    """The latency objective of a run: its LUT's predictor on its deployment space, at the LUT's precision (which
    `precision` must match when given)."""
    require_lut(run)
    return LatencyPredictor.from_file(run.lut, SearchSpace.from_dict(run.space), precision=precision)


def band_for(band: Band, band_rel: Band | None, ref: Architecture | None, latency: LatencyPredictor) -> Band:
    """The absolute band: `band` (ms), or `band_rel` times the reference architecture's predicted latency."""
    if band_rel is not None and not band_rel.is_open:
        if ref is None:
            raise HnasError("--lat-rel needs --ref ARCH (a reference architecture priced on the same LUT)")
        return band_rel.scaled(latency.predict_arch(ref))
    return band


def assemble_search(
    recipe: Recipe,
    space: SearchSpace,
    data: str,
    lut: str | None,
    stages: int,
    *,
    proxy: dict | None = None,
    train: dict | None = None,
    search: dict | None = None,
    band: Band | None = None,
    band_rel: Band | None = None,
    ref: Architecture | None = None,
    precision: str | None = None,
    others: Sequence[tuple[str, Band | None, Band | None, Architecture | None]] = (),
    opened: Fleet | None = None,
) -> tuple[RunConfig, SearchSettings, Fleet]:
    """The one place a new search is put together (`hnas search`, the demo, the study): `recipe` plus the given
    overrides (`Recipe.assemble`: None is not given, 0 is a value), checked before the table is read; then the
    latency objective on `lut` and the absolute band (`band`, or `band_rel` x the reference `ref`'s latency).
    A fleet's `others` (each table's lut, band, band_rel and ref, as for the first) become `SearchSettings.fleet`,
    each band made absolute on its own table (`hnas.workflows.fleet`: each at its own precision, one table per device
    and precision). Returns the run config, the search settings and the tables opened (`Fleet`: the objective's
    first), which `open_search` takes as they are; `opened`: those of an earlier call with the same tables, space and
    precision (a study's searches), used instead of reading the files again."""
    run, settings = recipe.assemble(space.to_dict(), data, lut, stages, proxy, train, search)
    luts = [require_lut(run), *(o[0] for o in others)]
    latency, *more = tables = opened.tables if opened is not None else open_tables(luts, space, precision)
    absolute = band_for(band or Band(), band_rel, ref, latency)
    fleet = [
        FleetTable(path, band_for(b or Band(), rel, r, table), rel, None if r is None else str(r))
        for (path, b, rel, r), table in zip(others, more, strict=True)
    ]
    settings = replace(settings, band=absolute, band_rel=band_rel, ref=None if ref is None else str(ref), fleet=fleet)
    return run, settings, Fleet(table_names(luts), tables)


def open_search(
    path: str | Path,
    run: RunConfig | None = None,
    search: SearchSettings | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    precision: str | None = None,
    lut: list[str] | None = None,
    options: tuple[str, ...] = TRAINING_OPTIONS,
    saved: SearchRun | None = None,
    fleet: Fleet | None = None,
) -> Pipeline:
    """The HNAS run in `path`: resumed from its config.json (on the tables it started with, checked by sha256; `lut`:
    where that table is now, if it moved; a fleet's: every table, in order, or none), or started with `run` and
    `search`; its latency objective at its LUT's precision (`precision`, when given, must match) and a fleet's other
    tables at theirs; `options`: the training flags of the command that runs it (what its hints may name); `saved`:
    the run in `path` when the caller has read it already (its config.json is read once); `fleet`: a new run's
    tables when `assemble_search` opened them already."""
    saved = saved or SearchRun.read(path)
    if saved is not None:
        run = run_lut(saved.config, path, lut[0] if lut else None)
        search, fleet = run_fleet(saved.search, path, lut[1:] if lut else None), None
    elif run is None or search is None:
        raise HnasError(f"{path} is not an HNAS run (no config.json): start one with `hnas search`")
    if fleet is None:  # every table, checked as a new run's are (one per device and precision, each covering the space)
        fleet = open_fleet(require_lut(run), search, SearchSpace.from_dict(run.space), precision)
    for line in fleet.lines(search):
        log(line)
    for table in fleet.tables:
        note = table.doubt_note()  # a search names the unstable entries of the tables it searches on
        if note:
            log(note)
    return Pipeline(
        path,
        run,
        search,
        fleet.latency,
        log=log,
        progress=progress,
        options=options,
        more=fleet.more,
        name=fleet.names[0],
    )


def finished_run(path: str | Path) -> SearchRun:
    """The HNAS run in `path` (its config.json read once); one line when there is none."""
    run = SearchRun.read(path)
    if run is None:
        raise HnasError(f"{path} is not an HNAS run (no config.json)")
    return run
