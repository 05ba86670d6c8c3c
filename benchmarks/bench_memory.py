"""The memory estimate (hnas/memory.py) against measured peaks: for each configuration, a fresh process builds
the supernet, trains a few steps on the largest path (SGD with momentum, as `hnas.train` does) and reports its
peak resident memory above what it held before the supernet existed; the estimate's model part (activations,
weights, gradients, momentum) is printed beside it.

    .venv/bin/python benchmarks/bench_memory.py [--configs basic:64:1.0:64,large:32:1.0:128]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, resource, sys, torch
from hnas.memory import footprint, largest_path
from hnas.spec.space import load_space
from hnas.supernet import Supernet, proxy_space
space, res, width, batch = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
torch.set_num_threads(1)
ps = proxy_space(load_space(space), res, width, 10)
est = footprint(ps, "digits", batch)
x, y = torch.randn(batch, 3, res, res), torch.randint(0, 10, (batch,))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
net = Supernet(ps)
opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
path = largest_path(net.space)
for _ in range(3):
    loss = torch.nn.functional.cross_entropy(net(x, path), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"estimate": est.activations + est.weights, "measured": (peak - before) * 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default="basic:64:1.0:64,basic:112:1.0:32,basic:64:0.5:128,large:32:1.0:256")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; one torch thread per probe")
    print(f"{'space':>6} {'px':>4} {'width':>5} {'batch':>5} {'estimate MB':>11} {'measured MB':>11} {'est/meas':>8}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for cfg in args.configs.split(","):
        space, res, width, batch = cfg.split(":")
        out = subprocess.run(
            [sys.executable, "-c", PROBE, space, res, width, batch], capture_output=True, text=True, env=env, check=True
        )
        fig = json.loads(out.stdout.strip().splitlines()[-1])
        e, m = fig["estimate"] / 2**20, fig["measured"] / 2**20
        print(f"{space:>6} {res:>4} {width:>5} {batch:>5} {e:>11.0f} {m:>11.0f} {e / m:>8.2f}")


if __name__ == "__main__":
    main()
