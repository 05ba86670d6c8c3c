"""Supernet figures on this CPU at proxy size: training step time against the stand-alone network of the
same architecture on the same batch (target ratio <= 1.15), and one-shot evaluations per minute including
exact BN recalibration.

    .venv/bin/python benchmarks/bench_supernet.py [--space basic] [--resolution 32] [--width 0.5] [--batch 64]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hnas.data import digits  # noqa: E402
from hnas.evaluate import OneShotEvaluator  # noqa: E402
from hnas.spec.arch import sample  # noqa: E402
from hnas.spec.space import load_space  # noqa: E402
from hnas.supernet import Supernet, proxy_space  # noqa: E402


def step_time(model, x, y, path=None, steps=20) -> float:
    """Median seconds of forward + backward + SGD step."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    times = []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        out = model(x, path) if path is not None else model(x)
        loss = torch.nn.functional.cross_entropy(out, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 3:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="basic")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--archs", type=int, default=5)
    p.add_argument("--bn-images", type=int, default=500)
    a = p.parse_args()
    torch.manual_seed(0)
    sp = proxy_space(load_space(a.space), a.resolution, a.width, 10)
    data = digits(a.resolution)
    x, y = data.train.tensors[0][: a.batch], data.train.tensors[1][: a.batch]
    supernet = Supernet(sp)
    ratios = []
    print(f"{a.space} at {a.resolution}px, width {a.width}, batch {a.batch}, {torch.get_num_threads()} threads")
    print(f"{'arch':>4s} {'supernet ms':>12s} {'stand-alone ms':>15s} {'ratio':>6s}")
    for i, arch in enumerate(sample(sp, a.archs, np.random.default_rng(0))):
        s_t = step_time(supernet, x, y, arch)
        n_t = step_time(supernet.extract(arch), x, y)
        ratios.append(s_t / n_t)
        print(f"{i:4d} {s_t * 1e3:12.1f} {n_t * 1e3:15.1f} {s_t / n_t:6.3f}")
    print(f"median step-time ratio supernet / stand-alone: {statistics.median(ratios):.3f} (target <= 1.15)")
    ev = OneShotEvaluator(supernet, data.val, data.train, bn_images=a.bn_images, batch_size=256)
    archs = sample(sp, 20, np.random.default_rng(1))
    t0 = time.perf_counter()
    ev(archs)
    dt = time.perf_counter() - t0
    print(
        f"one-shot evaluations ({a.bn_images} BN images, {len(data.val)} val images): "
        f"{len(archs) / dt * 60:.0f} per minute ({dt / len(archs) * 1e3:.0f} ms each)"
    )


if __name__ == "__main__":
    main()
