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
