"""Supernet training throughput through `hnas.train.train` itself (loader, channels_last, AMP on CUDA,
checkpoints excluded): `step` on one device, `ddp` under torchrun (rank 0 prints images/s of all ranks).
`benchmarks/gpu_check.sh` calls it; `--device cpu` and tiny settings check it without a GPU.

    .venv/bin/python benchmarks/bench_gpu.py step [--device cuda] [--resolution 224] [--width 1.0] [--batch 128]
    .venv/bin/python -m torch.distributed.run --standalone --nproc_per_node=N benchmarks/bench_gpu.py ddp [...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch.utils.data import Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hnas.settings import TrainConfig  # noqa: E402
from hnas.spec.modules import zero_init_residuals  # noqa: E402
from hnas.spec.space import load_space  # noqa: E402
from hnas.supernet import Supernet, proxy_space  # noqa: E402
from hnas.train import PathSampler, dist_info, init_distributed, train  # noqa: E402


class Pool(Dataset):
    """`length` items cycling over a small pool of random images (memory stays small at any length)."""

    def __init__(self, length: int, resolution: int, classes: int = 10, pool: int = 256):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(pool, 3, resolution, resolution, generator=g)
        self.y = torch.randint(0, classes, (pool,), generator=g)
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        return self.x[i % len(self.x)], self.y[i % len(self.y)]


def measure(a, world: int) -> tuple[float, int]:
    """(seconds of the last epoch, steps per epoch) of supernet training at `a`'s settings."""
    device = torch.device(a.device, dist_info()[2]) if a.device == "cuda" else torch.device("cpu")
    torch.manual_seed(0)
    net = zero_init_residuals(Supernet(proxy_space(load_space(a.space), a.resolution, a.width, 10)))
    cfg = TrainConfig(epochs=a.epochs, lr=0.05, batch_size=a.batch, seed=0, workers=a.workers, amp=not a.no_amp)
    data = Pool(a.steps * a.batch * world, a.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        history = train(net, data, cfg, Path(tmp) / "ck.pt", PathSampler(net.space, 0), device=device)
    return history[-1].seconds, a.steps


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=("step", "ddp"))
    p.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    p.add_argument("--space", default="basic")
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--batch", type=int, default=128, help="per process")
    p.add_argument("--steps", type=int, default=40, help="steps per epoch; the last of --epochs epochs is timed")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--no-amp", action="store_true")
    a = p.parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu: --device cuda but torch sees no CUDA device (use --device cpu for a dry run)")
    if a.mode == "ddp":
        init_distributed()
    rank, world, _ = dist_info()
    seconds, steps = measure(a, world)
    if rank != 0:
        return
    images = steps * a.batch * world
    amp = "AMP" if a.device == "cuda" and not a.no_amp else "fp32"
    where = f"{world} process(es)" if a.mode == "ddp" else "one device"
    print(
        f"{a.mode}: {where}, {a.space} at {a.resolution} px, width {a.width}, batch {a.batch}/process, {amp}, "
        f"channels_last, {a.workers} workers: {seconds / steps * 1e3:.1f} ms/step, {steps / seconds:.2f} steps/s, "
        f"images/s {images / seconds:.1f}"
    )


if __name__ == "__main__":
    main()
