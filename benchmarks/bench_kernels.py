"""Training steps and evaluation passes of proxy networks three ways: whole KxK kernels in torch's default
(contiguous) layout, as before this wave; the kernels cropped to the taps that can meet the input
(`hnas.spec.modules.SameConv2d`), contiguous; and cropped in channels_last (`MEMORY_FORMAT`: how hnas trains and
evaluates now). Round robin on the same networks and batches, at the demo's proxy (16 px) and the study's (32 px,
`mnist5k-translated`), width 0.5.

Each size: `--archs` architectures of the `basic` space drawn at random (seeded); per architecture and way, the
median of `--steps` timed training steps (forward, cross-entropy, backward, SGD step) and of as many eval-mode
forward passes, after one untimed step. Prints per-size medians over the architectures and their ratios to the
first way, how far the eval outputs of the ways are from the first's (max absolute difference), and the load
average before and after.

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
from hnas.spec.modules import MEMORY_FORMAT  # noqa: E402
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
    ways = ("whole", "cropped", "channels_last")
    times = {(way, what): [] for way in ways for what in ("train", "eval")}
    worst = dict.fromkeys(ways[1:], 0.0)
    for arch in archs:
        torch.manual_seed(0)
        net = build_network(arch)
        opt = torch.optim.SGD(net.parameters(), lr=0.01)
        xs = {False: x, True: x.contiguous(memory_format=MEMORY_FORMAT)}

        def train_step(net=net, opt=opt, xs=xs):
            net.train()
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(xs[net.is_cl]), y).backward()
            opt.step()

        @torch.no_grad()
        def evaluate(net=net, xs=xs):
            net.eval()
            return net(xs[net.is_cl])

        for way in ways:
            net.is_cl = way == "channels_last"
            net.to(memory_format=MEMORY_FORMAT if net.is_cl else torch.contiguous_format)
            with whole_kernels(way == "whole"):
                times[way, "train"].append(timed(train_step, a.steps))
                times[way, "eval"].append(timed(evaluate, a.steps))
        outputs = {}
        for way in ways:  # the same weights (the last trained), each way
            net.is_cl = way == "channels_last"
            net.to(memory_format=MEMORY_FORMAT if net.is_cl else torch.contiguous_format)
            with whole_kernels(way == "whole"):
                outputs[way] = evaluate()
        for way in ways[1:]:
            worst[way] = max(worst[way], float((outputs[way] - outputs["whole"]).abs().max()))
    for what in ("train", "eval"):
        ms = {way: statistics.median(times[way, what]) * 1e3 for way in ways}
        print(
            f"{resolution:3d} px, {what:5s} (batch {a.batch}, median over {len(archs)} architectures): "
            + ", ".join(f"{way} {ms[way]:7.1f} ms ({ms['whole'] / ms[way]:4.2f}x)" for way in ways)
        )
    print(
        f"{resolution:3d} px: eval outputs differ from whole kernels' by at most "
        + ", ".join(f"{worst[way]:.2e} ({way})" for way in ways[1:])
    )


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
