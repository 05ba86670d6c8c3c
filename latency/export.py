"""Export the search space's own torch modules to TFLite (torch -> ONNX -> onnx2tf), float32 or int8, with a cache.

The module of an op at a shape comes from `hnas.spec.ops.build_op` / `FixedPart.build`, a whole network from
`hnas.spec.network.build_network`: the very classes the supernet trains. Each module is wrapped so that it takes
and returns NHWC tensors, which lets onnx2tf produce a graph with no TRANSPOSE op (what a phone really runs).

The cache is content-addressed: the key hashes the module's structure (`repr`), its input shape and the
versions of torch, onnx, onnx2tf and TensorFlow, so nothing is converted twice and a tool upgrade re-exports.
TensorFlow (through onnx2tf) is imported once per process, on the first conversion.

An int8 export (`precision="int8"`, `latency.quantize`) converts the module once with onnx2tf and writes both
flatbuffers from that Keras model: the float32 one (under its own, unchanged key) and the full-integer one, whose
key adds the precision and the calibration recipe.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import io
import json
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hnas.core import host as machine
from hnas.core.errors import HnasError
from hnas.core.host import GB, HEADROOM
from hnas.core.io import atomic_write_bytes, sha256_file
from hnas.core.precision import FLOAT32, Precision

EXPORT_FORMAT = 2  # bump when the export recipe changes (2: eval-mode copy, never the caller's module)


EXPORT_FACTOR = 4  # torch, ONNX and TFLite each hold a copy of a part's weights and maps while it is converted


def require_parts_fit(parts, what: str) -> None:
    """Refuse, in one line naming the largest, parts whose export (build, trace, convert at one image) would not fit
    this machine's memory: EXPORT_FACTOR times their weights and module outputs, counted on the meta device."""

    def need(part) -> int:
        outputs = 0

        def count(_module, _inputs, output):
            nonlocal outputs
            outputs += output.numel() * 4

        with torch.device("meta"):
            module = part.build().eval()
            hooks = [m.register_forward_hook(count) for m in module.modules() if not list(m.children())]
            module(torch.empty(1, *part.input_shape))
        for h in hooks:
            h.remove()
        return EXPORT_FACTOR * (outputs + 4 * sum(p.numel() for p in module.parameters()))

    if not parts:
        return
    largest = max(parts, key=need)
    biggest, host = need(largest), machine.host_available() * HEADROOM
    if biggest > host:
        raise HnasError(
            f"{what}: exporting {largest.key} needs about {biggest / GB:.1f} GB but {host / HEADROOM / GB:.1f} GB are "
            "available on this machine: use smaller shapes (resolution, channels)"
        )


def default_cache_dir() -> Path:
    """`$HNAS_CACHE` or `~/.cache/hnas/tflite`."""
    env = os.environ.get("HNAS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hnas" / "tflite"


def tool_versions() -> dict[str, str]:
    """Versions of the tools that shape the exported graph."""
    out = {}
    for dist in ("torch", "onnx", "onnx2tf", "tensorflow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


class NHWC(nn.Module):
    """Wraps a module so it takes and returns channels-last tensors."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.inner(x.permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1) if y.dim() == 4 else y


@dataclass(frozen=True)
class Exported:
    """A converted model in the cache."""

    path: Path
    sha256: str
    cache_key: str
    cached: bool
    export_s: float = 0.0
    convert_s: float = 0.0
    precision: str = FLOAT32
    onnx: Path | None = None  # the ONNX file the conversion passed through, when it was kept (`keep_onnx`)


def cache_key(
    module: nn.Module,
    input_shape: tuple[int, int, int],
    label: str = "",
    precision: str = FLOAT32,
    calibration: dict | None = None,
    io: str = "int8",
) -> str:
    """Content address of an export: module structure, NCHW input shape (C, H, W), tool versions; for any
    precision but float32 (whose keys stay those of every table written before) also the precision and the
    calibration's identity, and float input and output (`io="float"`) when an int8 model has them."""
    payload = {
        "format": EXPORT_FORMAT,
        "module": repr(module),
        "input": list(input_shape),
        "tools": tool_versions(),
        "label": label,
    }
    if precision != FLOAT32:
        payload["quantization"] = {"precision": precision, "calibration": calibration}
        if io != "int8":
            payload["quantization"]["io"] = io
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


class Exporter:
    """Converts modules to TFLite once and keeps them in a content-addressed cache."""

    def __init__(self, cache_dir: str | Path | None = None):
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._onnx2tf = None

    def path_for(self, key: str) -> Path:
        """Where the model with this cache key lives."""
        return self.cache_dir / key[:2] / f"{key}.tflite"

    def export(
        self,
        module: nn.Module,
        input_shape: tuple[int, int, int],
        label: str = "",
        precision: str = FLOAT32,
        calibration=None,
        io: str = "int8",
        keep_onnx: bool = False,
    ) -> Exported:
        """The NHWC TFLite model of `module` for a (C, H, W) input at `precision` (float32, or int8 calibrated
        with `calibration`, default `CalibrationRecipe()`, with int8 or float input and output: `io`); converted
        only if not cached. An int8 conversion also caches the float32 model of the same conversion. With
        `keep_onnx` the ONNX file the conversion passed through is cached beside the model (`Exported.onnx`)."""
        key, calibration = self._key(module, input_shape, label, precision, calibration, io)
        path = self.path_for(key)
        onnx_kept = path.with_suffix(".onnx") if keep_onnx else None
        if path.is_file() and (onnx_kept is None or onnx_kept.is_file()):
            return Exported(path, sha256_file(path), key, cached=True, precision=precision, onnx=onnx_kept)
        import time

        # export a copy in eval mode: the exporter must neither see training-mode BatchNorm nor touch the
        # caller's module (the legacy exporter restores the wrapper's mode, which would flip it to training)
        wrapper = NHWC(copy.deepcopy(module)).eval()
        c, h, w = input_shape
        with tempfile.TemporaryDirectory(prefix="hnas-export-") as tmp:
            tmp = Path(tmp)
            t0 = time.perf_counter()
            onnx_path = tmp / "model.onnx"
            with torch.no_grad(), _quiet(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter: 30x faster here
                torch.onnx.export(
                    wrapper,
                    (torch.randn(1, h, w, c, generator=torch.Generator().manual_seed(0)),),
                    str(onnx_path),
                    input_names=["input"],
                    output_names=["output"],
                    opset_version=13,
                    dynamo=False,
                )
            t1 = time.perf_counter()
            if precision == FLOAT32:
                atomic_write_bytes(path, self._convert(onnx_path, tmp).read_bytes())
            else:
                from latency.quantize import int8_tflite

                model = self._keras(onnx_path, tmp)
                float_path = self.path_for(cache_key(module, input_shape, label))
                if not float_path.is_file():
                    atomic_write_bytes(float_path, _tflite(float32_tflite, model, onnx_path))
                samples = calibration.samples(input_shape)
                atomic_write_bytes(path, _tflite(lambda m: int8_tflite(m, samples, io), model, onnx_path, precision))
            if onnx_kept is not None:
                atomic_write_bytes(onnx_kept, onnx_path.read_bytes())
            t2 = time.perf_counter()
        return Exported(
            path,
            sha256_file(path),
            key,
            cached=False,
            export_s=t1 - t0,
            convert_s=t2 - t1,
            precision=precision,
            onnx=onnx_kept,
        )

    @staticmethod
    def _key(module, input_shape, label, precision, calibration, io):
        """(the cache key of an export, the calibration it uses: `CalibrationRecipe()` when int8 and none given)."""
        Precision.parse(precision)
        if precision == FLOAT32:
            return cache_key(module, input_shape, label), calibration
        from latency.quantize import CalibrationRecipe, check_io

        check_io(io)
        calibration = calibration or CalibrationRecipe()
        return cache_key(module, input_shape, label, precision, calibration.identity(), io), calibration

    def _convert(self, onnx_path: Path, workdir: Path) -> Path:
        """The float32 .tflite of an ONNX file (in `workdir`)."""
        flat = _tflite(float32_tflite, self._keras(onnx_path, workdir), onnx_path)
        out = workdir / "tf" / "model_float32.tflite"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(flat)
        return out

    def _keras(self, onnx_path: Path, workdir: Path):
        """The Keras model onnx2tf builds from an ONNX file (nothing written but its scratch files in `workdir`)."""
        if self._onnx2tf is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
            with _quiet():
                import onnx2tf  # imports TensorFlow: once per process
                import onnx2tf.onnx2tf as core
            # onnx2tf fetches 20 sample images from the internet for a dummy inference when every input is 4-D
            # with 3 channels; it asks `download_test_image_data`, which this replaces with local random images
            # (the values only feed onnx2tf's own output check), so conversion stays offline
            core.download_test_image_data = _sample_images
            self._onnx2tf = onnx2tf
        # Keras names layers from counters that live as long as the process, and the names go into the .tflite:
        # without a fresh session the same part converts to different bytes after other conversions
        import tf_keras

        tf_keras.backend.clear_session()
        try:
            with _quiet():
                return self._onnx2tf.convert(
                    input_onnx_file_path=str(onnx_path),
                    output_folder_path=str(workdir / "tf"),
                    non_verbose=True,
                    keep_nwc_or_nhwc_or_ndhwc_input_names=["input"],
                    not_use_onnxsim=True,
                    disable_model_save=True,
                )
        except Exception as exc:  # noqa: BLE001 - conversion failures are reported with their cause
            raise HnasError(f"onnx2tf could not convert {onnx_path.name}: {exc}") from exc

    def key(self, *args, **kwargs) -> str:
        """The cache key `export(*args, **kwargs)` has, without converting anything (its defaults are `export`'s)."""
        bound = inspect.signature(self.export).bind(*args, **kwargs)
        bound.apply_defaults()
        a = bound.arguments
        return self._key(a["module"], a["input_shape"], a["label"], a["precision"], a["calibration"], a["io"])[0]

    @staticmethod
    def _part_call(part) -> tuple[tuple, dict]:
        """The arguments of `export` for a part of the spec: its canonical weights (`canonical`, seed 0), its input
        shape, its precision."""
        from hnas.spec.modules import canonical

        return (canonical(part.build), part.input_shape), {"precision": part.precision}

    def export_part(self, part) -> Exported:
        """A part of the spec at its precision: what a LUT entry measures."""
        args, kwargs = self._part_call(part)
        return self.export(*args, **kwargs)

    def part_key(self, part) -> str:
        """The cache key `export_part(part)` has, without converting anything."""
        args, kwargs = self._part_call(part)
        return self.key(*args, **kwargs)

    def export_pair(
        self,
        module: nn.Module,
        input_shape: tuple[int, int, int],
        label: str,
        calibration,
        io: str = "int8",
        keep_onnx: bool = False,
    ) -> tuple[Exported, Exported]:
        """The float32 and the int8 model of `module` (int8 or float input and output: `io`), both from one onnx2tf
        conversion; with `keep_onnx` the int8 model's `onnx` is the ONNX file that conversion passed through."""
        from hnas.core.precision import INT8

        int8 = self.export(module, input_shape, label, INT8, calibration, io, keep_onnx)
        return self.export(module, input_shape, label), int8

    def clear(self) -> None:
        """Remove every cached model."""
        shutil.rmtree(self.cache_dir, ignore_errors=True)


def _sample_images() -> np.ndarray:
    """What onnx2tf would download: 20 RGB images of 128 x 128 in [0, 1] (here seeded random values)."""
    return np.random.default_rng(0).random((20, 128, 128, 3), dtype=np.float32)


def _tflite(convert, model, onnx_path: Path, precision: str = FLOAT32) -> bytes:
    """`convert(model)` with the converters silenced; a failure is a one-line error naming the model."""
    try:
        with _quiet():
            return convert(model)
    except Exception as exc:  # noqa: BLE001 - conversion failures are reported with their cause
        raise HnasError(f"TFLite could not convert {onnx_path.name} to {precision}: {exc}") from exc


def float32_tflite(model) -> bytes:
    """The float32 TFLite flatbuffer of the Keras model onnx2tf built, converted exactly as onnx2tf converts its
    `*_float32.tflite` (a concrete function over the model's inputs; TFLite builtins, then select TF ops).

    `onnx2tf.convert` would also write a SavedModel and convert a second, float16 model: 90 % of its time on a
    whole network (20 s against 1.6 s here). Only the float32 model is measured, so `_convert` asks onnx2tf for
    the Keras model alone (`disable_model_save`) and converts it here; a test checks that the graph is the one
    onnx2tf writes (same ops, options, tensors and weights; only TensorFlow's generated tensor names differ).
    """
    import tensorflow as tf

    run_model = tf.function(
        func=lambda *inputs: model(inputs),
        input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs],
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([run_model.get_concrete_function()])
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    converter.unfold_batchmatmul = False
    return converter.convert()


@contextlib.contextmanager
def _quiet():
    """Silence the converters: Python-level prints and the C++ logging TensorFlow writes to fds 1 and 2."""
    buf = io.StringIO()
    saved = []
    try:
        for fd in (1, 2):
            try:
                sys.stdout.flush() if fd == 1 else sys.stderr.flush()
                saved.append((fd, os.dup(fd)))
            except (OSError, ValueError):
                continue
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd, _ in saved:
            os.dup2(devnull, fd)
        os.close(devnull)
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            yield
    finally:
        for fd, copy_fd in saved:
            os.dup2(copy_fd, fd)
            os.close(copy_fd)


def tflite_ops(path: str | Path) -> list[str]:
    """Builtin op names of a TFLite graph in execution order (e.g. CONV_2D, DEPTHWISE_CONV_2D, ADD)."""
    from latency.runtime import load_interpreter

    interp = load_interpreter(path, num_threads=1, use_xnnpack=False)  # undelegated: the graph's own ops
    return [d["op_name"] for d in interp._get_ops_details()]  # noqa: SLF001 - the only op listing API


def tflite_io(path: str | Path) -> tuple[list[int], list[int]]:
    """Shapes of the single input and output of a TFLite graph."""
    from latency.runtime import load_interpreter

    interp = load_interpreter(path, num_threads=1)
    return list(interp.get_input_details()[0]["shape"]), list(interp.get_output_details()[0]["shape"])


def export_network(arch, exporter: Exporter | None = None, precision: str = FLOAT32) -> Exported:
    """The whole stand-alone network of `arch` (stem, blocks, head) at its deployment resolution, canonical
    weights, at `precision` (int8: calibrated as the LUT entries are, `CalibrationRecipe()`)."""
    from hnas.spec.modules import canonical
    from hnas.spec.network import build_network

    sk = arch.space.skeleton
    net = canonical(lambda: build_network(arch))
    return (exporter or Exporter()).export(net, (sk.in_channels, sk.resolution, sk.resolution), precision=precision)
