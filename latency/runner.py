"""Host stand-in for TFLite's `benchmark_model`: same flags, same output format, one pinned core.

    python -m latency.runner --graph=m.tflite --num_threads=1 --warmup_runs=5 --num_runs=20 --min_secs=0 --core=1

It runs the model with ai-edge-litert's interpreter (XNNPACK unless `--use_xnnpack=false`) and prints the
statistics lines of the current `benchmark_model` (`INFO: count=… avg=… std=… p5=… median=… p95=…`), so one
parser reads the host and a phone alike. `--enable_op_profiling=true` adds benchmark_model's "Run Order" table,
measured after the timed runs by `latency.opprofile` (each op run as its own graph, in order).
`--graph_list=FILE` benchmarks several models in one process,
each between `=== hnas-begin NAME` and `=== hnas-end NAME rc=N` lines — the same framing the phone's batch
script prints — so interpreter start-up is paid once per round, not once per model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

BEGIN = "=== hnas-begin"
END = "=== hnas-end"


def _flag_bool(text: str) -> bool:
    return str(text).lower() in ("1", "true", "yes")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """benchmark_model-style `--flag=value` arguments."""
    p = argparse.ArgumentParser(prog="python -m latency.runner", description=__doc__.splitlines()[0])
    p.add_argument("--graph")
    p.add_argument(
        "--graph_list", help="file with one .tflite path per line (batch mode); '-': read them from stdin as they come"
    )
    p.add_argument("--num_threads", type=int, default=1)
    p.add_argument("--warmup_runs", type=int, default=1)
    p.add_argument("--warmup_min_secs", type=float, default=0.5)
    p.add_argument("--num_runs", type=int, default=50)
    p.add_argument("--min_secs", type=float, default=1.0)
    p.add_argument("--max_secs", type=float, default=150.0)
    p.add_argument("--run_delay", type=float, default=-1.0)
    p.add_argument("--use_xnnpack", type=_flag_bool, default=True)
    p.add_argument("--enable_op_profiling", type=_flag_bool, default=False)
    p.add_argument("--core", type=int, default=None, help="pin to this CPU (host runner only)")
    args = p.parse_args(argv)
    if not args.graph and not args.graph_list:
        p.error("give --graph=MODEL.tflite or --graph_list=FILE")
    return args


def _stats_line(us: np.ndarray) -> str:
    if us.size == 0:
        return "count=0"
    if np.all(us == us[0]):
        return f"count={us.size} curr={us[-1]:.0f} (all same)"
    p5, med, p95 = np.percentile(us, [5, 50, 95], method="nearest")
    return (
        f"count={us.size} first={us[0]:.0f} curr={us[-1]:.0f} min={us.min():.0f} max={us.max():.0f} "
        f"avg={us.mean():g} std={us.std():.0f} p5={p5:.0f} median={med:.0f} p95={p95:.0f}"
    )


def _phase(interp, runs: int, min_secs: float, max_secs: float, delay: float) -> np.ndarray:
    times = []
    start = time.perf_counter()
    while True:
        t0 = time.perf_counter_ns()
        interp.invoke()
        times.append((time.perf_counter_ns() - t0) / 1000.0)
        elapsed = time.perf_counter() - start
        if (len(times) >= runs and elapsed >= min_secs) or elapsed >= max_secs:
            break
        if delay > 0:
            time.sleep(delay)
    return np.array(times)


def benchmark(graph: str, args: argparse.Namespace, out) -> int:
    """Benchmark one model, printing benchmark_model's lines; returns the exit status."""
    from latency.runtime import fully_delegated, load_interpreter, random_inputs

    def log(line: str = "") -> None:
        out.write(f"INFO: {line}\n")

    log("STARTING!")
    log(f"Graph: [{graph}]")
    log(f"Num threads: [{args.num_threads}]")
    log(f"Use xnnpack: [{int(args.use_xnnpack)}]")
    log(f"CPU affinity: {sorted(os.sched_getaffinity(0))}")
    log(f"Enable op profiling: [{int(args.enable_op_profiling)}]")
    if not os.path.isfile(graph):
        out.write(f"ERROR: Model file doesn't exist: {graph}\n")
        return 1
    t0 = time.perf_counter()
    try:
        interp = load_interpreter(graph, num_threads=args.num_threads, use_xnnpack=args.use_xnnpack)
    except Exception as exc:  # noqa: BLE001 - reported like the binary does
        out.write(f"ERROR: Failed to load model {graph}: {exc}\n")
        return 1
    init_ms = (time.perf_counter() - t0) * 1000
    feeds = random_inputs(interp)  # int8 inputs: uniform int8 values, as benchmark_model fills them
    for index, value in feeds.items():
        interp.set_tensor(index, value)
    log(f"Loaded model {graph}")
    if args.use_xnnpack:
        # benchmark_model's own line: an int8 graph runs on XNNPACK's quantized kernels only when all of it does
        how = "completely" if fully_delegated(interp) else "partially"
        log(f"Explicitly applied XNNPACK delegate, and the model graph will be {how} executed by the delegate.")
    log(f"The input model file size (MB): {os.path.getsize(graph) / 1e6:g}")
    log(f"Initialized session in {init_ms:.3f}ms.")
    log(
        f"Running benchmark for at least {args.warmup_runs} iterations and at least {args.warmup_min_secs:g} "
        f"seconds but terminate if exceeding {args.max_secs:g} seconds."
    )
    warm = _phase(interp, args.warmup_runs, args.warmup_min_secs, args.max_secs, args.run_delay)
    log(_stats_line(warm))
    log()
    log(
        f"Running benchmark for at least {args.num_runs} iterations and at least {args.min_secs:g} seconds "
        f"but terminate if exceeding {args.max_secs:g} seconds."
    )
    runs = _phase(interp, args.num_runs, args.min_secs, args.max_secs, args.run_delay)
    log(_stats_line(runs))
    log()
    first = warm[0] if warm.size else (runs[0] if runs.size else 0.0)
    log(
        f"Inference timings in us: Init: {init_ms * 1000:.0f}, First inference: {first:.0f}, "
        f"Warmup (avg): {warm.mean() if warm.size else 0:g}, Inference (avg): {runs.mean() if runs.size else 0:g}"
    )
    if args.enable_op_profiling:
        # after the measured runs, so that profiling never touches the figures above
        from latency.opprofile import OpChain, profile_table

        try:
            chain = OpChain(graph, num_threads=args.num_threads, use_xnnpack=args.use_xnnpack)
        except Exception as exc:  # noqa: BLE001 - reported like the binary does
            out.write(f"ERROR: op profiling of {graph} failed: {exc}\n")
            return 1
        times = chain.profile(feeds, runs=args.num_runs, warmup=max(1, args.warmup_runs))
        for line in profile_table(chain, times):
            out.write(line + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; pins the process to `--core` before anything runs."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.core is not None:
        try:
            os.sched_setaffinity(0, {args.core})
        except (OSError, ValueError) as exc:
            sys.stdout.write(f"ERROR: cannot pin to CPU {args.core}: {exc}\n")
            return 1
    out = sys.stdout
    if args.graph_list is None:
        return benchmark(args.graph, args, out)
    rc_all = 0
    listing = sys.stdin if args.graph_list == "-" else Path(args.graph_list).read_text().splitlines()
    for graph in (line.strip() for line in listing):
        if not graph:
            continue
        out.write(f"{BEGIN} {graph}\n")
        rc = benchmark(graph, args, out)
        out.write(f"{END} {graph} rc={rc}\n")
        out.flush()
        rc_all = rc_all or rc
    return rc_all


if __name__ == "__main__":
    sys.exit(main())
