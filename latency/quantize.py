"""Full-integer (int8) post-training quantization of the Keras model onnx2tf builds, and running int8 models.

The recipe is TensorFlow Lite's post-training full-integer quantization, applied to the same Keras model the
float32 flatbuffer is converted from (`latency.export`: one onnx2tf conversion gives both): weights int8 per
output channel, activations int8 with ranges from calibration samples at the model's own input shape, only
`TFLITE_BUILTINS_INT8` kernels (a conversion that would leave a float kernel fails instead), and int8 input and
output (no QUANTIZE / DEQUANTIZE at the ends), so that a network's graph is exactly its parts' graphs in order
and its LUT entries add up to it.

Calibration is deterministic: `CalibrationRecipe` draws seeded standard-normal samples (latency-only parts with
canonical weights); `ImageCalibration` holds real images (a network with trained weights). Either one's
`identity()` goes into the export's cache key.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hnas.core.errors import HnasError
from hnas.core.precision import FLOAT32, INT8


@dataclass(frozen=True)
class CalibrationRecipe:
    """Seeded standard-normal calibration samples at the model's own input shape: what an int8 LUT entry (and a
    whole network measured for latency, canonical weights) is calibrated with."""

    count: int = 16
    seed: int = 0
    distribution: str = "normal"

    def __post_init__(self):
        if self.count < 1:
            raise HnasError(f"calibration count {self.count}: use at least 1 sample")
        if self.distribution != "normal":
            raise HnasError(f"calibration distribution {self.distribution!r}: only 'normal' is drawn at random")

    def identity(self) -> dict:
        """What the samples depend on (part of the export's cache key)."""
        return {**asdict(self), "numpy": np.__version__}

    def samples(self, input_shape: tuple[int, int, int]) -> np.ndarray:
        """`count` NHWC float32 samples for a (C, H, W) input."""
        c, h, w = input_shape
        return np.random.default_rng(self.seed).standard_normal((self.count, h, w, c), dtype=np.float32)


@dataclass(frozen=True)
class ImageCalibration:
    """Real images (NHWC float32, normalized as the network sees them) as calibration samples: a network with
    trained weights. `source` says where they came from; their sha256 goes into the cache key."""

    images: np.ndarray = field(repr=False)
    source: str = ""

    def identity(self) -> dict:
        digest = hashlib.sha256(np.ascontiguousarray(self.images, dtype=np.float32).tobytes()).hexdigest()
        return {"distribution": "images", "source": self.source, "count": len(self.images), "sha256": digest[:24]}

    def samples(self, input_shape: tuple[int, int, int]) -> np.ndarray:
        c, h, w = input_shape
        if self.images.ndim != 4 or tuple(self.images.shape[1:]) != (h, w, c):
            raise HnasError(f"calibration images of shape {self.images.shape[1:]} for a {h}x{w}x{c} input")
        return self.images.astype(np.float32)


IO_TYPES = ("int8", "float")  # an int8 model's input and output: int8 (what a LUT measures) or float


def check_io(io: str) -> str:
    """`io` when it is one of `IO_TYPES`, else one line."""
    if io not in IO_TYPES:
        raise HnasError(f"--io {io}: must be one of {', '.join(IO_TYPES)}")
    return io


def int8_tflite(model, samples: np.ndarray, io: str = "int8") -> bytes:
    """The full-integer int8 TFLite flatbuffer of the Keras model onnx2tf built, converted as `float32_tflite`
    converts it (a concrete function over the model's inputs), calibrated on `samples` (NHWC float32); with
    `io="float"` it takes float input and gives float output (one QUANTIZE and one DEQUANTIZE at the ends)."""
    import tensorflow as tf

    run_model = tf.function(
        func=lambda *inputs: model(inputs),
        input_signature=[tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs],
    )
    converter = tf.lite.TFLiteConverter.from_concrete_functions([run_model.get_concrete_function()])
    converter.optimizations = [tf.lite.Optimize.DEFAULT]

    def representative():
        for x in samples:
            yield [x[None].astype(np.float32)]

    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if check_io(io) == "int8":
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    converter.unfold_batchmatmul = False
    return converter.convert()


# --------------------------------------------------------------------------------------------- inspecting


def op_tensor_types(path: str | Path) -> list[tuple[str, list[str], list[str]]]:
    """(op, dtypes of its inputs, dtypes of its outputs) per op of a TFLite graph, in execution order; weights and
    biases are inputs too (`int8` weights, `int32` biases of a quantized convolution)."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils as fbu

    names = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = fbu.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
    (sg,) = model.subgraphs
    out = []
    for op in sg.operators:
        ins = [names[sg.tensors[t].type] for t in op.inputs if t >= 0]
        outs = [names[sg.tensors[t].type] for t in op.outputs]
        out.append((fbu.opcode_to_name(model, op.opcodeIndex), ins, outs))
    return out


def precision_of(path: str | Path) -> str:
    """`int8` when a TFLite graph's input is int8, else `float32`."""
    from latency.runtime import load_interpreter

    dtype = load_interpreter(path, use_xnnpack=False).get_input_details()[0]["dtype"]
    return INT8 if dtype == np.int8 else FLOAT32


# --------------------------------------------------------------------------------------------- running


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float values as the input tensor of `detail` holds them (int8: x / scale + zero point, rounded, clipped)."""
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def dequantize(y: np.ndarray, detail: dict) -> np.ndarray:
    """The float values an output tensor of `detail` stands for."""
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


class TfliteModel:
    """A one-input TFLite model run on batches of NHWC float images: inputs quantized and outputs dequantized when
    the model is int8, the interpreter resized to each batch size."""

    def __init__(self, path: str | Path):
        from latency.runtime import load_interpreter

        self.interp = load_interpreter(path)
        self._size = None

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """The model's (float) outputs for a batch of NHWC float images."""
        interp = self.interp
        if len(images) != self._size:
            self._size = len(images)
            inp = interp.get_input_details()[0]
            interp.resize_tensor_input(inp["index"], [self._size, *inp["shape"][1:]])
            interp.allocate_tensors()
        inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
        interp.set_tensor(inp["index"], quantize(images, inp))
        interp.invoke()
        return dequantize(interp.get_tensor(out["index"]), out)
