"""Why did the one-shot accuracy fall with M in the first ranking study? Arms that separate the causes, on that
study's settings (mnist5k at 16 px, width 0.5, batch 128, 12 supernet epochs at lr 0.2, population 12 x 8
generations, band 0.9-1.1 x the MobileNetV2-like reference on lut/local-amd-epyc.json), over search seeds:

    M2            I-Supernet, 12 epochs (chain-layer warm-up 2 epochs, as every arm here)
    M2-warmup4    I-Supernet with the first study's warm-up of a third of its stage (4 epochs)
    M4-restart    6 + 4 + 2 epochs, each stage from its own lr to 0 (0.2, then 0.04 and 0.04): the first study
    M4-restart-noprune    the same schedule with P_th = 0 (nothing pruned)
    M4-continuous         6 + 4 + 2 epochs on M2's learning-rate curve (0.2 -> 0.1 -> 0.033 -> 0), pruned twice
    M4-continuous-noprune the same curve, nothing pruned

Prints per arm (mean, sd over seeds): the mean one-shot top-1 of the final Pareto front, the best one-shot top-1
inside the band, and the final supernet's validation accuracy (mean one-shot top-1 of its fixed architectures).
Runs are cached under --cache (never in the repository) and resume; two searches run at a time.

    .venv/bin/python benchmarks/bench_schedule.py [--seeds 3] [--arms M2,M4-restart,...]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hnas.core.band import Band  # noqa: E402
from hnas.core.io import read_json  # noqa: E402
from hnas.recipes import continuous_lrs  # noqa: E402
from hnas.searchrun import RESULTS_SCHEMA  # noqa: E402
from hnas.settings import ProxySettings, RunConfig, SearchSettings, TrainConfig  # noqa: E402
from hnas.spec.arch import parse_arch  # noqa: E402
from hnas.spec.space import load_space  # noqa: E402
from hnas.workflows.search import REFERENCE, latency_of, open_search  # noqa: E402
from hnas.workflows.study import run_searches  # noqa: E402

ARMS = {  # name: (M, schedule, warm-up epochs, P_th)
    "M2": (2, "restart", 2, 0.01),
    "M2-warmup4": (2, "restart", 4, 0.01),
    "M4-restart": (4, "restart", 2, 0.01),
    "M4-restart-noprune": (4, "restart", 2, 0.0),
    "M4-continuous": (4, "continuous", 2, 0.01),
    "M4-continuous-noprune": (4, "continuous", 2, 0.0),
}
EPOCHS = {2: [12], 4: [6, 4, 2]}
LR = 0.2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", default=",".join(ARMS))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--lut", default="lut/local-amd-epyc.json")
    p.add_argument("--cache", default=str(Path.home() / ".cache" / "hnas-bench" / "schedule"))
    a = p.parse_args()
    space = load_space("basic")
    proxy = ProxySettings(resolution=16, width=0.5, bn_images=256, eval_batch=512, val_archs=4)
    base = RunConfig(space=space.to_dict(), data="mnist5k", proxy=proxy, lut=a.lut)
    band = Band(0.9, 1.1).scaled(latency_of(base).predict_arch(parse_arch(REFERENCE, space)))
    arms = a.arms.split(",")
    paths = {}
    for name in arms:
        M, schedule, warmup, p_th = ARMS[name]
        ep = EPOCHS[M]
        lrs = continuous_lrs(ep, LR) if schedule == "continuous" else [LR] + [LR / 5] * (M - 2)
        for seed in range(a.seeds):
            train = TrainConfig(epochs=ep[0], lr=LR, batch_size=128, warmup_epochs=warmup, seed=seed)
            run = RunConfig(space=space.to_dict(), data="mnist5k", proxy=proxy, train=train, lut=a.lut)
            search = SearchSettings(
                stages=M, epochs=ep, lrs=lrs, schedule=schedule, p_th=p_th, population=12, generations=8,
                band=band, seed=seed,
            )  # fmt: skip
            path = Path(a.cache) / name / f"seed{seed}"
            open_search(path, run, search, log=lambda _: None, progress=False)
            paths[(name, seed)] = path
    run_searches(list(paths.values()), a.jobs, log=lambda m: print(m, flush=True))
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"{a.seeds} search seeds per arm; mean (sd) over seeds\n")
    print("| arm | final front, mean one-shot top-1 | best one-shot in band | final supernet val top-1 |")
    print("|---|---|---|---|")
    for name in arms:
        front, best, sval = [], [], []
        for seed in range(a.seeds):
            res = read_json(paths[(name, seed)] / "results.json", RESULTS_SCHEMA, "results")
            front.append(np.mean([r["accuracy"] for r in res["pareto"]]))
            best.append(res["best"][0]["accuracy"])
            sval.append(res["stages"][-2]["supernet_val_acc"])
        cells = [f"{np.mean(v):.3f} ({np.std(v, ddof=1) if len(v) > 1 else 0:.3f})" for v in (front, best, sval)]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
