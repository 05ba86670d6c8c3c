"""Memory a run needs, estimated before anything is allocated, and a one-line refusal when it cannot fit.

    training    activations kept for the backward pass of the largest path (every layer at its largest
                expansion and kernel) at the batch and the proxy resolution, summed over the path's modules'
                outputs on the meta device (nothing allocated), times 1.5 for autograd's buffers
                + the supernet's weights three times (weights, gradients, momentum)
    data        the embedded and CIFAR data sit in memory as float32 tensors at the proxy resolution; ImageNet
                is read from disk (the worker prefetch counts)
    runtime     the Python, torch and data libraries themselves (measured: 0.35-0.45 GB)

On a GPU the model side is checked against the GPU's free memory and the data against the host's. Checked
against measured peaks (benchmarks/bench_memory.py, four configurations): the estimate is 5-33 % above them.

The same estimates guard what else allocates by shape: loading a run's data (`require_data_fit`), one-shot
evaluation of a saved run (`require_fit(..., inference=True)`) and exporting LUT parts
(`latency.export.require_parts_fit`); those factors are bounds, not measurements: they exist to refuse shapes that
cannot fit, in one line, before allocating.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from hnas.core import host as machine
from hnas.core.errors import HnasError
from hnas.core.host import GB, HEADROOM

AUTOGRAD_FACTOR = 1.5
INFERENCE_FACTOR = 3  # a forward pass without gradients holds a block's input, its expanded map and the next one
RUNTIME_BYTES = int(0.6 * 2**30)
EMBEDDED_IMAGES = {"digits": 1797, "mnist5k": 5000, "mnist5k-translated": 4000}  # + its test views, below
CIFAR_IMAGES = 60000


@dataclass(frozen=True)
class Footprint:
    """Bytes a configuration needs, by where they go."""

    activations: int
    weights: int
    data: int
    runtime: int = RUNTIME_BYTES

    @property
    def model(self) -> int:
        """What sits on the training device."""
        return self.activations + self.weights

    @property
    def host(self) -> int:
        """What sits in host memory when training on the CPU."""
        return self.model + self.data + self.runtime

    def describe(self) -> str:
        """`activations 78.1 GB, weights and optimizer 0.2 GB, data 1.1 GB`."""
        return (
            f"activations {self.activations / GB:.1f} GB, weights and optimizer {self.weights / GB:.1f} GB, "
            f"data {self.data / GB:.1f} GB"
        )


def largest_path(space):
    """The architecture of `space` whose activations are largest: each layer at its largest expansion, then
    kernel (the identity only where it is the sole candidate)."""
    from hnas.spec.arch import Architecture

    return Architecture(space, tuple(max(c, key=lambda op: (op.expand, op.kernel)) for c in space.candidates))


def activation_bytes(proxy_space, batch: int, arch=None, element_bytes: int = 4, inference: bool = False) -> int:
    """Bytes of the module outputs one training step keeps for backward, for `arch` (default the largest
    path) of the proxy space at `batch`: measured on the meta device, so nothing is allocated. With `inference`
    (no backward): what one forward pass holds at once, bounded by INFERENCE_FACTOR times the largest output."""
    import torch

    from hnas.spec.network import Network

    arch = arch if arch is not None else largest_path(proxy_space)
    total = largest = 0

    def count(_module, _inputs, output):
        nonlocal total, largest
        total += output.numel() * element_bytes
        largest = max(largest, output.numel() * element_bytes)

    with torch.device("meta"):
        net = Network(arch).eval()  # output sizes only (a 1x1 map cannot be batch-normed in training mode)
        hooks = [m.register_forward_hook(count) for m in net.modules() if not list(m.children())]
        r = proxy_space.skeleton.resolution
        net(torch.empty(1, 3, r, r))
    for h in hooks:
        h.remove()
    if inference:
        return int(largest * batch * INFERENCE_FACTOR)
    return int(total * batch * AUTOGRAD_FACTOR)


def supernet_parameters(proxy_space, arch=None) -> int:
    """Parameters of the supernet over `proxy_space` (every candidate), or of one architecture's network,
    counted on the meta device."""
    import torch

    from hnas.spec.network import Network
    from hnas.supernet import Supernet

    with torch.device("meta"):
        return sum(p.numel() for p in (Supernet(proxy_space) if arch is None else Network(arch)).parameters())


def data_bytes(data: str, resolution: int, per_class: int | None, batch: int, workers: int) -> int:
    """Bytes the data holds in memory: embedded and CIFAR sets as float32 tensors at `resolution`; ImageNet
    streams from disk (a few batches in flight per worker)."""
    from hnas.recipes import data_kind

    image = 3 * resolution * resolution * 4
    kind = data_kind(data)
    if kind == "embedded":
        n = EMBEDDED_IMAGES[data]
        if data == "mnist5k-translated":
            from hnas.data import TEST_VIEWS

            n += 1000 * TEST_VIEWS
    elif kind == "cifar10":
        n = CIFAR_IMAGES if per_class is None else min(CIFAR_IMAGES, 10 * (per_class + 500) + 10000)
    else:
        n = 2 * batch * max(1, workers) + batch
    return n * image


def footprint(
    proxy_space, data: str, batch: int, per_class: int | None = None, workers: int = 0, arch=None, inference=False
):
    """What training on `proxy_space` (or one architecture `arch` of it) with `data` at `batch` needs; with
    `inference`, what evaluating it needs (no gradients, no optimizer state)."""
    weights = (1 if inference else 3) * 4 * supernet_parameters(proxy_space, arch)
    return Footprint(
        activation_bytes(proxy_space, batch, arch, inference=inference),
        weights,
        data_bytes(data, proxy_space.skeleton.resolution, per_class, batch, workers),
    )


def available_bytes(device=None) -> int:
    """Free memory of `device`: the GPU's free memory on CUDA, else the host's (`host_available`)."""
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    return machine.host_available()


def require_fit(
    proxy_space,
    data: str,
    batch: int,
    per_class: int | None = None,
    workers: int = 0,
    device=None,
    arch=None,
    what: str = "training",
    inference: bool = False,
) -> Footprint:
    """Refuse, in one line naming settings that fit, a configuration whose estimate exceeds the memory
    available (90 % of it); returns the estimate otherwise. With `inference`: one-shot evaluation of a run whose
    settings are saved (the fix is a run at a smaller resolution)."""
    need = footprint(proxy_space, data, batch, per_class, workers, arch, inference)
    procs = int(os.environ.get("LOCAL_WORLD_SIZE", 1))  # torchrun's processes on this machine share its memory
    host = machine.host_available() * HEADROOM / procs
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        import torch

        where = f"free on {torch.cuda.get_device_name(device)}"
        budget, total = available_bytes(device) * HEADROOM, need.model  # the model on the GPU, the data on the host
        scaled = need.activations  # what shrinks with the resolution and batch on the GPU
        fixed = need.weights
        if need.data + need.runtime > host:
            budget, total, where = host, need.data + need.runtime, "available on this machine"
            scaled, fixed = need.data, need.runtime
    else:
        budget, total, where = host, need.host, "available on this machine"
        scaled, fixed = need.activations + need.data, need.weights + need.runtime
    if total <= budget:
        return need
    r = proxy_space.skeleton.resolution
    if inference:
        raise HnasError(
            f"one-shot evaluation at resolution {r} in batches of {batch} needs about {total / GB:.1f} GB "
            f"({need.describe()}) but {budget / HEADROOM / GB:.1f} GB are {where}: train a run at a smaller "
            "--resolution"
        )
    if procs > 1 and "machine" in where:
        where += f" for each of {procs} processes"
    room = budget - fixed
    options = []
    per_image = need.activations / batch
    batch_room = room - (scaled - need.activations)  # at this resolution only the activations follow the batch
    if batch_room >= per_image and scaled is not need.data:
        options.append(f"--batch-size {_round_down(int(batch_room // per_image))} or less at --resolution {r}")
    fits_res = int(r * math.sqrt(max(0.0, room) / scaled) // 8 * 8) if scaled else 0
    if fits_res >= 8:
        options.append(f"--resolution {fits_res} or less at --batch-size {batch}")
    advice = " or ".join(options) if options else "a smaller --resolution and --batch-size"
    raise HnasError(
        f"{what} at --resolution {r} --batch-size {batch} needs about {total / GB:.1f} GB ({need.describe()}) "
        f"but {budget / HEADROOM / GB:.1f} GB are {where}: use {advice} (options left out take --data's recipe)"
    )


def require_data_fit(data: str, resolution: int, per_class: int | None, batch: int, workers: int) -> None:
    """Refuse, in one line, loading `data` at `resolution` when its images alone would not fit this machine's
    memory (what loads a run's data checks this first: evaluating or verifying a run as much as training it)."""
    need = data_bytes(data, resolution, per_class, batch, workers) + RUNTIME_BYTES
    host = machine.host_available() * HEADROOM / int(os.environ.get("LOCAL_WORLD_SIZE", 1))
    if need <= host:
        return
    per_pixel = (need - RUNTIME_BYTES) / resolution**2
    fits = int(math.sqrt(max(0.0, host - RUNTIME_BYTES) / per_pixel) // 8 * 8) if per_pixel else 0
    advice = f"a run at --resolution {fits} or less" if fits >= 8 else "fewer images (--per-class)"
    raise HnasError(
        f"{data} at resolution {resolution} takes about {need / GB:.1f} GB but {host / HEADROOM / GB:.1f} GB are "
        f"available on this machine: use {advice}"
    )


def _round_down(n: int) -> int:
    """The largest power of two <= n (batches people choose)."""
    return 1 << (max(1, n).bit_length() - 1)
