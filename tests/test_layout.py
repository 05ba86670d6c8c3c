"""The architecture rules that keep the two halves apart, checked on the source itself."""

import ast
from pathlib import Path

import numpy as np
import torch

from tests.harness import ROOT
from tests.tiny import tiny_space


def _imports(path: Path) -> set[str]:
    """Every module a file imports (at any depth: top level or inside functions)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_search_engine_never_imports_the_latency_toolkit():
    core = [p for p in (ROOT / "hnas").rglob("*.py") if p.parent.name not in ("cli", "workflows")]
    assert len(core) > 20
    offenders = {
        p.relative_to(ROOT).as_posix(): sorted(m for m in _imports(p) if m.split(".")[0] == "latency") for p in core
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_spec_imports_only_the_spec():
    for p in (ROOT / "hnas" / "spec").glob("*.py"):
        ours = {m for m in _imports(p) if m.split(".")[0] in ("hnas", "latency")}
        shared = {"hnas.errors", "hnas.io", "hnas.schema"}  # dependency-free helpers every layer may use
        assert ours <= shared | {m for m in ours if m.startswith("hnas.spec")}, p.name


def test_only_the_command_layer_uses_typer():
    files = [p for d in ("hnas", "latency", "benchmarks") for p in (ROOT / d).rglob("*.py")]
    users = {p.relative_to(ROOT).as_posix() for p in files if "typer" in _imports(p)}
    assert users and all(u.startswith("hnas/cli/") or u.startswith("hnas/settings.py") for u in users), users


def test_export_leaves_the_global_rng_and_the_working_directory_alone(tmp_path):
    import os

    from hnas.spec.arch import sample
    from latency.export import Exporter, export_network
    from latency.items import items_for_space
    from latency.runtime import load_interpreter

    fresh = Exporter(tmp_path / "cache")
    torch.manual_seed(1234)
    state, cwd = torch.get_rng_state(), os.getcwd()
    part = items_for_space(tiny_space())[1]
    first = fresh.export_part(part)  # converted: onnx2tf runs
    net = export_network(sample(tiny_space(), 1, np.random.default_rng(0))[0], fresh)
    assert not first.cached and not net.cached
    assert torch.equal(torch.get_rng_state(), state) and os.getcwd() == cwd
    # the canonical weights do not depend on the global RNG: the part converts to the same function again
    torch.manual_seed(99)
    again = Exporter(tmp_path / "other").export_part(part)
    x = np.random.default_rng(0).standard_normal((1, 16, 16, 8)).astype(np.float32)
    outs = []
    for model in (first, again):
        interp = load_interpreter(model.path)
        interp.set_tensor(interp.get_input_details()[0]["index"], x)
        interp.invoke()
        outs.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
    np.testing.assert_array_equal(outs[0], outs[1])


def test_the_command_line_starts_without_the_heavy_libraries():
    import subprocess
    import sys

    heavy = "('torch', 'tensorflow', 'onnx2tf', 'pymoo')"
    code = f"import sys, hnas.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"  # `hnas --help` answers at once (benchmarks/bench_cli.py times it)
