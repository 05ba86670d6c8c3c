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


def _module(path: Path) -> str:
    """`hnas.core.io` for hnas/core/io.py, `hnas.core` for hnas/core/__init__.py."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _ours(path: Path) -> set[str]:
    """The hnas and latency modules a file imports."""
    return {m for m in _imports(path) if m.split(".")[0] in ("hnas", "latency")}


def test_the_search_engine_never_imports_the_latency_toolkit():
    core = [p for p in (ROOT / "hnas").rglob("*.py") if p.parent.name not in ("cli", "workflows")]
    assert len(core) > 20
    offenders = {
        p.relative_to(ROOT).as_posix(): sorted(m for m in _imports(p) if m.split(".")[0] == "latency") for p in core
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_core_imports_nothing_above_it():
    """hnas/core is the base both halves stand on: no torch, no tensorflow, no latency toolkit, no higher hnas."""
    files = list((ROOT / "hnas" / "core").glob("*.py"))
    assert len(files) > 6
    heavy = ("torch", "tensorflow", "onnx", "onnx2tf", "latency")
    offenders = {
        p.name: sorted(
            m
            for m in _imports(p)
            if m.split(".")[0] in heavy or (m.startswith("hnas") and not m.startswith("hnas.core"))
        )
        for p in files
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_spec_imports_only_the_spec_and_the_core():
    for p in (ROOT / "hnas" / "spec").glob("*.py"):
        assert all(m.startswith(("hnas.spec", "hnas.core")) for m in _ours(p)), p.name


def test_the_latency_toolkit_stands_on_the_core_and_the_spec_only():
    offenders = {
        p.name: sorted(
            m for m in _ours(p) if m.split(".")[0] == "hnas" and not m.startswith(("hnas.core", "hnas.spec"))
        )
        for p in (ROOT / "latency").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_no_import_cycles():
    """The import graph of hnas and latency (imports at any depth, lazy ones too) has no cycle."""
    files = {_module(p): p for d in ("hnas", "latency") for p in (ROOT / d).rglob("*.py")}
    graph = {}
    for name, path in files.items():
        targets = set()
        for m in _ours(path):
            while m and m not in files:
                m = m.rpartition(".")[0]
            if m and m != name and not name.startswith(m + "."):  # a package's own __init__ is no edge
                targets.add(m)
        graph[name] = targets
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, [*path, nxt])
                if found:
                    return found
        state[node] = 2
        return None

    cycles = [c for n in sorted(graph) if n not in state for c in [visit(n, [n])] if c]
    assert cycles == []


def test_the_spec_data_loads_without_torch():
    """`hnas space show` reads spaces, parts and costs: none of that needs torch."""
    import subprocess
    import sys

    code = "import sys, hnas.spec.space, hnas.spec.cost, hnas.core.schema; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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
