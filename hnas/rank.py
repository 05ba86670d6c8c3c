"""Ranking consistency (paper Table 4, Fig. 5): one-shot accuracy against stand-alone accuracy.

`train_standalone` trains one architecture from scratch (resumable); `rank_run` picks K architectures at
about equal distances along a search run's final Pareto front, trains each stand-alone and computes Kendall's
tau and Spearman's rho between their one-shot and stand-alone top-1; `study` runs M = 2, 3 and 4 with equal
total supernet epochs and tabulates tau against the space size, like Table 4.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from hnas.data import DataBundle, load_data
from hnas.errors import HnasError
from hnas.evaluate import top1
from hnas.settings import ProxySettings, TrainConfig
from hnas.spec.arch import Architecture, parse_arch
from hnas.spec.modules import zero_init_residuals
from hnas.spec.network import Network
from hnas.spec.space import SearchSpace
from hnas.supernet import proxy_space
from hnas.train import default_device, read_json, train, write_json


@dataclass
class StandaloneResult:
    """A stand-alone training's outcome."""

    arch: str
    val_top1: float
    test_top1: float
    epochs: int


def train_standalone(
    arch: Architecture, data: DataBundle, proxy: ProxySettings, cfg: TrainConfig, out: Path, progress=None
) -> StandaloneResult:
    """Train `arch` from scratch at proxy size (resumes from out/checkpoint.pt); top-1 on val and test."""
    out = Path(out)
    done = out / "result.json"
    if done.is_file():
        return StandaloneResult(**read_json(done))
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "arch.json",
        {**arch.to_dict(), "space_def": arch.space.to_dict(), "proxy": asdict(proxy), "train": asdict(cfg)},
    )
    space = proxy_space(arch.space, proxy.resolution, proxy.width, data.num_classes)
    net = Network(Architecture(space, arch.ops))
    if not (out / "checkpoint.pt").is_file():
        zero_init_residuals(net)
    device = default_device()
    history = train(net, data.train, cfg, out / "checkpoint.pt", progress=progress, device=device)
    from torch.utils.data import DataLoader

    val = top1(net, DataLoader(data.val, batch_size=proxy.eval_batch), device)
    test = top1(net, DataLoader(data.test, batch_size=proxy.eval_batch), device)
    res = StandaloneResult(str(arch), val, test, len(history))
    write_json(done, asdict(res))
    return res


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
    chosen: list[int] = []
    for target in np.linspace(0, arc[-1], k):
        order = np.argsort(np.abs(arc - target))
        chosen.append(next(int(i) for i in order if int(i) not in chosen))
    return [pool[i] for i in sorted(chosen)]


def correlations(one_shot, standalone) -> dict:
    """Kendall's tau and Spearman's rho."""
    from scipy.stats import kendalltau, spearmanr

    if len(one_shot) < 2:
        return {"kendall_tau": float("nan"), "spearman_rho": float("nan"), "n": len(one_shot)}
    return {
        "kendall_tau": float(kendalltau(one_shot, standalone).statistic),
        "spearman_rho": float(spearmanr(one_shot, standalone).statistic),
        "n": len(one_shot),
    }


def rank_run(
    run: str | Path, k: int = 11, epochs: int | None = None, lr: float | None = None, log=print, progress=None
) -> dict:
    """Train K Pareto-front architectures of a finished search stand-alone; tau and rho; RUN/rank/rank.json."""
    from hnas.pipeline import SEARCH_SCHEMA, read_record, saved_settings

    run = Path(run)
    saved = saved_settings(run)
    if saved is None:
        raise HnasError(f"{run} is not an HNAS run (no config.json): give a search run folder")
    cfg, search = saved
    stages = search.stages
    final = run / f"stage{stages}" / "search.json"
    if not final.is_file():
        raise HnasError(f"{run} has no final search ({final}): finish it with `hnas search --out {run}`")
    rec = read_record(final, SEARCH_SCHEMA, "search record")
    space = SearchSpace.from_dict(cfg.space)
    picked = pick_along_front(rec["archive"], k)
    proxy, base = cfg.proxy, cfg.train
    tcfg = replace(base, epochs=epochs or sum(search.epochs), lr=lr or search.lrs[0], warmup_epochs=0)
    data = load_data(cfg.data, proxy.resolution, base.seed, proxy.per_class)
    rows = []
    for i, r in enumerate(picked):
        log(f"{run.name}: stand-alone {i + 1}/{len(picked)} ({tcfg.epochs} epochs): {r['arch']}")
        res = train_standalone(parse_arch(r["arch"], space), data, proxy, tcfg, run / "rank" / f"arch{i:02d}", progress)
        rows.append(
            {
                "arch": r["arch"],
                "one_shot": r["accuracy"],
                "latency_ms": r["latency_ms"],
                "rank": r["rank"],
                "standalone_val": res.val_top1,
                "standalone_test": res.test_top1,
            }
        )
    corr = correlations([r["one_shot"] for r in rows], [r["standalone_test"] for r in rows])
    out = {
        "run": str(run),
        "stages": stages,
        "space_size": rec["searched_size"],
        "k": len(rows),
        "standalone_epochs": tcfg.epochs,
        **corr,
        "architectures": rows,
    }
    write_json(run / "rank" / "rank.json", out)
    scatter(run / "rank" / "rank.png", [out])
    return out


def scatter(path: Path, results: list[dict]) -> None:
    """One-shot against stand-alone top-1 (Fig. 5), one colour per run."""
    from hnas.plots import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(5.5, 4.5))
    for res in results:
        xs = [r["one_shot"] for r in res["architectures"]]
        ys = [r["standalone_test"] for r in res["architectures"]]
        ax.scatter(xs, ys, s=22, label=f"M = {res['stages']}: tau {res['kendall_tau']:.2f}")
    ax.set_xlabel("one-shot top-1 (supernet, val)")
    ax.set_ylabel("stand-alone top-1 (test)")
    ax.set_title("ranking consistency")
    ax.legend(fontsize=8)
    save_png(fig, path)
