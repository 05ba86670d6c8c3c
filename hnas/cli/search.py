"""`hnas search`, `hnas report`, `hnas rank` and `hnas demo`."""

from __future__ import annotations

from typing import Annotated

import typer

from hnas.cli.common import (
    BnImagesOpt,
    DataOpt,
    GenerationsOpt,
    Given,
    LatOpt,
    LatRelOpt,
    LutOpt,
    OutOpt,
    PopulationOpt,
    PrecisionOpt,
    PrescreenOpt,
    RefOpt,
    SpaceOpt,
    console,
    figure_ci,
    load_arch,
    numbers,
    precision_arg,
    rank_options,
    refuse_changed_settings,
    training_options,
)
from hnas.cli.show import print_results, print_verify
from hnas.core.errors import HnasError
from hnas.settings import RankSettings, SearchSettings, option


@training_options
def search(
    ctx: typer.Context,
    out: OutOpt,
    lut: LutOpt = None,
    space: SpaceOpt = "basic",
    data: DataOpt = "digits",
    stages: option(SearchSettings, "stages") = SearchSettings.stages,
    lat: LatOpt = None,
    lat_rel: LatRelOpt = None,
    ref: RefOpt = None,
    epochs: Annotated[str | None, typer.Option("--epochs", help="Per training stage, e.g. 120,80,40.")] = None,
    lrs: Annotated[str | None, typer.Option("--lr", help="Per training stage, e.g. 0.5,0.1,0.1.")] = None,
    population: PopulationOpt = None,
    generations: GenerationsOpt = None,
    prescreen: PrescreenOpt = SearchSettings.prescreen,
    p_th: option(SearchSettings, "p_th") = SearchSettings.p_th,
    max_rank: option(SearchSettings, "max_rank") = SearchSettings.max_rank,
    max_macs: option(SearchSettings, "max_macs") = None,
    max_params: option(SearchSettings, "max_params") = None,
    bn_images: BnImagesOpt = None,
    precision: PrecisionOpt = None,
    given: Given = None,
) -> None:
    """Run HNAS (Algorithm 1): train, search, prune and fine-tune over M stages under a latency band (at the
    LUT's precision: an int8 table searches for an int8 deployment)."""
    from hnas.core.band import Band
    from hnas.dist import barrier, is_main
    from hnas.recipes import recipe_for
    from hnas.searchrun import SearchRun
    from hnas.settings import by_flag
    from hnas.spec.space import SearchSpace, load_space
    from hnas.train import init_distributed
    from hnas.workflows.fleet import pair_bands, refs_per_table
    from hnas.workflows.search import assemble_search, open_search

    init_distributed()
    console.quiet = not is_main()  # under torchrun rank 0 prints
    precision = precision_arg(precision)
    saved = SearchRun.read(out)
    barrier()  # every rank has read the folder before rank 0 writes to it
    if saved is not None:
        run_cfg, s = saved.config, saved.search
        deploy = SearchSpace.from_dict(run_cfg.space)
        n = 1 + len(s.fleet)
        flags = {**by_flag(run_cfg.proxy, run_cfg.train, s), "--space": run_cfg.space, "--data": run_cfg.data}
        flags.update(  # every table's, in order (the first's as ever)
            {
                "--lat": s.bands(),
                "--lat-rel": [s.band_rel, *(t.band_rel for t in s.fleet)],
                "--ref": [s.ref, *(t.ref for t in s.fleet)],
            }
        )
        refuse_changed_settings(  # --lut may name where the run's tables moved: open_search checks their sha256
            ctx,
            flags,
            out,
            {
                "--space": lambda t: load_space(t).to_dict(),
                "--lat": lambda ts: [Band.parse(t) for t in ts],
                "--lat-rel": lambda ts: [Band.parse(t, "--lat-rel") for t in ts],
                "--epochs": lambda t: numbers(t, "--epochs", int),
                "--lr": lambda t: numbers(t, "--lr"),
                "--ref": lambda ts: refs_per_table([str(load_arch(t, deploy)) for t in ts], n),
            },
        )
        console.print(f"resuming {out} with the settings in its config.json")
        pipe = open_search(out, log=console.print, precision=precision, lut=lut, saved=saved)
    else:
        if not lut:
            raise HnasError("--lut is needed: the latency table of the target device (`hnas lut build`)")
        sp = load_space(space)
        bands = pair_bands(len(lut), lat, lat_rel, [load_arch(r, sp) for r in ref or []])
        run, settings, fleet = assemble_search(
            recipe_for(data),
            sp,
            data,
            lut[0],
            stages,
            proxy={**given.proxy, "bn_images": bn_images},
            train=given.train,
            search={
                "epochs": numbers(epochs, "--epochs", int),  # None is "not given": an empty or zero value is checked
                "lrs": numbers(lrs, "--lr"),
                "p_th": p_th,
                "max_rank": max_rank,
                "population": population,
                "generations": generations,
                "prescreen": prescreen,
                "max_macs": max_macs,
                "max_params": max_params,
                "seed": given.train["seed"],
            },
            band=bands.lat[0],
            band_rel=bands.lat_rel[0],
            ref=bands.refs[0],
            precision=precision,
            others=[(lut[i], bands.lat[i], bands.lat_rel[i], bands.refs[i]) for i in range(1, len(lut))],
        )
        latency = fleet.latency
        console.print(f"latency objective: {latency.precision} entries of {lut[0]}")
        ref_arch = bands.refs[0]
        if ref_arch is not None:
            console.print(
                f"reference {ref_arch}: {latency.predict_arch(ref_arch):.3f} ms on {lut[0]} -> band {settings.band} ms"
            )
        pipe = open_search(out, run, settings, log=console.print, precision=precision, fleet=fleet)
    print_results(pipe.run())


def report(
    run: Annotated[str, typer.Argument(help="A search run folder.")],
    lut: Annotated[
        str | None, typer.Option("--lut", help="Where the run's latency table is now, if it moved (same sha256).")
    ] = None,
) -> None:
    """Write RUN/report/index.html with the Pareto fronts, operation heatmaps, space sizes and latency check."""
    from hnas.report import build_report

    console.print(f"report: {build_report(run, lut)}")


@rank_options
def rank(run: Annotated[str, typer.Argument(help="A finished search run.")], rank: RankSettings) -> None:
    """Kendall tau and Spearman rho between one-shot and stand-alone top-1 of a search run, stand-alone repeated
    over seeds, with bootstrap intervals and the noise ceiling (Table 4, Fig. 5). M = 2, 3, 4 compared: `hnas study`."""
    from hnas.core.progress import bars
    from hnas.workflows.study import rank_search

    with bars() as factory:
        res = rank_search(run, rank, log=console.print, progress=factory)
    for name, p in res["picks"].items():
        console.print(
            f"{run}, {name}: Kendall tau {figure_ci(p, 'kendall_tau')}, Spearman rho {figure_ci(p, 'spearman_rho')} "
            f"over {p['k']} architectures x {len(res['seeds'])} seeds; ceiling (seed vs seed) tau "
            f"{figure_ci(p, 'ceiling_tau')}"
        )
    console.print(f"({run}/rank/rank.json, rank.png)")


def demo(
    ctx: typer.Context,
    out: Annotated[str, typer.Option("--out", help="Run folder (an existing one resumes).")] = "runs/demo",
    space: SpaceOpt = "basic",
    lut: Annotated[
        list[str] | None,
        typer.Option(
            "--lut",
            help="Host LUT (default lut/local-<cpu>-<machine>.json); repeat it to add a fleet's other tables, each "
            "held to 0.9-1.1 x the reference on it.",
        ),
    ] = None,
    epochs: Annotated[
        str | None, typer.Option("--epochs", help="Supernet epochs per training stage (default: the recipe's 12,6,4).")
    ] = None,
    population: Annotated[
        int | None, typer.Option("--population", help="CES population (default: the embedded recipe's 24).")
    ] = None,
    generations: Annotated[
        int | None, typer.Option("--generations", help="CES generations (default: the embedded recipe's 10).")
    ] = None,
    precision: PrecisionOpt = None,
) -> None:
    """The main job on embedded defaults: host LUT, proxy supernet on the bundled digits, four-stage HNAS with
    pruning, end-to-end latency check of the result on this CPU (int8: and its accuracy), the found network trained
    briefly from scratch and shipped (TFLite files and model card in RUN/ship), and the HTML report."""
    import time
    from pathlib import Path

    from hnas.core.progress import bars
    from hnas.report import build_report
    from hnas.searchrun import saved_settings
    from hnas.spec.space import load_space
    from hnas.workflows.demo import DEMO_STAGES, demo_search, demo_settings, demo_ship, host_lut
    from hnas.workflows.verify import verify_run
    from latency.build import report_line

    t0 = time.perf_counter()
    sp = load_space(space)
    given = {"epochs": numbers(epochs, "--epochs", int), "population": population, "generations": generations}
    demo_settings(given)  # checked before step 1
    saved = saved_settings(out)
    if saved is not None:
        s = saved[1]
        flags = {"--epochs": s.epochs, "--population": s.population, "--generations": s.generations}
        refuse_changed_settings(
            ctx,
            {**flags, "--space": saved[0].space},
            out,
            {"--epochs": lambda t: numbers(t, "--epochs", int), "--space": lambda t: load_space(t).to_dict()},
        )
    console.rule("1/5 host latency table")
    if saved is not None:  # a run searches on the table it started with: checked, never re-measured under it
        from hnas.runs import run_lut

        lut_path = Path(run_lut(saved[0], out, lut[0] if lut else None).lut)
        console.print(f"resuming {out} on its table {lut_path} (unchanged since the run started)")
    else:
        with bars() as factory:
            lut_path, built = host_lut(sp, lut[0] if lut else None, factory, precision_arg(precision))
        console.print(report_line(built))
    console.rule(f"2/5 HNAS: supernet, search, pruning (M = {DEMO_STAGES})")
    pipe = demo_search(out, sp, lut_path, given, console.print, precision_arg(precision), (lut or [])[1:])
    results = pipe.run()
    print_results(results)
    console.rule("3/5 end-to-end latency of the found network on this CPU")
    if results["best"]:
        with bars() as factory:
            fleet = bool(pipe.search.fleet)  # a fleet's run: measured on every device this machine reaches
            result = verify_run(out, None if fleet else str(lut_path), "local", op_profile=True, progress=factory)
        print_verify(result)
    else:
        console.print("no architecture inside the latency band: nothing to verify")
    console.rule("4/5 the found network trained from scratch (the first stage's epochs) and shipped")
    if results["best"]:
        from hnas.workflows.search import finished_run
        from hnas.workflows.ship import card_summary

        run = finished_run(out)
        with bars() as factory:
            card = demo_ship(out, run.best_architecture(), lut_path, run.search.epochs[0], factory, console.print)
        for line in card_summary(card):
            console.print(line)
        console.print(f"model card: {Path(out) / 'ship' / 'card.md'}")
    else:
        console.print("no architecture inside the latency band: nothing to ship")
    console.rule("5/5 report")
    console.print(f"report: {build_report(out)}  (open it in a browser)")
    console.print(f"total {time.perf_counter() - t0:.0f} s")
