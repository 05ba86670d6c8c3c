"""`hnas supernet train|eval` and `hnas train` (one architecture from scratch)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from hnas.cli.common import (
    BatchOpt,
    DataOpt,
    EpochsOpt,
    Given,
    JsonOpt,
    LabelSmoothingOpt,
    LrOpt,
    OutOpt,
    PerClassOpt,
    ResolutionOpt,
    SeedOpt,
    SpaceOpt,
    WorkersOpt,
    console,
    emit_json,
    load_arch,
    refuse_changed_settings,
    training_options,
)
from hnas.settings import TrainConfig

supernet_app = typer.Typer(
    rich_markup_mode=None, help="Train and evaluate single-path one-shot supernets.", no_args_is_help=True
)


@supernet_app.command("train")
@training_options
def supernet_train(
    ctx: typer.Context,
    out: OutOpt,
    space: SpaceOpt = "basic",
    data: DataOpt = "digits",
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    lut: Annotated[
        list[str] | None,
        typer.Option("--lut", help="LUT for latency-banded path sampling (repeat it with --lat: every band holds)."),
    ] = None,
    lat: Annotated[
        list[str] | None,
        typer.Option("--lat", help="Sample only paths with latency MIN:MAX ms (the i-th on the i-th --lut)."),
    ] = None,
    given: Given = None,
) -> None:
    """Train a SPOS supernet (uniform single paths); rerun with the same --out to resume."""
    from dataclasses import replace

    from hnas.core.band import Band
    from hnas.dist import barrier, is_main
    from hnas.runs import SupernetRun, run_fleet, run_lut
    from hnas.settings import RunConfig, by_flag
    from hnas.spec.space import load_space
    from hnas.train import chance_hint, init_distributed

    init_distributed()
    console.quiet = not is_main()  # under torchrun rank 0 prints
    saved = SupernetRun.saved_config(out)
    barrier()  # every rank has read the folder before rank 0 writes to it
    if saved is not None:
        flags = {**by_flag(saved.proxy, saved.train), "--space": saved.space, "--data": saved.data}
        flags["--lat"] = saved.train.bands()
        lats = {"--space": lambda t: load_space(t).to_dict(), "--lat": lambda ts: [Band.parse(t) for t in ts]}
        refuse_changed_settings(ctx, flags, out, lats)
        console.print(f"resuming {out} with the settings in its config.json")
        cfg = run_lut(saved, out, lut[0] if lut else None)  # its table, checked by sha256 (--lut: where it moved)
        cfg = replace(cfg, train=run_fleet(cfg.train, out, lut[1:] if lut else None))  # and its other tables
    else:
        from hnas.recipes import recipe_for
        from hnas.settings import FleetTable
        from hnas.workflows.fleet import pair_bands

        bands = pair_bands(len(lut or []), lat, None)
        recipe = recipe_for(data)
        cfg = RunConfig(
            space=load_space(space).to_dict(),
            data=data,
            proxy=recipe.proxy_settings(**given.proxy),
            train=recipe.train_config(
                epochs=epochs,
                lr=lr,
                band=bands.lat[0] or Band(),
                fleet=[FleetTable(p, b or Band()) for p, b in zip(lut[1:], bands.lat[1:], strict=True)] if lut else [],
                **given.train,
            ),
            lut=lut[0] if lut else None,
        )
    latency, more = None, ()
    if cfg.lut:
        from hnas.spec.space import SearchSpace
        from hnas.workflows.fleet import open_tables

        latency, *more = open_tables(cfg.train.luts(cfg.lut), SearchSpace.from_dict(cfg.space))
    run = SupernetRun.open(out, cfg, latency, tuple(more))
    history = run.train()
    for h in history:
        acc = "-" if h.val_acc is None else f"{h.val_acc:.3f}"
        console.print(f"epoch {h.epoch + 1}: loss {h.loss:.3f}  train acc {h.train_acc:.3f}  supernet val acc {acc}")
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
    from hnas.spec.cost import arch_cost

    r = SupernetRun.open(run)
    supernet, space = r.latest()
    ev = r.evaluator(supernet, tag="cli")
    rows = []
    for a in arch:
        parsed = load_arch(a, space)
        rows.append({"arch": str(parsed), "top1": ev.accuracy(parsed), "macs": arch_cost(parsed).macs})
    if as_json:
        emit_json(rows)
        return
    table = Table(title=f"one-shot top-1 on {r.config.data} val ({ev.images.val_size} images)")
    for col in ("arch", "top-1", "MACs"):
        table.add_column(col)
    for row in rows:
        table.add_row(row["arch"], f"{row['top1']:.4f}", f"{row['macs'] / 1e6:.1f} M")
    console.print(table)


def train_standalone_cmd(
    arch: Annotated[str, typer.Argument(help="Architecture string or JSON file.")],
    out: Annotated[str, typer.Option("--out", help="Folder; an existing one resumes.")],
    space: SpaceOpt = "basic",
    data: DataOpt = "digits",
    epochs: Annotated[
        int | None,
        typer.Option(
            "--epochs",
            help="Epochs. Default by --data: the recipe's total supernet epochs (digits/mnist5k 22, imagenet 240).",
        ),
    ] = None,
    lr: LrOpt = None,
    batch_size: BatchOpt = None,
    label_smoothing: LabelSmoothingOpt = TrainConfig.label_smoothing,
    resolution: ResolutionOpt = None,
    width: Annotated[float, typer.Option(help="Width multiplier (1.0 = the architecture as searched).")] = 1.0,
    per_class: PerClassOpt = None,
    workers: WorkersOpt = 0,
    seed: SeedOpt = 0,
) -> None:
    """Train one architecture from scratch (SGD 0.9, wd 4e-5, linear decay); resumable; top-1 on val and test."""
    from hnas.core.progress import bars
    from hnas.data import load_data
    from hnas.recipes import recipe_for
    from hnas.settings import SearchSettings
    from hnas.spec.space import load_space
    from hnas.standalone import train_standalone
    from hnas.train import init_distributed

    init_distributed()
    sp = load_space(space)
    a = load_arch(arch, sp)
    recipe = recipe_for(data)
    proxy = recipe.proxy_settings(resolution=resolution, width=width, per_class=per_class)
    cfg = recipe.train_config(
        epochs=sum(recipe.value(SearchSettings, "epochs")) if epochs is None else epochs,
        lr=lr,
        batch_size=batch_size,
        label_smoothing=label_smoothing,
        seed=seed,
        workers=workers,
        warmup_epochs=0,
    )
    from hnas.data import check_data
    from hnas.memory import require_fit
    from hnas.spec.arch import Architecture
    from hnas.supernet import proxy_space
    from hnas.train import default_device

    check_data(data)
    pspace = proxy_space(sp, proxy.resolution, proxy.width)
    require_fit(pspace, data, cfg.batch_size, per_class, workers, default_device(), arch=Architecture(pspace, a.ops))
    d = load_data(data, proxy.resolution, seed, per_class)
    with bars() as factory:
        res = train_standalone(a, d, proxy, cfg, Path(out), factory)
    console.print(
        f"{res.arch}: val top-1 {res.val_top1:.4f}, test top-1 {res.test_top1:.4f} (loss {res.test_loss:.4f}) "
        f"after {res.epochs} epochs ({out}/result.json)"
    )
