"""Training steps and evaluation passes of proxy networks with whole KxK kernels (every tap run, as before
`hnas.spec.modules.SameConv2d`) against the kernels cropped to the taps that can meet the input, round robin on the
same networks and batches, at the demo's proxy (16 px) and the study's (32 px, `mnist5k-translated`), width 0.5.

Each size: `--archs` architectures of the `basic` space drawn at random (seeded); per architecture and way, the
median of `--steps` timed training steps (forward, cross-entropy, backward, SGD step) and of as many eval-mode
forward passes, after one untimed step. Prints per-size medians over the architectures and their ratio, whether the
outputs of the two ways agree (max absolute difference), and the load average before and after.

    .venv/bin/python benchmarks/bench_kernels.py [--archs 6] [--steps 5] [--batch 128]
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eval import machine  # noqa: E402
from bench_prefix import whole_kernels  # noqa: E402

from hnas.spec.arch import sample  # noqa: E402
from hnas.spec.network import build_network  # noqa: E402
from hnas.spec.space import load_space  # noqa: E402
from hnas.supernet import proxy_space  # noqa: E402


def timed(fn, steps: int) -> float:
    """Median seconds of `steps` calls of `fn`, after one untimed call."""
    fn()
    seconds = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds)


def one_size(resolution: int, a) -> None:
    space = proxy_space(load_space("basic"), resolution, 0.5, 10)
    archs = sample(space, a.archs, np.random.default_rng(0))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(a.batch, 3, resolution, resolution, generator=gen)
    y = torch.randint(0, 10, (a.batch,), generator=gen)
    times = {(way, what): [] for way in ("whole", "cropped") for what in ("train", "eval")}
    worst = 0.0
    for arch in archs:
        torch.manual_seed(0)
        net = build_network(arch)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)

        def train_step(net=net, opt=opt):
            net.train()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()

        @torch.no_grad()
        def evaluate(net=net):
            net.eval()
            return net(x)

        for way in ("whole", "cropped"):
            with whole_kernels(way == "whole"):
                times[way, "train"].append(timed(train_step, a.steps))
                times[way, "eval"].append(timed(evaluate, a.steps))
        with whole_kernels(True):
            whole = evaluate()
        worst = max(worst, float((whole - evaluate()).abs().max()))
    for what in ("train", "eval"):
        w, c = (statistics.median(times[way, what]) * 1e3 for way in ("whole", "cropped"))
        print(
            f"{resolution:3d} px, {what:5s} (batch {a.batch}, median over {len(archs)} architectures): whole kernels "
            f"{w:7.1f} ms, cropped {c:7.1f} ms, ratio {w / c:5.2f}x"
        )
    print(f"{resolution:3d} px: outputs of the two ways differ by at most {worst:.2e}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", type=int, default=6)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--sizes", type=int, nargs="+", default=[16, 32])
    a = p.parse_args(argv)
    print(machine(torch.device("cpu")))
    for resolution in a.sizes:
        one_size(resolution, a)
    print(machine(torch.device("cpu")))


if __name__ == "__main__":
    main()
