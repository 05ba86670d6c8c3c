"""How well splitting a CES generation by architecture balances two ranks (gloo on CPUs), against splitting every
architecture's BatchNorm recalibration and validation across the ranks.

.venv/bin/python benchmarks/bench_dist_search.py [--population 25] [--generations 4]

Two processes run the same CES (the demo's proxy: basic space at 16 px, width 0.5, digits, 256 BN images) with
`hnas.dist.SharedAccuracy`. Per generation and rank it records the CPU time of the rank's share (thread time, so
that the figures hold when the ranks share a core), and prints: the generation's time with architecture-level
splitting (the slower rank's share, plus the gather), the perfectly balanced time (half the sum), what the
imbalance costs, and the estimate for splitting each architecture instead (half its time, plus the two
all-reduces it needs: BatchNorm statistics and the correct count, timed here on a path's BatchNorm buffers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path


def _rank_main(rank: int, world: int, tmp: str, population: int, generations: int) -> None:
    import numpy as np
    import torch
    import torch.distributed as tdist

    from hnas.ces import Constraints, CostTable, ces
    from hnas.data import load_data
    from hnas.dist import SharedAccuracy, gather
    from hnas.evaluate import OneShotEvaluator
    from hnas.spec.arch import sample
    from hnas.spec.space import basic
    from hnas.supernet import Supernet, proxy_space

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    tdist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    space = proxy_space(basic(), 16, 0.5, 10)
    torch.manual_seed(0)
    net = Supernet(space)
    data = load_data("digits", 16, 0, None)
    source = OneShotEvaluator(net, data.val, data.train, bn_images=256, batch_size=512, state_tag="bench")
    per_arch: list[float] = []
    shares: list[float] = []
    counts: list[int] = []

    def timed(archs):
        t0 = time.thread_time()
        out = []
        for a in archs:
            t = time.thread_time()
            out.append(source.accuracy(a))
            per_arch.append(time.thread_time() - t)
        shares.append(time.thread_time() - t0)
        counts.append(len(archs))
        return np.array(out)

    costs = CostTable(space)
    ces(space, SharedAccuracy(timed), lambda v: costs(v)[0] / 1e6, Constraints(), population, generations, seed=0)
    gathers = []
    for _ in range(30):
        tdist.barrier()
        t = time.perf_counter()
        gather([("K3E6|K3E6-K3E6-ID-ID|...", 0.5)] * ((population + 1) // 2))
        gathers.append(time.perf_counter() - t)
    arch = sample(space, 1, np.random.default_rng(0))[0]
    bn = [m for part in net.path_modules(arch) for m in part.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = torch.zeros(2 * sum(m.num_features for m in bn) + 2)
    reduces = []
    for _ in range(30):
        tdist.barrier()
        t = time.perf_counter()
        tdist.all_reduce(stats)
        reduces.append(time.perf_counter() - t)
    Path(tmp, f"rank{rank}.json").write_text(
        json.dumps(
            {
                "shares": shares,
                "counts": counts,
                "per_arch": per_arch,
                "gather_s": statistics.median(gathers),
                "allreduce_s": statistics.median(reduces),
            }
        )
    )
    tdist.destroy_process_group()


def main() -> None:
    import torch.multiprocessing as mp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=25)
    ap.add_argument("--generations", type=int, default=4)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mp.spawn(_rank_main, args=(2, tmp, a.population, a.generations), nprocs=2, join=True)
        wall = time.perf_counter() - t0
        r = [json.loads(Path(tmp, f"rank{i}.json").read_text()) for i in (0, 1)]
    gather_s, reduce_s = r[0]["gather_s"], r[0]["allreduce_s"]
    per_arch = r[0]["per_arch"] + r[1]["per_arch"]
    print(
        f"population {a.population}, {a.generations} generations, 2 gloo ranks, {len(per_arch)} evaluations "
        f"({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}, spawn to end {wall:.1f} s)"
    )
    print(
        f"one evaluation: median {statistics.median(per_arch) * 1e3:.1f} ms (min {min(per_arch) * 1e3:.1f}, "
        f"max {max(per_arch) * 1e3:.1f}); gather {gather_s * 1e3:.2f} ms; all-reduce of a path's BN stats "
        f"{reduce_s * 1e3:.2f} ms"
    )
    print("gen  archs  rank0 s  rank1 s  by arch s  balanced s  imbalance  by arch, split inside s")
    tot_arch = tot_bal = tot_inside = 0.0
    rows = zip(r[0]["shares"], r[1]["shares"], r[0]["counts"], r[1]["counts"], strict=False)
    for g, (s0, s1, n0, n1) in enumerate(rows):
        by_arch = max(s0, s1) + gather_s
        balanced = (s0 + s1) / 2
        n = n0 + n1
        inside = balanced + n * 2 * reduce_s
        tot_arch, tot_bal, tot_inside = tot_arch + by_arch, tot_bal + balanced, tot_inside + inside
        print(
            f"{g + 1:3d}  {n0:2d}+{n1:<2d}  {s0:7.3f}  {s1:7.3f}  {by_arch:9.3f}  {balanced:10.3f}  "
            f"{(by_arch / balanced - 1) * 100:8.1f} %  {inside:9.3f}"
        )
    print(
        f"all  by architecture {tot_arch:.2f} s, balanced {tot_bal:.2f} s (+{(tot_arch / tot_bal - 1) * 100:.1f} %), "
        f"split inside each architecture {tot_inside:.2f} s (+{(tot_inside / tot_bal - 1) * 100:.1f} %)"
    )


if __name__ == "__main__":
    main()
