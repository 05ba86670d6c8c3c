"""An HNAS search on a latency table: the LUT is opened here and handed to the pipeline as its latency objective."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.pipeline import Pipeline
from hnas.recipes import Recipe
from hnas.runs import run_lut
from hnas.searchrun import SearchRun
from hnas.settings import RunConfig, SearchSettings
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from hnas.train import TRAINING_OPTIONS
from latency.predict import LatencyPredictor

# the demo's and the study's MobileNetV2-like reference: bands are written relative to its latency
REFERENCE = "K3E1|K3E6-K3E6-ID-ID|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-K3E6|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-ID|K3E6"


def latency_of(run: RunConfig, precision: str | None = None) -> LatencyPredictor:
    """The latency objective of a run: its LUT's predictor on its deployment space, at the LUT's precision (which
    `precision` must match when given)."""
    if not run.lut:
        raise HnasError("a search needs a latency table: pass --lut (build one with `hnas lut build`)")
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
) -> tuple[RunConfig, SearchSettings, LatencyPredictor]:
    """The one place a new search is put together (`hnas search`, the demo, the study): `recipe` plus the given
    overrides (`Recipe.assemble`: None is not given, 0 is a value), checked before the table is read; then the
    latency objective on `lut` and the absolute band (`band`, or `band_rel` x the reference `ref`'s latency).
    Returns the run config, the search settings and the objective."""
    run, settings = recipe.assemble(space.to_dict(), data, lut, stages, proxy, train, search)
    latency = latency_of(run, precision)
    absolute = band_for(band or Band(), band_rel, ref, latency)
    settings = replace(settings, band=absolute, band_rel=band_rel, ref=None if ref is None else str(ref))
    return run, settings, latency


def open_search(
    path: str | Path,
    run: RunConfig | None = None,
    search: SearchSettings | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    precision: str | None = None,
    lut: str | None = None,
    options: tuple[str, ...] = TRAINING_OPTIONS,
    saved: SearchRun | None = None,
    latency: LatencyPredictor | None = None,
) -> Pipeline:
    """The HNAS run in `path`: resumed from its config.json (on the table it started with, checked by sha256; `lut`:
    where that table is now, if it moved), or started with `run` and `search`; its latency objective at its LUT's
    precision (`precision`, when given, must match); `options`: the training flags of the command that runs it (what
    its hints may name); `saved`: the run in `path` when the caller has read it already (its config.json is read
    once); `latency`: a new run's objective when `assemble_search` opened it already."""
    saved = saved or SearchRun.read(path)
    if saved is not None:
        run, search, latency = run_lut(saved.config, path, lut), saved.search, None
    elif run is None or search is None:
        raise HnasError(f"{path} is not an HNAS run (no config.json): start one with `hnas search`")
    latency = latency or latency_of(run, precision)
    note = latency.doubt_note()  # a search names the unstable entries of the table it searches on
    if note:
        log(note)
    return Pipeline(path, run, search, latency, log=log, progress=progress, options=options)


def finished_run(path: str | Path) -> SearchRun:
    """The HNAS run in `path` (its config.json read once); one line when there is none."""
    run = SearchRun.read(path)
    if run is None:
        raise HnasError(f"{path} is not an HNAS run (no config.json)")
    return run
