"""The main job on embedded defaults, step by step: this CPU's latency table, a four-stage HNAS search with a
proxy supernet on the bundled digits, the found network measured end to end, trained from scratch and shipped
(`demo_ship`: its TFLite files and model card), the report.

The demo's settings are the embedded data's recipe (`hnas.recipes`); the command runs the steps
and prints between them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hnas.core.band import Band
from hnas.pipeline import Pipeline
from hnas.recipes import RECIPES
from hnas.settings import SearchSettings
from hnas.spec.arch import parse_arch, sample
from hnas.spec.space import SearchSpace
from hnas.workflows.search import REFERENCE, assemble_search, open_search

DEMO_RECIPE = RECIPES["embedded"]  # the demo runs on the bundled digits with the embedded data's recipe
DEMO_PROXY = DEMO_RECIPE.proxy_settings()
DEMO_BAND_REL = Band(0.9, 1.1)
DEMO_STAGES = 4  # M: the paper's four-stage HNAS
DEMO_OPTIONS = ("--epochs",)  # the training flag `hnas demo` offers (its hints name no other)


def host_lut(space: SearchSpace, lut: str | None = None, progress=None, precision: str | None = None):
    """Build (or reuse) this CPU's table for `space` at `precision` (default: the table's own, else float32);
    returns (its path, the build report). Measures on the core the table was measured on, with its settings,
    when it exists."""
    from latency.bench import BenchSettings
    from latency.build import BuildOptions, build_many, default_lut_path
    from latency.defaults import REPEATS
    from latency.devices import LocalDevice
    from latency.export import Exporter
    from latency.items import items_for_space
    from latency.lut import Lut
    from latency.precision import build_precision

    dev = LocalDevice()
    precision = build_precision(precision, Path(lut) if lut is not None else None)
    path = Path(lut) if lut is not None else default_lut_path(dev.describe(), precision=precision)
    settings, repeats = BenchSettings(), REPEATS
    if path.is_file():
        table = Lut.load(path)
        settings, repeats = table.bench_settings()
        if table.device.get("id") == "local":
            dev = LocalDevice(core=table.device.get("core"))  # measure where the table was measured
    options = BuildOptions(settings=settings, repeats=repeats, precision=precision)
    items = items_for_space(space, precision)
    (report,) = build_many([(dev, path)], items, options, Exporter(), progress).values()
    return path, report


def reference(space: SearchSpace):
    """The MobileNetV2-like reference of the basic-like presets, or a fixed random architecture of `space`."""
    if space.name in ("basic", "proxyless"):
        return parse_arch(REFERENCE, space)
    return sample(space, 1, np.random.default_rng(0))[0]


def demo_settings(given: dict | None = None) -> SearchSettings:
    """The demo's search settings: M = 4 at the embedded recipe's values where `given` (the options `hnas demo`
    offers: epochs, population, generations) has none (None; a given 0 is held to its setting's check); the band is
    set by `demo_search`. Checked before anything is measured."""
    return DEMO_RECIPE.assemble({}, "digits", None, DEMO_STAGES, search=given)[1]


def demo_search(
    out: str | Path,
    space: SearchSpace,
    lut_path: Path,
    given: dict | None = None,
    log: Callable[[str], None] = print,
    precision: str | None = None,
    others: Sequence[str] = (),
) -> Pipeline:
    """The demo's HNAS run in `out` (resumed when it exists): `demo_settings(given)` on digits at the proxy
    settings, latency band 0.9-1.1 x the reference's predicted latency on the host table (`others`: a fleet's other
    tables, each held to 0.9-1.1 x the reference's latency on it)."""
    if (Path(out) / "config.json").is_file():
        log(f"resuming {out}")
        return open_search(out, log=log, precision=precision, options=DEMO_OPTIONS)
    ref = reference(space)
    run, search, fleet = assemble_search(
        DEMO_RECIPE,
        space,
        "digits",
        str(lut_path),
        DEMO_STAGES,
        search=given,
        band_rel=DEMO_BAND_REL,
        ref=ref,
        precision=precision,
        others=[(path, None, DEMO_BAND_REL, ref) for path in others],
    )
    ref_ms = fleet.latency.predict_arch(ref)
    log(f"latency band: 0.9-1.1 x the MobileNetV2-like reference ({ref_ms:.2f} ms) = {search.band} ms on this CPU")
    return open_search(out, run, search, log=log, options=DEMO_OPTIONS, fleet=fleet)


def demo_ship(run: str | Path, arch, lut_path: Path, epochs: int, progress=None, log: Callable[[str], None] = print):
    """Ship the found network: train `arch` from scratch at the demo's proxy settings for `epochs` (RUN/standalone,
    resumed like `hnas train`), export it into RUN/ship (`hnas export`: both TFLite files, the ONNX file, the card)
    and measure both files on this CPU with the table's settings. Returns the card (an existing one for `arch` is
    kept)."""
    from hnas.core.io import read_json
    from hnas.data import load_data
    from hnas.standalone import train_standalone
    from hnas.workflows.ship import export_trained, open_trained
    from latency.devices import LocalDevice
    from latency.lut import Lut

    run = Path(run)
    folder, out = run / "standalone", run / "ship"
    if (out / "card.json").is_file():
        card = read_json(out / "card.json")
        if isinstance(card, dict) and card.get("arch") == str(arch):
            log(f"the found network was shipped before: {out / 'card.md'}")
            return card
    cfg = DEMO_RECIPE.train_config(epochs=epochs, warmup_epochs=0)
    data = load_data("digits", DEMO_PROXY.resolution, cfg.seed, DEMO_PROXY.per_class)
    res = train_standalone(arch, data, DEMO_PROXY, cfg, folder, progress)
    log(f"trained from scratch for {res.epochs} epochs: test top-1 {res.test_top1:.4f} ({folder})")
    table = Lut.load(lut_path)
    device = LocalDevice(core=table.device.get("core") if table.device.get("id") == "local" else None)
    command = ["hnas", "export", str(folder), "--out", str(out), "--lut", str(lut_path)]
    return export_trained(open_trained(folder), out, device, str(lut_path), command=command, log=log)
