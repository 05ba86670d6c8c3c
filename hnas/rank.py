"""Ranking consistency (paper Table 4, Fig. 5): one-shot accuracy against stand-alone accuracy, with the noise
of stand-alone training measured.

`hnas.standalone` trains one architecture from scratch (resumable); `rank_run` picks K architectures of a
finished search run, along its final Pareto front (the paper's choice) and/or drawn uniformly from its final
(pruned) space, trains each stand-alone with S seeds and scores the supernet's one-shot top-1 against them
(`hnas.rankstats`: Kendall's tau and Spearman's rho with bootstrap intervals, and the noise ceiling). The study
(`hnas.workflows.study`) runs M = 2, 3 and 4 with equal total supernet epochs and tabulates them like Table 4.

    RUN/rank/picks.json                       the picked architectures and their one-shot top-1
    RUN/rank/standalone/<key>/seed<s>/        one stand-alone training (checkpoint.pt, result.json); <key>
                                              names the architecture, proxy and training settings
    RUN/rank/rank.json, rank.png              the figures per pick, one-shot against stand-alone
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_json, read_json
from hnas.data import data_name
from hnas.rankstats import ranking_stats
from hnas.searchrun import SearchRun
from hnas.settings import RankSettings, RunConfig, SearchSettings, TrainConfig
from hnas.spec.arch import Architecture, from_vector, parse_arch, sample, sample_across_sizes
from hnas.spec.space import SearchSpace
from hnas.spec.vectors import ArchCodec
from hnas.standalone import Job, StandaloneResult, standalone_folder, train_jobs


def pick_along_front(rows: list[dict], k: int) -> list[dict]:
    """K architectures at about equal distances along the front (normalised latency-accuracy arc length);
    when the front has fewer than K, the next nondomination ranks fill in."""
    ranked = sorted(rows, key=lambda r: (r["rank"], r["latency_ms"]))
    pool: list[dict] = []
    for rank in sorted({r["rank"] for r in ranked}):
        pool += [r for r in ranked if r["rank"] == rank]
        if len(pool) >= k:
            break
    if len(pool) <= k:
        return sorted(pool, key=lambda r: r["latency_ms"])
    pool.sort(key=lambda r: r["latency_ms"])
    lat = np.array([r["latency_ms"] for r in pool])
    acc = np.array([r["accuracy"] for r in pool])
    pts = np.column_stack([(lat - lat.min()) / (np.ptp(lat) or 1), (acc - acc.min()) / (np.ptp(acc) or 1)])
    arc = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
    return [pool[i] for i in sorted(nearest_each(arc, np.linspace(0, arc[-1], k)))]


def nearest_each(values: np.ndarray, targets: np.ndarray) -> list[int]:
    """For each target in order, the index of the nearest of `values` that no earlier target took (a tie: the first
    in `values`' order)."""
    chosen: list[int] = []
    for target in targets:
        order = np.argsort(np.abs(values - target), kind="stable")
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return chosen


def draw_from_space(space: SearchSpace, k: int, rng: np.random.Generator) -> list[Architecture]:
    """K distinct architectures drawn uniformly from `space` (every one of them, in a random order, when it
    holds no more than K)."""
    if space.size() <= k:
        every = [from_vector(space, v) for v in ArchCodec(space).enumerate()]
        return [every[i] for i in rng.permutation(len(every))]
    seen: dict[str, Architecture] = {}
    while len(seen) < k:
        for a in sample(space, k, rng):
            if len(seen) < k:
                seen.setdefault(str(a), a)
    return list(seen.values())


def spread_in_band(space: SearchSpace, predict, band, k: int, rng: np.random.Generator, draws: int = 20_000):
    """K distinct architectures of `space` inside `band` at about evenly spaced predicted latencies (`predict`:
    vectors -> ms): `draws` draws, half uniform and half spread across sizes, priced, those inside the band, then
    the one nearest each of K latencies evenly spaced from the fastest to the slowest inside. Returns the
    architectures and their latencies; fewer than K when fewer distinct ones fall inside."""
    archs = sample(space, draws // 2, rng) + sample_across_sizes(space, draws - draws // 2, rng)
    lat = np.asarray(predict(np.stack([a.to_vector() for a in archs])), dtype=float)
    ok = band.contains(lat)
    inside = [i for i in np.argsort(lat, kind="stable") if ok[i]]
    distinct = list({str(archs[i]): i for i in inside[::-1]}.values())  # the first of each, in latency order
    distinct.sort(key=lambda i: (lat[i], i))
    if not distinct:
        raise HnasError(f"no architecture of {draws} draws of the space lies inside the band {band} ms")
    inside_lat = lat[distinct]
    targets = np.linspace(inside_lat[0], inside_lat[-1], min(k, len(distinct)))
    chosen = [distinct[j] for j in nearest_each(inside_lat, targets)]
    return [archs[i] for i in chosen], [float(lat[i]) for i in chosen]


def common_space(spaces: list[SearchSpace]) -> SearchSpace:
    """The architectures every one of `spaces` (one deployment space pruned differently) holds: per layer the
    candidates they share. One line when a layer has none in common."""
    first = spaces[0]
    layers = []
    for i, options in enumerate(first.candidates):
        shared = [op for op in options if all(op in sp.candidates[i] for sp in spaces[1:])]
        if not shared:
            raise HnasError(f"the pruned spaces share no candidate in layer {i}: their architectures cannot be common")
        layers.append(tuple(shared))
    return first.with_candidates(layers, name=f"{first.name.split('@')[0]}@common")


def pick_architectures(
    run, final: dict, settings: RankSettings, latency=None, within: SearchSpace | None = None
) -> dict[str, list[dict]]:
    """The architectures to rank per pick, with their one-shot top-1 (cached in RUN/rank/picks.json for these
    settings): `front` along the final Pareto front (accuracies from the final search's archive), `space` drawn
    uniformly from the final (pruned) space, `band` at evenly spaced latencies across the run's band from the
    final space or `within` (a part of it several runs share, so that they rank the same architectures), both
    evaluated on the final supernet with the run's evaluator; `latency` (the run's latency objective, optional for
    `space`) prices the draws; `run`: the `SearchRun`."""
    file = run.path / "rank" / "picks.json"
    key = {"k": settings.k, "pick": settings.pick, "draw_seed": settings.draw_seed}
    if "band" in settings.picks and within is not None:
        key["within"] = hashlib.sha256(json.dumps(within.to_dict()["candidates"]).encode()).hexdigest()[:16]
    if file.is_file():
        saved = read_json(file)
        if isinstance(saved, dict) and saved.get("settings") == key:
            return saved["picks"]
    picks: dict[str, list[dict]] = {}
    if "front" in settings.picks:
        picks["front"] = [
            {"arch": r["arch"], "one_shot": r["accuracy"], "latency_ms": r["latency_ms"], "rank": r["rank"]}
            for r in pick_along_front(final["archive"], settings.k)
        ]
    if {"space", "band"} & set(settings.picks):
        accuracy, space = run.final_accuracy()  # the final supernet, loaded once for both
    if "space" in settings.picks:
        archs = draw_from_space(space, settings.k, np.random.default_rng(settings.draw_seed))
        acc = accuracy(archs)
        lat = [None] * len(archs)
        if latency is not None:
            lat = latency.for_space(space).predict(np.stack([a.to_vector() for a in archs])).tolist()
        picks["space"] = [
            {"arch": str(a), "one_shot": float(v), "latency_ms": None if t is None else float(t), "rank": None}
            for a, v, t in zip(archs, acc, lat)
        ]
    if "band" in settings.picks:
        if latency is None:
            raise HnasError(f"--pick band prices architectures on the run's table, which is missing: {run.config.lut}")
        source = within or space
        rng = np.random.default_rng(settings.draw_seed)
        archs, lat = spread_in_band(source, latency.for_space(source).predict, run.search.band, settings.k, rng)
        acc = accuracy([parse_arch(str(a), space) for a in archs])
        picks["band"] = [
            {"arch": str(a), "one_shot": float(v), "latency_ms": t, "rank": None} for a, v, t in zip(archs, acc, lat)
        ]
    atomic_write_json(file, {"settings": key, "picks": picks})
    return picks


def standalone_config(train: TrainConfig, search, settings: RankSettings) -> TrainConfig:
    """The stand-alone recipe of a run's architectures: the run's training settings, with the rank settings'
    epochs (default: the run's total supernet epochs), learning rate (default: its first) and batch, no warm-up."""
    return replace(
        train,
        epochs=sum(search.epochs) if settings.epochs is None else settings.epochs,
        lr=search.lrs[0] if settings.lr is None else settings.lr,
        batch_size=train.batch_size if settings.batch_size is None else settings.batch_size,
        warmup_epochs=0,
    )


def standalone_jobs(archs: list[str], run: RunConfig, cfg: TrainConfig, seeds: list[int], root: Path) -> list[Job]:
    """One job per seed and architecture (seed by seed, so an interrupted study already holds one training of
    every architecture), each in root/<key>/seed<s>."""
    space = SearchSpace.from_dict(run.space)
    data = data_name(run.data)
    return [
        Job(
            a,
            run.space,
            run.data,
            run.train.seed,
            run.proxy,
            replace(cfg, seed=s),
            str(standalone_folder(root, parse_arch(a, space), data, run.proxy, cfg) / f"seed{s}"),
        )
        for s in seeds
        for a in archs
    ]


def finished_search(run: str | Path) -> tuple[RunConfig, SearchSettings, dict]:
    """A finished search run's settings and final search record; one line when it is not one."""
    folder = SearchRun.read(run)
    if folder is None:
        raise HnasError(f"{run} is not an HNAS run (no config.json): give a search run folder")
    return folder.config, folder.search, folder.final_search()


def rank_run(
    run: str | Path,
    settings: RankSettings | None = None,
    latency=None,
    log=print,
    progress=None,
) -> dict:
    """Rank a finished search run: pick K architectures (per `settings.pick`), train each stand-alone with S seeds
    (`settings.jobs` at a time), score one-shot against stand-alone with intervals and the noise ceiling;
    RUN/rank/rank.json and rank.png. `latency` prices space draws (optional)."""
    settings = settings or RankSettings()
    run = Path(run)
    cfg, search, final = finished_search(run)
    picks = pick_architectures(SearchRun(run, cfg, search), final, settings, latency)
    tcfg = standalone_config(cfg.train, search, settings)
    seeds = [cfg.train.seed + i for i in range(settings.seeds)]
    archs = list(dict.fromkeys(r["arch"] for rows in picks.values() for r in rows))
    jobs = standalone_jobs(archs, cfg, tcfg, seeds, run / "rank" / "standalone")
    log(f"{run.name}: {len(jobs)} stand-alone trainings ({len(archs)} architectures x {len(seeds)} seeds)")
    done = train_jobs(jobs, settings.jobs, log=log, progress=progress)
    out = ranked(run, cfg, search, final, tcfg, seeds, picks, by_arch(done), settings)
    atomic_write_json(run / "rank" / "rank.json", out)
    scatter(run / "rank" / "rank.png", [out])
    return out


def by_arch(results: list[StandaloneResult]) -> dict[str, list[StandaloneResult]]:
    """Stand-alone results grouped by architecture, in seed order."""
    out: dict[str, list[StandaloneResult]] = {}
    for r in sorted(results, key=lambda r: r.seed):
        out.setdefault(r.arch, []).append(r)
    return out


def ranked(run, cfg, search, final, tcfg, seeds, picks, trained, settings: RankSettings) -> dict:
    """A run's ranking record: per pick its architectures with their repeats and every ranking figure."""
    return {
        "run": str(run),
        "stages": search.stages,
        "space_size": final["searched_size"],
        "initial_size": str(SearchSpace.from_dict(cfg.space).size()),
        "standalone_epochs": tcfg.epochs,
        "standalone_lr": tcfg.lr,
        "seeds": seeds,
        "picks": {name: _scored(rows, trained, settings) for name, rows in picks.items()},
    }


def _scored(rows: list[dict], trained: dict[str, list[StandaloneResult]], settings: RankSettings) -> dict:
    """One pick's architectures with their stand-alone repeats (mean, spread) and the ranking figures."""
    archs = []
    for r in rows:
        res = trained[r["arch"]]
        top1 = np.array([x.test_top1 for x in res])
        loss = np.array([x.test_loss for x in res])
        archs.append(
            {
                **r,
                "standalone_test": float(top1.mean()),
                "standalone_test_std": float(top1.std(ddof=1)) if len(res) > 1 else 0.0,
                "standalone_test_loss": float(loss.mean()),
                "standalone_test_loss_std": float(loss.std(ddof=1)) if len(res) > 1 else 0.0,
                "standalone_val": float(np.mean([x.val_top1 for x in res])),
                "repeats": [asdict(x) for x in res],
            }
        )
    stats = ranking_stats(
        [a["one_shot"] for a in archs],
        [[x["test_top1"] for x in a["repeats"]] for a in archs],
        [[x["test_loss"] for x in a["repeats"]] for a in archs],
        settings.bootstrap,
        settings.draw_seed,
    )
    return {"k": len(archs), **stats, "architectures": archs}


# --- figures ---------------------------------------------------------------------------------------

_MARKERS = {"front": "o", "space": "^"}


def _nan(v) -> float:
    return float("nan") if v is None else float(v)


def _scatter_on(ax, results: list[dict]) -> dict[str, list[list[float]]]:
    """One-shot top-1 against the mean stand-alone test top-1 (bars: the seeds' standard deviation), one colour
    per run and one marker per pick; returns the points as drawn, per series label."""
    drawn = {}
    for i, res in enumerate(results):
        for pick, p in res["picks"].items():
            xs = [a["one_shot"] for a in p["architectures"]]
            ys = [a["standalone_test"] for a in p["architectures"]]
            sd = [a["standalone_test_std"] for a in p["architectures"]]
            label = f"M = {res['stages']}, {pick}: tau {_nan(p['kendall_tau']):.2f}"
            c = ax.errorbar(
                xs, ys, yerr=sd, fmt=_MARKERS.get(pick, "s"), ms=5, color=f"C{i}", capsize=2, lw=0.8, label=label
            )
            line = c.lines[0]
            drawn[label] = np.column_stack([line.get_xdata(), line.get_ydata()]).tolist()
    ax.set_xlabel("one-shot top-1 (supernet, val)")
    ax.set_ylabel("stand-alone top-1 (test), mean over seeds")
    ax.set_title("one-shot against stand-alone")
    ax.legend(fontsize=7)
    return drawn


def scatter(path: Path, results: list[dict]) -> dict[str, list[list[float]]]:
    """One-shot against stand-alone top-1 (Fig. 5) in `path`; returns the points as drawn."""
    from hnas.core.plots import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(5.5, 4.5))
    drawn = _scatter_on(ax, results)
    save_png(fig, path)
    return drawn


def plot_study(
    path: Path, table: list[dict], results: list[dict], curves: dict | None = None, table5: list[dict] | None = None
) -> dict:
    """The study's figure in `path`: per row of `table` (an M and a pick) a bar for tau (one-shot against the mean
    of S seeds) with its 95 % interval, a dot for tau against one seed (mean over seeds) with its interval, and the
    noise ceiling (one seed against another) as a line in its interval band; beside it the one-shot against
    stand-alone scatter; below, when given, the supernet's validation accuracy per epoch for each M (Fig. 6,
    `curves`) and Table 5 (`table5`). Returns what was drawn, read back from the plot's artists (nan as None)."""
    from matplotlib.patches import Rectangle

    from hnas.core.plots import pyplot, save_png

    rows = 2 if curves is not None or table5 is not None else 1
    fig, axes = pyplot().subplots(
        rows, 2, figsize=(12, 4.8 * rows), gridspec_kw={"width_ratios": [1, 1.15]}, squeeze=False
    )
    ax, ax2 = axes[0]
    x = np.arange(len(table), dtype=float)
    tau = np.array([_nan(r["kendall_tau"]) for r in table])
    ci = np.array([[_nan(v) for v in r["kendall_tau_ci"]] for r in table]).reshape(-1, 2)
    seed = np.array([_nan(r["kendall_tau_seed"]) for r in table])
    seed_ci = np.array([[_nan(v) for v in r["kendall_tau_seed_ci"]] for r in table]).reshape(-1, 2)
    ceil = np.array([_nan(r["ceiling_tau"]) for r in table])
    ceil_ci = np.array([[_nan(v) for v in r["ceiling_tau_ci"]] for r in table]).reshape(-1, 2)
    runs = list(dict.fromkeys(r["M"] for r in table))  # one colour per run, as in the scatter
    bars = ax.bar(x - 0.12, tau, width=0.4, color=[f"C{runs.index(r['M'])}" for r in table], alpha=0.8)
    for patch, r in zip(bars.patches, table):
        patch.set_hatch("//" if r["pick"] == "space" else "")
    bars.set_label("one-shot vs mean of S seeds (95 % interval)")
    err = ax.errorbar(x - 0.12, tau, yerr=np.abs(np.vstack([tau - ci[:, 0], ci[:, 1] - tau])), fmt="none", ecolor="k")
    dots = ax.errorbar(
        x + 0.22,
        seed,
        yerr=np.abs(np.vstack([seed - seed_ci[:, 0], seed_ci[:, 1] - seed])),
        fmt="o",
        color="k",
        ms=4,
        capsize=3,
        label="one-shot vs one seed (mean over seeds)",
    )
    bands = [  # None where the ceiling is undefined (one seed)
        ax.add_patch(Rectangle((xi - 0.4, lo), 0.8, hi - lo, color="0.6", alpha=0.3, lw=0))
        if np.isfinite(lo) and np.isfinite(hi)
        else None
        for xi, (lo, hi) in zip(x, ceil_ci)
    ]
    ceiling = ax.hlines(
        ceil, x - 0.4, x + 0.4, colors="0.3", linestyles="--", label="ceiling: seed vs seed (band: 95 %)"
    )
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(x, [f"M = {r['M']}\n{r['pick']}" for r in table])
    ax.set_ylabel("Kendall tau")
    ax.set_ylim(-1.05, 1.05)
    ax.set_title("ranking consistency (Table 4) and the noise ceiling")
    ax.legend(fontsize=7, loc="lower right")
    points = _scatter_on(ax2, results)
    drawn = _finite_or_none(
        {
            "labels": [t.get_text() for t in ax.get_xticklabels()],
            "tau": [p.get_height() for p in bars.patches],
            "tau_ci": _extents(err),
            "tau_seed": dots.lines[0].get_ydata().tolist(),
            "tau_seed_ci": _extents(dots),
            "ceiling": [seg[0][1] if len(seg) else np.nan for seg in ceiling.get_segments()],
            "ceiling_band": [[np.nan] * 2 if b is None else [b.get_y(), b.get_y() + b.get_height()] for b in bands],
            "points": points,
        }
    )
    if curves is not None:
        drawn["fig6"] = _finite_or_none(_plot_curves(axes[1][0], curves))
    if table5 is not None:
        drawn["table5"] = _finite_or_none(_plot_table5(axes[1][1], table5))
    save_png(fig, path)
    return drawn


def _plot_curves(ax, curves: dict) -> dict:
    """Fig. 6: per M the supernet's validation accuracy per epoch, the mean over search seeds (line) and their
    range (band); dotted lines where it was pruned. Returns the lines as drawn, per M."""
    drawn = {}
    for i, (M, by_seed) in enumerate(sorted(curves.items())):
        runs = list(by_seed.values())
        x = np.array(runs[0]["epoch"], dtype=float)
        acc = np.array([[_nan(v) for v in r["val_acc"]] for r in runs], dtype=float)
        with np.errstate(all="ignore"):
            mean, lo, hi = np.nanmean(acc, 0), np.nanmin(acc, 0), np.nanmax(acc, 0)
        (line,) = ax.plot(x, mean, "-o", ms=3, color=f"C{i}", label=f"M = {M} (mean of {len(runs)} search seeds)")
        ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.15, lw=0)
        for e in runs[0]["pruned_after"]:
            ax.axvline(e + 0.5, color=f"C{i}", ls=":", lw=1)
        drawn[M] = {"epoch": line.get_xdata().tolist(), "val_acc": line.get_ydata().tolist()}
    ax.set_xlabel("supernet epoch (all training stages)")
    ax.set_ylabel("supernet validation top-1 (fixed architectures)")
    ax.set_title("Fig. 6: supernet accuracy per epoch (dotted: pruned)")
    ax.legend(fontsize=7, loc="lower right")
    return drawn


def _plot_table5(ax, table5: list[dict]) -> dict:
    """Table 5: per method the stand-alone top-1 of the best architecture inside the band, mean over search seeds
    (bar) with their standard deviation, and each seed's value (dots). Returns the bars, errors and dots."""
    x = np.arange(len(table5), dtype=float)
    mean = np.array([r["standalone_mean"] for r in table5])
    sd = np.array([_nan(r["standalone_sd"]) for r in table5])
    bars = ax.bar(x, mean, width=0.6, color=[f"C{r['M'] - 2}" if "SPOS" not in r["method"] else "0.6" for r in table5])
    err = ax.errorbar(x, mean, yerr=np.nan_to_num(sd), fmt="none", ecolor="k", capsize=4)
    dots = []
    for xi, r in zip(x, table5):
        ys = [p["standalone_test"] for p in r["per_seed"]]
        (d,) = ax.plot([xi] * len(ys), ys, "k.", ms=6)
        dots.append(d.get_ydata().tolist())
    lo = min(min(d) for d in dots)
    hi = max(max(d) for d in dots)
    pad = max(0.01, (hi - lo) * 0.5)
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(x, [r["method"].replace(" (", "\n(").replace(" on ", "\non ") for r in table5], fontsize=8)
    ax.set_ylabel("stand-alone test top-1 of the best architecture")
    ax.set_title("Table 5: the best in the band, mean and sd over search seeds")
    return {"mean": [p.get_height() for p in bars.patches], "sd": _sd_drawn(err, mean), "points": dots}


def _sd_drawn(container, centre: np.ndarray) -> list[float]:
    """The half-length of each symmetric error bar as drawn."""
    segments = container.lines[2][0].get_segments()
    return [float(seg[-1][1] - c) if len(seg) else np.nan for seg, c in zip(segments, centre)]


def _finite_or_none(data):
    """`data` with every nan replaced by None (JSON has no nan)."""
    if isinstance(data, dict):
        return {k: _finite_or_none(v) for k, v in data.items()}
    if isinstance(data, list | tuple | np.ndarray):
        return [_finite_or_none(v) for v in data]
    if isinstance(data, float | np.floating):
        return None if np.isnan(data) else float(data)
    return data


def _extents(container) -> list[list[float]]:
    """The [low, high] of each error bar of an errorbar container, as drawn (nan where none is drawn)."""
    segments = container.lines[2][0].get_segments()
    return [sorted([seg[0][1], seg[-1][1]]) if len(seg) else [np.nan, np.nan] for seg in segments]
