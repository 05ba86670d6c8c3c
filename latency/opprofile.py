"""Op profiling for the host runner, which has no profiler: the network's ops run one by one, in order.

TFLite's `benchmark_model --enable_op_profiling=true` times every node inside `Invoke()`. The Python runtime on
the host exposes no profiler, so the host runner profiles differently but from the same file: every operator of
the graph is cut out into its own single-op model (same tensors, same weights, same op options), each one gets
its own interpreter with the runner's settings (XNNPACK, threads), and one profiled run executes them in the
graph's execution order, copying each op's outputs into the inputs of the ops that read them. Only `invoke()` is
timed, so a row is the op's own time with its weights as cold or warm as the ops before it left them. The chain
reproduces the network's output exactly (tested).

An explicit PAD read only by the next convolution runs in one graph with it (XNNPACK folds it into the
convolution's padding, so it has no row, as in a phone's XNNPACK profile; the row's name says `(+PAD fused)`).
What remains different from a real in-graph profile: every row carries one interpreter invocation, and each op
starts with its weights as the ops before it left the caches.

Prefix differencing (time ops[:k] and ops[:k-1], subtract) was tried first and rejected: on this VM its per-op
noise was larger than most ops, and cutting a graph between a PAD and its convolution changes what XNNPACK
fuses.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PROFILE_MARK = "Operator-wise Profiling Info for Regular Benchmark Runs:"


@dataclass
class _Step:
    interp: object
    inputs: list[tuple[int, int]]  # (interpreter input index, graph tensor)
    outputs: list[tuple[int, int]]  # (interpreter output index, graph tensor)


_PAD_CONSUMERS = {"CONV_2D", "DEPTHWISE_CONV_2D"}


def _segments(ops, names: list[str], graph_outputs: list[int], fuse_pad: bool) -> list[list[int]]:
    """Op indices grouped as they run: alone, or an explicit PAD together with the convolution that alone reads
    it (XNNPACK folds such a PAD into the convolution's padding)."""
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for t in op.inputs:
            readers.setdefault(int(t), []).append(i)
    out, i = [], 0
    while i < len(ops):
        pad_out = [int(t) for t in ops[i].outputs]
        if (
            fuse_pad
            and names[i] == "PAD"
            and i + 1 < len(ops)
            and names[i + 1] in _PAD_CONSUMERS
            and all(readers.get(t) == [i + 1] and t not in graph_outputs for t in pad_out)
        ):
            out.append([i, i + 1])
            i += 2
        else:
            out.append([i])
            i += 1
    return out


class OpChain:
    """A TFLite graph as a chain of single-op interpreters, run in the graph's execution order."""

    def __init__(self, path: str | Path, num_threads: int = 1, use_xnnpack: bool = True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        from ai_edge_litert.tools import flatbuffer_utils as fbu

        model = fbu.convert_bytearray_to_object(bytearray(Path(path).read_bytes()))
        if len(model.subgraphs) != 1:
            raise ValueError(f"{path}: op profiling on the host handles one subgraph, not {len(model.subgraphs)}")
        sg = model.subgraphs[0]
        ops = list(sg.operators)
        names = [fbu.opcode_to_name(model, op.opcodeIndex) for op in ops]
        self.graph_outputs = [int(t) for t in sg.outputs]
        self.tensor_names = [t.name.decode() if isinstance(t.name, bytes) else str(t.name) for t in sg.tensors]
        self.segments = _segments(ops, names, self.graph_outputs, fuse_pad=use_xnnpack)
        self.op_names = [names[seg[-1]] for seg in self.segments]  # a fused PAD has no row, as in XNNPACK's profile
        self.fused = [[names[i] for i in seg[:-1]] for seg in self.segments]
        data = [b.data for b in model.buffers]
        constant = {i for i, t in enumerate(sg.tensors) if data[t.buffer] is not None and len(data[t.buffer])}
        model.signatureDefs = []
        resolver = OpResolverType.AUTO if use_xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        self.steps: list[_Step] = []
        for seg in self.segments:
            seg_ops = [ops[i] for i in seg]
            made = {int(t) for op in seg_ops for t in op.outputs}
            ins = list(dict.fromkeys(int(t) for op in seg_ops for t in op.inputs if t >= 0 and t not in constant))
            ins = [t for t in ins if t not in made]
            outs = [int(t) for t in seg_ops[-1].outputs]
            used = {sg.tensors[t].buffer for op in seg_ops for t in [*op.inputs, *op.outputs] if t >= 0}
            for i, b in enumerate(model.buffers):
                b.data = data[i] if i in used else None  # leave out the other ops' weights
            sg.operators, sg.inputs, sg.outputs = seg_ops, ins, outs
            interp = Interpreter(
                model_content=bytes(fbu.convert_object_to_bytearray(model)),
                num_threads=num_threads,
                experimental_op_resolver_type=resolver,
            )
            interp.allocate_tensors()
            in_idx = [d["index"] for d in interp.get_input_details()]
            out_idx = [d["index"] for d in interp.get_output_details()]
            self.steps.append(_Step(interp, list(zip(in_idx, ins)), list(zip(out_idx, outs))))

    def run(self, feeds: dict[int, np.ndarray]) -> tuple[list[float], dict[int, np.ndarray]]:
        """One pass: per-op invoke times (us) and every tensor the ops produced, keyed by graph tensor."""
        store = dict(feeds)
        times = []
        for step in self.steps:
            for idx, t in step.inputs:
                step.interp.set_tensor(idx, store[t])
            t0 = time.perf_counter_ns()
            step.interp.invoke()
            times.append((time.perf_counter_ns() - t0) / 1000.0)
            for idx, t in step.outputs:
                store[t] = step.interp.get_tensor(idx)
        return times, store

    def profile(self, feeds: dict[int, np.ndarray], runs: int, warmup: int = 1) -> np.ndarray:
        """(runs, ops) array of invoke times in microseconds."""
        for _ in range(warmup):
            self.run(feeds)
        return np.array([self.run(feeds)[0] for _ in range(max(1, runs))])


def profile_table(chain: OpChain, times_us: np.ndarray) -> list[str]:
    """The "Run Order" table of benchmark_model's op profiling, from (runs, ops) times."""
    avg = times_us.mean(axis=0) / 1000.0
    first = times_us[0] / 1000.0
    start = np.concatenate([[0.0], np.cumsum(avg)[:-1]])
    total = float(avg.sum()) or 1.0
    cdf = np.cumsum(avg) / total * 100
    head = ["node type", "start", "first", "avg ms", "%", "cdf%", "mem KB", "times called", "Name"]
    lines = [
        PROFILE_MARK,
        "=" * 30 + " Run Order " + "=" * 30,
        "\t" + "\t".join(f"[{h}]" for h in head),
    ]
    for k, name in enumerate(chain.op_names):
        out_name = chain.tensor_names[chain.steps[k].outputs[0][1]] if chain.steps[k].outputs else ""
        fused = "".join(f" (+{f} fused)" for f in chain.fused[k])
        lines.append(
            f"\t{name:>24}\t{start[k]:17.3f}\t{first[k]:9.3f}\t{avg[k]:9.3f}\t{avg[k] / total * 100:8.3f}%"
            f"\t{cdf[k]:8.3f}%\t{0.0:10.3f}\t{1:>9}\t[{out_name}]:{k}{fused}"
        )
    lines += ["", f"Number of nodes executed: {len(chain.op_names)}", "Host op profile: each op run as its own graph"]
    return lines
