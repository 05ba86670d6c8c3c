"""`hnas study`: does pruning help? M = 2, 3, 4 over search seeds against stand-alone truth (Tables 4, 5, Fig. 6)."""

from __future__ import annotations

import shlex
import sys
from typing import Annotated

import typer
from rich.table import Table

from hnas.cli.common import (
    BatchOpt,
    BnImagesOpt,
    GenerationsOpt,
    PopulationOpt,
    ResolutionOpt,
    SpaceOpt,
    WidthOpt,
    console,
    figure_ci,
    fmt_size,
    load_arch,
    study_rank_options,
)
from hnas.settings import RankSettings, SearchSettings, StudyDefaults, option


@study_rank_options
def study(
    folder: Annotated[str, typer.Argument(help="Study folder (an existing one resumes).")],
    lut: Annotated[
        list[str],
        typer.Option(
            "--lut",
            help="Latency table the searches use; repeat it for a fleet (each other table held to --lat-rel x --ref on "
            "it, a constraint beside the first table's band).",
        ),
    ],
    space: SpaceOpt = "basic",
    data: option(StudyDefaults, "data") = StudyDefaults.data,
    total_epochs: option(StudyDefaults, "total_epochs") = None,
    lr: option(StudyDefaults, "lr") = None,
    schedule: option(StudyDefaults, "schedule") = StudyDefaults.schedule,
    lat_rel: option(StudyDefaults, "lat_rel") = StudyDefaults.lat_rel,
    ref: Annotated[str | None, typer.Option("--ref", help="Reference architecture (default: MobileNetV2's).")] = None,
    search_seeds: option(StudyDefaults, "search_seeds") = StudyDefaults.search_seeds,
    population: PopulationOpt = None,
    generations: GenerationsOpt = None,
    batch_size: BatchOpt = None,
    resolution: ResolutionOpt = None,
    width: WidthOpt = None,
    bn_images: BnImagesOpt = None,
    val_archs: option(StudyDefaults, "val_archs") = StudyDefaults.val_archs,
    rank: RankSettings = None,
) -> None:
    """I-Supernet (M = 2), P-Supernet (M = 3) and HNAS (M = 4) with equal supernet epochs over --search-seeds,
    each ranked against stand-alone training repeated over --seeds: Table 4 (tau, rho, noise ceiling), Table 5
    (the best architecture's stand-alone top-1, SPOS-EA on the I-Supernet as baseline), Fig. 6."""
    from hnas.core.band import Band
    from hnas.core.progress import bars
    from hnas.recipes import recipe_for
    from hnas.spec.space import load_space
    from hnas.workflows.search import REFERENCE
    from hnas.workflows.study import StudySettings, run_study

    StudyDefaults(  # the study's own options, checked before anything else
        data=data,
        total_epochs=total_epochs,
        lr=lr,
        lat_rel=lat_rel,
        schedule=schedule,
        search_seeds=search_seeds,
        val_archs=val_archs,
    )
    sp = load_space(space)
    recipe = recipe_for(data)
    # the recipe's values where an option is not given (None); a given value (0 too) is held to its setting's check
    train = recipe.train_config(lr=lr, batch_size=batch_size)
    search = recipe.search_settings(population=population, generations=generations, schedule=schedule)
    settings = StudySettings(
        space=sp,
        lut=lut[0],
        others=tuple(lut[1:]),
        data=data,
        total_epochs=sum(recipe.value(SearchSettings, "epochs")) if total_epochs is None else total_epochs,
        lr=train.lr,
        band_rel=Band.parse(lat_rel, "--lat-rel"),
        ref=load_arch(REFERENCE if ref is None else ref, sp),
        population=search.population,
        generations=search.generations,
        batch_size=train.batch_size,
        proxy=recipe.proxy_settings(resolution=resolution, width=width, bn_images=bn_images, val_archs=val_archs),
        schedule=search.schedule,
        search_seeds=search_seeds,
        rank=rank,
    )
    command = " ".join(["hnas", *(shlex.quote(a) for a in sys.argv[1:])])
    with bars() as factory:
        out = run_study(folder, settings, log=console.print, progress=factory, command=command)
    print_study(out)
    console.print(f"{folder}/study.json, {folder}/study.png, {folder}/summary.json")


def print_study(out: dict) -> None:
    """Table 4 and Table 5 as the study wrote them."""
    t = Table(title="ranking consistency (paper Table 4), search seed 0, 95 % bootstrap intervals")
    for col in ("M", "pick", "tau (mean of S)", "tau (one seed)", "ceiling (seed vs seed)", "tau (loss)", "rho"):
        t.add_column(col)
    t.add_column("searched space")
    t.add_column("K x S")
    for r in out["table4"]:
        t.add_row(
            str(r["M"]),
            r["pick"],
            figure_ci(r, "kendall_tau"),
            figure_ci(r, "kendall_tau_seed"),
            figure_ci(r, "ceiling_tau"),
            figure_ci(r, "kendall_tau_loss"),
            figure_ci(r, "spearman_rho"),
            fmt_size(int(r["space_size"])),
            f"{r['k']} x {r['seeds']}",
        )
    console.print(t)
    t5 = Table(title="the best architecture inside the band (paper Table 5), mean +- sd over search seeds")
    for col in ("method", "stand-alone top-1", "vs I-Supernet [95 %]", "one-shot top-1", "supernet val top-1"):
        t5.add_column(col)
    for r in out["table5"]:
        ci = r["vs_i_supernet_ci"]
        sd = "" if r["standalone_sd"] is None else f" +- {r['standalone_sd']:.4f}"
        t5.add_row(
            r["method"],
            f"{r['standalone_mean']:.4f}{sd}",
            "-" if ci is None else f"{r['vs_i_supernet']:+.4f} [{ci[0]:+.4f}, {ci[1]:+.4f}]",
            f"{r['one_shot_mean']:.4f}",
            "-" if r["supernet_val_acc_mean"] is None else f"{r['supernet_val_acc_mean']:.4f}",
        )
    console.print(t5)
