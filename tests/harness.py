"""Helpers the test modules share (fixtures live in conftest.py): the command line as a user runs it, the one
kill-and-resume harness, a counting host device, table-driven search objectives, and small file makers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hnas.spec.ops import OpSpec
from hnas.spec.space import SearchSpace, Skeleton, StageSpec
from latency.bench import BenchSettings
from latency.build import BuildOptions
from latency.devices import LocalDevice
from latency.stability import Stability

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "reference"
# converted models are cached across test runs (content-addressed, so never stale)
TEST_CACHE = ROOT / ".cache" / "tflite-tests"

HNAS = (sys.executable, "-m", "hnas.cli")
TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "hnas.cli")


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run `hnas ARGS...` in a fresh interpreter, as a user would (`env` adds variables)."""
    return subprocess.run(
        [*HNAS, *args],
        capture_output=True,
        text=True,
        cwd=cwd or ROOT,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the command itself (as a crash would); the processes it started must notice on their own."""
    proc.send_signal(signal.SIGKILL)


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the command and every process below it (torchrun's workers run in sessions of their own), as a
    pulled plug would."""
    import psutil

    for p in [*psutil.Process(proc.pid).children(recursive=True), psutil.Process(proc.pid)]:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass


@dataclass
class Resumed:
    """A command interrupted partway and run again: both runs, and the bytes of the files noted after the kill."""

    killed: subprocess.CompletedProcess
    noted: dict[Path, bytes]
    again: subprocess.CompletedProcess


def snapshot(paths: Iterable[Path]) -> dict[Path, bytes]:
    """The bytes of each file, by path."""
    return {Path(p): Path(p).read_bytes() for p in paths}


def kill_and_resume(
    args: list[str],
    ready: Callable[[], bool],
    unfinished: Callable[[], bool],
    *,
    keep: Callable[[], Iterable[Path]] = tuple,
    note: Callable[[], Iterable[Path]] = tuple,
    settle: Callable[[subprocess.CompletedProcess], None] | None = None,
    interrupt: Callable[[subprocess.Popen], None] = kill,
    rerun: Callable[[subprocess.CompletedProcess], list[str]] | None = None,
    launcher: tuple[str, ...] = HNAS,
    env: dict | None = None,
    timeout: float = 600,
) -> Resumed:
    """Start `launcher ARGS` (`hnas ARGS` by default), `interrupt` it the moment `ready()` is true (SIGKILL by
    default), check that it got there and that `unfinished()` is true (it was caught midway), call `settle(killed)`,
    note the bytes of the files `keep()` and `note()` name, run it again to exit 0 (`rerun(killed)` gives other
    arguments) and check that it left the files `keep()` named as they were."""
    env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*launcher, *args], cwd=ROOT, stdout=out, stderr=err, text=True, env=env)
        deadline = time.time() + timeout
        while time.time() < deadline and proc.poll() is None and not ready():
            time.sleep(0.02)
        reached = ready()
        interrupt(proc)
        proc.wait(timeout=timeout)
        out.seek(0), err.seek(0)
        killed = subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read())
    assert reached, f"never got to the point of the kill: {killed.stderr}"
    assert unfinished(), "the run finished before it could be killed; give it more work"
    if settle is not None:
        settle(killed)
    kept = snapshot(keep())
    noted = {**snapshot(note()), **kept}
    again_args = args if rerun is None else rerun(killed)
    again = subprocess.run(
        [*launcher, *again_args], capture_output=True, text=True, cwd=ROOT, timeout=max(timeout, 600), env=env
    )
    assert again.returncode == 0, again.stderr
    for path, data in kept.items():
        assert path.read_bytes() == data, f"{path} changed on resume"
    return Resumed(killed, noted, again)


FAST = BuildOptions(
    settings=BenchSettings(warmup_runs=1, num_runs=3), repeats=2, stability=Stability(extra=1, pause_s=0)
)


class CountingDevice(LocalDevice):
    """The host, counting benchmark runs; optionally interrupted after `stop_after` results."""

    def __init__(self, stop_after=None):
        super().__init__(core=0)
        self.runs, self.stop_after = [], stop_after

    def benchmark_batch(self, models, settings):
        for out in super().benchmark_batch(models, settings):
            if self.stop_after is not None and len(self.runs) >= self.stop_after:
                raise KeyboardInterrupt
            self.runs.append(out.model)
            yield out


def enumerable_space() -> SearchSpace:
    """A space small enough to enumerate every architecture of."""
    sk = Skeleton(
        stages=(StageSpec(8, 1, 1, expand=1), StageSpec(16, 3, 2), StageSpec(24, 2, 2)),
        stem_channels=8,
        head_channels=32,
        resolution=32,
        num_classes=10,
    )
    return SearchSpace.from_ops("enum", sk, [OpSpec(3, 3), OpSpec(5, 6), OpSpec(7, 3), OpSpec()])


class Table:
    """Table-driven accuracy and latency: known figures per (layer, op), summed."""

    def __init__(self, space, seed=0):
        rng = np.random.default_rng(seed)
        w = max(len(c) for c in space.candidates)
        self.acc = rng.random((space.num_layers, w))
        self.lat = rng.random((space.num_layers, w)) * 3
        self.rows = np.arange(space.num_layers)
        self.calls = 0

    def accuracy(self, archs):
        self.calls += len(archs)
        return np.array([self.acc[self.rows, a.to_vector()].sum() for a in archs])

    def latency(self, vecs):
        return self.lat[self.rows, np.atleast_2d(vecs)].sum(1)


class BandedTable(Table):
    """A table whose latency is additive and says so (`distribution`): searches draw inside the band exactly."""

    def __init__(self, space, seed=0):
        super().__init__(space, seed)
        self.space = space

    def predict(self, vecs):
        return self.latency(vecs)

    def distribution(self):
        from hnas.core.additive import AdditiveLatency, LatencyDistribution

        rows = tuple(self.lat[j, : len(c)].copy() for j, c in enumerate(self.space.candidates))
        return LatencyDistribution(AdditiveLatency(rows, 0.0))


# the kernels an int8 network of the space holds (no QUANTIZE / DEQUANTIZE: int8 in and out)
INT8_KERNELS = {"CONV_2D", "DEPTHWISE_CONV_2D", "ADD", "MEAN", "FULLY_CONNECTED", "PAD"}

IMAGENET_CLASSES = ("n01", "n02", "n03")


def make_imagenet_folder(root: Path, train: int = 6, val: int = 2, seed: int = 0) -> Path:
    """ImageNet layout of small random JPEGs (3 classes, 20-27 px)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("val", val)):
        for c in IMAGENET_CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                arr = rng.integers(0, 256, (20 + i, 24 + i % 3, 3), dtype=np.uint8)
                Image.fromarray(arr).save(root / split / c / f"{i}.JPEG", quality=90)
    return root


def tflite_graph(flatbuffer: bytes):
    """A TFLite graph without TensorFlow's generated tensor names: ops with options, tensors, weights, I/O."""
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    m = fbu.convert_bytearray_to_object(bytearray(flatbuffer))
    (sg,) = m.subgraphs
    ops = [
        (fbu.opcode_to_name(m, o.opcodeIndex), list(o.inputs), list(o.outputs), repr(vars(o.builtinOptions or 0)))
        for o in sg.operators
    ]
    tensors = [(list(t.shape), t.type, t.buffer) for t in sg.tensors]
    weights = [None if b.data is None else np.asarray(b.data, dtype=np.uint8).tobytes() for b in m.buffers]
    return ops, tensors, weights, list(sg.inputs), list(sg.outputs)


def adb_device(phone, binary, **kw):
    """An AdbDevice on the loopback phone, with short timeouts, retries and cool-down."""
    from latency.adb import AdbDevice

    return AdbDevice(
        phone.serial,
        benchmark_binary=binary,
        key_path=phone.adbkey,
        timeout_s=3,
        backoff_s=0.1,
        retries=3,
        cooldown_s=0.2,
        **kw,
    )
