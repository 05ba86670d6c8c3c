"""The TFLite runtime used on the host: ai-edge-litert's interpreter (XNNPACK on by default)."""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path


def runtime_version() -> str:
    """`ai-edge-litert X.Y.Z` (the TFLite runtime that measures on the host)."""
    return f"ai-edge-litert {metadata.version('ai-edge-litert')}"


def load_interpreter(path: str | Path, num_threads: int = 1, use_xnnpack: bool = True):
    """An allocated interpreter for a .tflite file."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interp = Interpreter(model_path=str(path), num_threads=num_threads, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    return interp


def fully_delegated(interp) -> bool:
    """True when one delegate node (XNNPACK's) runs the whole graph: it reads every graph input and writes the
    graph's outputs, so no builtin kernel runs beside it."""
    nodes = [d for d in interp._get_ops_details() if d["op_name"] == "DELEGATE"]  # noqa: SLF001 - the only listing
    if len(nodes) != 1:
        return False
    ins = {int(d["index"]) for d in interp.get_input_details()}
    outs = {int(d["index"]) for d in interp.get_output_details()}
    return ins <= {int(t) for t in nodes[0]["inputs"]} and {int(t) for t in nodes[0]["outputs"]} == outs


def random_inputs(interp, seed: int = 0) -> dict:
    """Random values for every input of an interpreter: standard normal for float inputs, uniform over the whole
    range for integer (quantized) ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for d in interp.get_input_details():
        if np.issubdtype(d["dtype"], np.integer):
            info = np.iinfo(d["dtype"])
            feeds[d["index"]] = rng.integers(info.min, info.max, size=d["shape"], endpoint=True, dtype=d["dtype"])
        else:
            feeds[d["index"]] = rng.standard_normal(d["shape"]).astype(d["dtype"])
    return feeds
