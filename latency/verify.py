"""End-to-end checks of a LUT: measure whole networks with exactly the LUT's settings and compare.

`measure_networks` exports each architecture's whole network (stem, blocks, head) at the deployment
resolution, pushes it, and measures it round-robin with the LUT's benchmark settings and repeats, on the LUT's
device and core. `verify_arch` sets one architecture's measurement beside its prediction and, with an op
profile, maps the per-op times back onto the network's parts (`map_op_profile`). `latency.validate` does the
same for many random architectures and fits the LUT's calibration.
"""

from __future__ import annotations

import statistics

from hnas.core.errors import HnasError
from hnas.core.progress import phase
from hnas.spec.arch import Architecture
from latency.bench import BenchSettings
from latency.build import device_name, same_device
from latency.defaults import REPEATS
from latency.devices import Device
from latency.export import Exporter, export_network
from latency.lut import Lut
from latency.precision import table_precision
from latency.stability import Stability


def check_device(lut: Lut, device: Device, lut_name: str) -> None:
    """Refuse to compare a LUT with measurements from another device or core."""
    desc = device.describe()
    if not same_device(lut.device, desc):
        raise HnasError(
            f"{lut_name} was measured on {device_name(lut.device)}, not on this device ({device_name(desc)}): "
            "verify with the LUT of this device (`hnas lut build --device local` writes it)"
        )


def measure_networks(
    device: Device,
    archs: list[Architecture],
    lut: Lut,
    exporter: Exporter | None = None,
    progress=None,
    op_profile: bool = False,
    stability: Stability | None = None,
) -> list[dict]:
    """Median of repeat medians (ms) per architecture's whole network at the LUT's precision, whether its repeats
    agree (`Stability`: networks whose repeats disagree are measured again after a pause, then marked unstable),
    whether the host was busy, and its op profile if asked."""
    stability = stability or Stability()
    exporter = exporter or Exporter()
    settings, repeats = lut.bench_settings()
    precision = table_precision(lut)
    exported = []
    with phase(progress, "export", len(archs)) as advance:
        for a in archs:
            exported.append(export_network(a, exporter, precision))
            advance()
    remotes = device.push_many([e.path for e in exported])
    owners: dict[str, list[int]] = {}  # one model file per distinct network; a network drawn twice shares it
    for i, r in enumerate(remotes):
        owners.setdefault(r, []).append(i)
    medians: list[list[float]] = [[] for _ in archs]
    profiles: list[list] = [[] for _ in archs]

    busy: list[str] = []

    def batch(bench: BenchSettings, advance, which: list[int] | None = None) -> None:
        chosen = list(owners) if which is None else list(dict.fromkeys(remotes[i] for i in which))
        for m in device.measure(chosen, bench):
            first = owners[m.model][0]
            if m.result is None:
                raise HnasError(
                    f"benchmark of network {archs[first]} failed (exit {m.rc}); last lines:\n{m.failure_tail()}"
                )
            res = m.result
            for i in owners[m.model]:
                if bench.enable_op_profiling:
                    profiles[i] = res.op_profile
                else:
                    medians[i].append(res.runs.median_or_avg_ms)
            advance()
        if (why := device.busy()) and why not in busy:  # judged during the batch, not before it
            busy.append(why)

    with phase(progress, "measure", repeats * len(owners)) as advance:
        for _ in range(repeats):
            batch(settings, advance)
        for extra in range(stability.extra):
            again = [i for i, m in enumerate(medians) if stability.again(m, extra)]
            if not again:
                break
            advance(total_delta=len({remotes[i] for i in again}))
            stability.pause()
            batch(settings, advance, again)
    if op_profile:
        # a separate pass: a profiler adds its own overhead, and must not touch the measured figures
        with phase(progress, "op profile", len(owners)) as advance:
            batch(BenchSettings(**{**settings.to_dict(), "enable_op_profiling": True}), advance)
    return [
        {
            "arch": str(a),
            "measured_ms": statistics.median(m),
            "repeat_medians_ms": m,
            **stability.verdict(m),
            "host_busy": "; ".join(busy) or None,
            "model_sha256": e.sha256,
            "op_profile": p or None,
        }
        for a, m, e, p in zip(archs, medians, exported, profiles)
    ]


def verify_arch(
    arch: Architecture,
    lut_path: str,
    device: str | None = "local",
    op_profile: bool = False,
    benchmark_binary: str | None = None,
    progress=None,
    exporter: Exporter | None = None,
    stability: Stability | None = None,
    precision: str | None = None,
) -> dict:
    """Predicted (LUT) against measured (the whole network on the LUT's device and core, the LUT's settings and
    precision, which `precision` must match when given) latency of `arch`; with `op_profile`, each part's time
    inside the network beside its LUT entry. `device` None: the device the table names."""
    from latency.backends import open_device
    from latency.export import tflite_ops
    from latency.predict import LatencyPredictor

    table = Lut.load(lut_path)
    table.require_device()
    if device is None:
        device = table.device.get("id", "local")
    pred = LatencyPredictor(table, arch.space, lut_path, precision=precision)
    parts_ms = pred.breakdown(arch)  # raw LUT figures per part
    dev = open_device(device, core=table.device.get("core"), benchmark_binary=benchmark_binary)
    check_device(table, dev, lut_path)
    ex = exporter or Exporter()
    (row,) = measure_networks(dev, [arch], table, ex, progress, op_profile, stability)
    measured, predicted = row["measured_ms"], pred.predict_arch(arch)
    result = {
        "arch": str(arch),
        "space": arch.space.name,
        "lut": lut_path,
        "precision": pred.precision,
        "device": dev.describe(),
        "predicted_ms": predicted,
        "predicted_raw_ms": sum(ms for _, ms in parts_ms),
        "calibrated": pred.calibration is not None,
        "measured_ms": measured,
        "repeat_medians_ms": row["repeat_medians_ms"],
        "stable": row["stable"],
        "spread": row["spread"],
        "host_busy": row["host_busy"],
        "doubtful_entries": pred.doubtful(arch)[0],  # the unstable entries the prediction used
        "doubtful_note": pred.doubt_note(arch),
        # an unstable measurement has no error worth a number: verify says so instead
        "error": (predicted - measured) / measured if row["stable"] else None,
        "model_sha256": row["model_sha256"],
    }
    if op_profile:
        if not row["op_profile"]:
            raise HnasError(f"the benchmark on {device} printed no op profile (was --enable_op_profiling ignored?)")
        parts = [p.at(pred.precision) for p in arch.parts()]
        seqs = [(p.label, tflite_ops(ex.export_part(p).path) if p.key else []) for p in parts]
        mapped = map_op_profile(row["op_profile"], seqs)
        result["op_profile"] = [{**m, "lut_ms": ms} for m, (_, ms) in zip(mapped, parts_ms, strict=True)]
        result["op_profile_total_ms"] = sum(m["ms"] for m in mapped)
        result["op_profile_method"] = (
            "host runner: each op of the network run as its own graph, in order (latency.opprofile)"
            if device == "local" and not benchmark_binary
            else "benchmark_model --enable_op_profiling=true"
        )
    return result


# XNNPACK's own operator names, as benchmark_model (TFLite >= 2.9.1) prints them for a delegated graph:
# "<Operator> (<layout>, <type>) <microkernel>", e.g. "Convolution (NHWC, F32) IGEMM".
_XNNPACK_FAMILIES = (
    ("Convolution", "CONV"),
    ("Add", "ADD"),
    ("Global Average Pooling", "MEAN"),
    ("Mean", "MEAN"),
    ("Fully Connected", "FULLY_CONNECTED"),
    ("Constant Pad", "PAD"),
    ("Copy", "RESHAPE"),
    ("Reshape", "RESHAPE"),
)
_BUILTIN_FAMILY = {"CONV_2D": "CONV", "DEPTHWISE_CONV_2D": "CONV"}
# ops XNNPACK may fuse into a neighbour or elide, so that they have no row of their own
_MAY_VANISH = {"PAD", "RESHAPE"}


def _is_xnnpack_row(node_type: str) -> bool:
    return "(" in node_type and ")" in node_type


def _family(node_type: str) -> str:
    if _is_xnnpack_row(node_type):
        for prefix, family in _XNNPACK_FAMILIES:
            if node_type.startswith(prefix):
                return family
        return node_type
    return _BUILTIN_FAMILY.get(node_type, node_type)


def map_op_profile(op_profile, layer_ops: list[tuple[str, list[str]]]) -> list[dict]:
    """Assign a network's op-profile rows (in run order) to its layers, given each layer's TFLite op sequence
    (from the layer's own exported graph: the same conversion). Returns [{layer, ops, profiled, ms}].

    Rows named by TFLite builtins (the host runner; benchmark_model with --use_xnnpack=false) must match the
    sequence exactly. Rows named by XNNPACK operators (benchmark_model on a phone, XNNPACK on) are matched by
    family (any convolution for CONV_2D and DEPTHWISE_CONV_2D). A PAD or RESHAPE that XNNPACK fused away may
    have no row (the host runner folds a PAD into its convolution too)."""
    rows = list(op_profile)
    xnnpack = any(_is_xnnpack_row(r.node_type) for r in rows)
    if xnnpack:
        rows = [r for r in rows if _is_xnnpack_row(r.node_type)]  # the delegate's own summary row(s) go
    elif any("Delegate" in r.node_type for r in rows):
        raise HnasError(
            "the op profile shows the XNNPACK delegate as one node: use a benchmark_model from TFLite 2.9.1 "
            "or later, which profiles inside the delegate"
        )
    out, i = [], 0
    for name, ops in layer_ops:
        take, got = [], []
        for op in ops:
            row = rows[i] if i < len(rows) else None
            if row is not None and (row.node_type == op or (xnnpack and _family(row.node_type) == _family(op))):
                take.append(row)
                got.append(row.node_type)
                i += 1
            elif op in _MAY_VANISH:
                continue
            else:
                seen = [r.node_type for r in rows[i : i + len(ops)]]
                raise HnasError(
                    f"op profile does not follow the network's layers at {name}: expected {ops}, got {seen}"
                )
        out.append({"layer": name, "ops": ops, "profiled": got, "ms": float(sum(r.avg_ms for r in take))})
    if i != len(rows):
        raise HnasError(f"op profile has {len(rows) - i} rows after the network's last layer: {rows[i].node_type}")
    return out


def measure_file(device: Device, path, lut: Lut | None = None, stability: Stability | None = None) -> dict:
    """One model file measured as verify measures a network: the LUT's benchmark settings and repeats (without a
    LUT: the defaults a table is built with), the stability rule; the file's sha256, size and precision beside it."""
    from pathlib import Path

    from hnas.core.io import sha256_file
    from latency.profile import profile_model
    from latency.quantize import precision_of

    path = Path(path)
    if not path.is_file() or path.suffix != ".tflite":
        raise HnasError(f"{path} is not a .tflite file")
    settings, repeats = lut.bench_settings() if lut is not None else (BenchSettings(), REPEATS)
    row = profile_model(device, path, path.name, settings, repeats, stability or Stability())
    return {
        "model": str(path),
        "sha256": sha256_file(path),
        "bytes": path.stat().st_size,
        "precision": precision_of(path),
        "device": device.describe(),
        "settings": settings.to_dict(),
        "repeats": repeats,
        "measured_ms": row["median_ms"],
        "repeat_medians_ms": [r["median_ms"] for r in row["repeats"]],
        "stable": row["stable"],
        "spread": row["spread"],
        "host_busy": row["host_busy"],
    }
