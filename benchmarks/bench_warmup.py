"""Does the supernet learn on a CPU budget? One-shot top-1 of random architectures after SPOS training with and
without the chain-layer warm-up (`--warmup-epochs`), at the demo's settings: basic at 16 px, width 0.5, digits,
12 epochs, SGD lr 0.05, batch 32, label smoothing 0.1.

    .venv/bin/python benchmarks/bench_warmup.py [--epochs 12] [--warmup 0 4] [--archs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hnas.data import digits  # noqa: E402
from hnas.evaluate import OneShotEvaluator  # noqa: E402
from hnas.settings import TrainConfig
from hnas.spec.arch import sample  # noqa: E402
from hnas.spec.modules import zero_init_residuals  # noqa: E402
from hnas.spec.space import load_space  # noqa: E402
from hnas.supernet import Supernet, proxy_space  # noqa: E402
from hnas.train import PathSampler, train  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--space", default="basic")
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--width", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--warmup", type=int, nargs="+", default=[0, 4])
    p.add_argument("--archs", type=int, default=20)
    a = p.parse_args()
    data = digits(a.resolution)
    sp = proxy_space(load_space(a.space), a.resolution, a.width, 10)
    archs = sample(sp, a.archs, np.random.default_rng(7))
    print(
        f"{a.space} at {a.resolution}px, width {a.width}, digits, {a.epochs} epochs, {torch.get_num_threads()} threads"
    )
    print(f"{'warm-up':>7s} {'last train acc':>14s} {'one-shot median':>15s} {'min':>6s} {'max':>6s} {'train s':>8s}")
    for w in a.warmup:
        torch.manual_seed(0)
        net = zero_init_residuals(Supernet(sp))
        cfg = TrainConfig(epochs=a.epochs, lr=0.05, batch_size=32, label_smoothing=0.1, amp=False, warmup_epochs=w)
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            hist = train(net, data.train, cfg, Path(tmp) / "ck.pt", PathSampler(sp, 0), device=torch.device("cpu"))
            dt = time.perf_counter() - t0
        acc = OneShotEvaluator(net, data.val, data.train, bn_images=256, batch_size=512)(archs)
        print(
            f"{w:7d} {hist[-1].train_acc:14.3f} {statistics.median(acc):15.3f} {min(acc):6.3f} {max(acc):6.3f} "
            f"{dt:8.1f}"
        )


if __name__ == "__main__":
    main()
