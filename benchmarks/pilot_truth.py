"""Which stand-alone truth ranks? The noise ceiling (Kendall's tau of one seed's stand-alone top-1 against
another's) of K architectures spread over a latency band, for several study designs: the embedded task, the proxy
size, the band the architectures span and the stand-alone recipe. A study whose ceiling is near 0 can confirm or
refute nothing; the study's default design is chosen from this table.

    .venv/bin/python benchmarks/pilot_truth.py [--designs translated32-wide,mnist16-wide,...] [--k 10] [--seeds 2]

The K architectures of a band: 20,000 draws of the space (half uniform, half spread across sizes), priced on the
LUT, those inside the band, then the one nearest each of K evenly spaced latencies (the same for every design with
that band). Each is trained from scratch with each seed, two at a time (one torch thread each); trainings resume
(cached under --cache, never in the repository). Prints, per design: the ceiling tau and rho on top-1 and on test
loss with 95 % bootstrap intervals (resampling architectures), the spread of the mean top-1, and minutes per
training; the machine and load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hnas.core.band import Band  # noqa: E402
from hnas.rank import spread_in_band  # noqa: E402
from hnas.rankstats import ranking_stats  # noqa: E402
from hnas.settings import ProxySettings, TrainConfig  # noqa: E402
from hnas.spec.arch import parse_arch  # noqa: E402
from hnas.spec.space import load_space  # noqa: E402
from hnas.standalone import Job, standalone_folder, train_jobs  # noqa: E402
from hnas.workflows.search import REFERENCE  # noqa: E402
from latency.predict import LatencyPredictor  # noqa: E402


@dataclass(frozen=True)
class Design:
    data: str
    resolution: int
    width: float
    band_rel: tuple[float, float]
    epochs: int = 15
    lr: float = 0.05
    batch: int = 128


DESIGNS = {
    "smoke": Design("mnist5k-translated", 16, 0.25, (0.5, 1.5), epochs=1),  # checks this script in a minute
    "mnist16-narrow": Design("mnist5k", 16, 0.5, (0.9, 1.1), lr=0.1),  # the first study's task and band
    "mnist16-wide": Design("mnist5k", 16, 0.5, (0.5, 1.5), lr=0.1),
    "translated32-narrow": Design("mnist5k-translated", 32, 0.5, (0.9, 1.1), lr=0.1),
    "translated32-wide": Design("mnist5k-translated", 32, 0.5, (0.5, 1.5), lr=0.1),
    "translated32-vwide": Design("mnist5k-translated", 32, 0.5, (0.25, 2.0), lr=0.1),
    "mnist16-vwide": Design("mnist5k", 16, 0.5, (0.25, 2.0), lr=0.1),
    "translated32-vwide-w0.25": Design("mnist5k-translated", 32, 0.25, (0.25, 2.0), lr=0.1),
    "translated32-vwide-e30": Design("mnist5k-translated", 32, 0.5, (0.25, 2.0), epochs=30, lr=0.1),
}


def band_picks(space, lut: str, band_rel: tuple[float, float], k: int, seed: int = 0):
    """K architectures inside the band at about evenly spaced predicted latencies."""
    pred = LatencyPredictor.from_file(lut, space)
    ref = pred.predict_arch(parse_arch(REFERENCE, space))
    band = Band(*band_rel).scaled(ref)
    archs, lat = spread_in_band(space, pred.predict, band, k, np.random.default_rng(seed))
    return archs, lat, band


def rescore(job: Job, res):
    """`res` with its test top-1 and loss measured again from the training's checkpoint on the test split as the
    data defines it now (trainings cached before the translated test split got its 5 views)."""
    import torch
    from torch.utils.data import DataLoader

    from hnas.data import load_data
    from hnas.evaluate import loss_top1
    from hnas.spec.arch import Architecture
    from hnas.spec.network import Network
    from hnas.supernet import proxy_space
    from hnas.train import load_checkpoint

    data = load_data(job.data, job.proxy.resolution, job.data_seed)
    arch = parse_arch(job.arch, load_space_dict(job.space))
    net = Network(Architecture(proxy_space(arch.space, job.proxy.resolution, job.proxy.width, 10), arch.ops))
    net.load_state_dict(load_checkpoint(Path(job.out) / "checkpoint.pt")["model"])
    loss, top1 = loss_top1(net, DataLoader(data.test, batch_size=1000), torch.device("cpu"))
    return replace(res, test_top1=top1, test_loss=loss)


def load_space_dict(d: dict):
    from hnas.spec.space import SearchSpace

    return SearchSpace.from_dict(d)


def run_design(name: str, d: Design, a, space) -> dict:
    archs, lats, band = band_picks(space, a.lut, d.band_rel, a.k)
    proxy = ProxySettings(resolution=d.resolution, width=d.width, eval_batch=512)
    cfg = TrainConfig(epochs=d.epochs, lr=d.lr, batch_size=d.batch, warmup_epochs=0)
    root = Path(a.cache) / name
    jobs = [
        Job(
            str(x),
            space.to_dict(),
            d.data,
            0,
            proxy,
            replace(cfg, seed=s),
            str(standalone_folder(root, x, d.data, proxy, cfg) / f"seed{s}"),
        )
        for s in range(a.seeds)
        for x in archs
    ]
    t0 = time.perf_counter()
    res = train_jobs(jobs, workers=a.workers, log=lambda m: print(f"  [{name}] {m}", flush=True))
    wall = time.perf_counter() - t0
    if a.rescore:
        res = [rescore(j, r) for j, r in zip(jobs, res)]
    top1 = np.array([[r.test_top1 for r in res[s * a.k : (s + 1) * a.k]] for s in range(a.seeds)]).T
    loss = np.array([[r.test_loss for r in res[s * a.k : (s + 1) * a.k]] for s in range(a.seeds)]).T
    st = ranking_stats(np.zeros(a.k), top1, loss, resamples=2000, seed=0)
    secs = [r.seconds for r in res if r.seconds]
    return {
        "design": name,
        **d.__dict__,
        "band_ms": [band.lo, band.hi],
        "picks_ms": [min(lats), max(lats)],
        "ceiling_tau": st["ceiling_tau"],
        "ceiling_tau_ci": st["ceiling_tau_ci"],
        "ceiling_rho": st["ceiling_rho"],
        "ceiling_tau_loss": st["ceiling_tau_loss"],
        "ceiling_tau_loss_ci": st["ceiling_tau_loss_ci"],
        "top1_range": [float(top1.mean(1).min()), float(top1.mean(1).max())],
        "seed_diff_max": float(np.abs(top1[:, 0] - top1[:, 1]).max()) if a.seeds > 1 else None,
        "min_per_training": statistics.median(secs) / 60 if secs else None,
        "wall_min": wall / 60,
    }


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _ci(v) -> str:
    return f"[{_f(v[0])}, {_f(v[1])}]"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--designs", default="translated32-wide,translated32-narrow,mnist16-wide,mnist16-narrow")
    p.add_argument("--space", default="basic")
    p.add_argument("--lut", default="lut/local-amd-epyc.json")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rescore", action="store_true", help="test top-1 and loss again from the checkpoints")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "hnas-bench" / "pilot"))
    a = p.parse_args()
    space = load_space(a.space)
    rows = []
    for name in a.designs.split(","):
        rows.append(run_design(name, DESIGNS[name], a, space))
        r = rows[-1]
        print(
            f"{name}: ceiling tau {_f(r['ceiling_tau'])} {_ci(r['ceiling_tau_ci'])}, on loss "
            f"{_f(r['ceiling_tau_loss'])} {_ci(r['ceiling_tau_loss_ci'])}; top-1 "
            f"{r['top1_range'][0]:.3f}-{r['top1_range'][1]:.3f}; {r['min_per_training']:.1f} min per training",
            flush=True,
        )
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"K = {a.k} architectures per band, S = {a.seeds} seeds, {a.workers} trainings at a time, one thread each\n")
    print("| design | data | px | band (x ref) | recipe | ceiling tau [95 %] | on test loss | top-1 | min/training |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['design']} | {r['data']} | {r['resolution']} | {r['band_rel'][0]}-{r['band_rel'][1]} "
            f"({r['picks_ms'][0]:.1f}-{r['picks_ms'][1]:.1f} ms) | {r['epochs']} ep, lr {r['lr']}, b {r['batch']} | "
            f"{_f(r['ceiling_tau'])} {_ci(r['ceiling_tau_ci'])} | {_f(r['ceiling_tau_loss'])} "
            f"{_ci(r['ceiling_tau_loss_ci'])} | "
            f"{r['top1_range'][0]:.3f}-{r['top1_range'][1]:.3f} | {r['min_per_training']:.1f} |"
        )


if __name__ == "__main__":
    main()
