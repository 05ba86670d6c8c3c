"""End-to-end checks of a LUT: measure whole networks with exactly the LUT's settings and compare.

`measure_networks` exports each architecture's whole network (stem, blocks, head) at the deployment
resolution, pushes it, and measures it round-robin with the LUT's benchmark settings and repeats, on the LUT's
device and core. `validate` does that for N random architectures, fits a per-device end-to-end correction
(measured = offset + scale x LUT sum) on a few of them, stores it in the LUT, and reports raw and calibrated
errors on the others.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hnas.arch import Architecture
from hnas.errors import HnasError
from latency.bench import BenchSettings, parse_benchmark_output
from latency.build import _same_device, phase
from latency.devices import Device
from latency.export import Exporter, export_network
from latency.lut import Lut, now_iso


def lut_settings(lut: Lut) -> tuple[BenchSettings, int]:
    """The benchmark settings and repeats a LUT was measured with."""
    stored = dict(lut.data["settings"])
    repeats = int(stored.pop("repeats", 5))
    stored.pop("core", None)
    if "imported_from" in stored:
        raise HnasError("this LUT is a published table: there is no device here to measure it against")
    return BenchSettings.from_dict(stored), repeats


def check_device(lut: Lut, device: Device, lut_name: str) -> None:
    """Refuse to compare a LUT with measurements from another device or core."""
    desc = device.describe()
    if not _same_device(lut.device, desc):
        raise HnasError(
            f"{lut_name} was measured on {lut.device.get('model')} / {lut.device.get('cpu')} core "
            f"{lut.device.get('core')}, not on this device ({desc.get('model')} / {desc.get('cpu')} core "
            f"{desc.get('core')}): verify with the LUT of this device"
        )


def measure_networks(
    device: Device,
    archs: list[Architecture],
    lut: Lut,
    exporter: Exporter | None = None,
    progress=None,
    op_profile: bool = False,
) -> list[dict]:
    """Median of repeat medians (ms) per architecture's whole network, plus its op profile if asked."""
    exporter = exporter or Exporter()
    settings, repeats = lut_settings(lut)
    exported = []
    with phase(progress, "export", len(archs)) as advance:
        for a in archs:
            exported.append(export_network(a, exporter))
            advance()
    remotes = device.push_many([e.path for e in exported])
    index = {r: i for i, r in enumerate(remotes)}
    medians: list[list[float]] = [[] for _ in archs]
    profiles: list[list] = [[] for _ in archs]

    def batch(bench: BenchSettings, advance) -> None:
        for out in device.benchmark_batch(remotes, bench):
            i = index[out.model]
            if out.rc != 0:
                tail = "\n".join(out.text.splitlines()[-15:])
                raise HnasError(f"benchmark of network {archs[i]} failed (exit {out.rc}); last lines:\n{tail}")
            res = parse_benchmark_output(out.text)
            if bench.enable_op_profiling:
                profiles[i] = res.op_profile
            else:
                medians[i].append(res.runs.median_or_avg_ms)
            advance()

    with phase(progress, "measure", repeats * len(archs)) as advance:
        for _ in range(repeats):
            batch(settings, advance)
    if op_profile:
        # a separate pass: a profiler adds its own overhead, and must not touch the measured figures
        with phase(progress, "op profile", len(archs)) as advance:
            batch(BenchSettings(**{**settings.to_dict(), "enable_op_profiling": True}), advance)
    return [
        {
            "arch": str(a),
            "measured_ms": statistics.median(m),
            "repeat_medians_ms": m,
            "model_sha256": e.sha256,
            "op_profile": p or None,
        }
        for a, m, e, p in zip(archs, medians, exported, profiles)
    ]


@dataclass
class Calibration:
    """measured ~= offset_ms + scale * LUT sum, fitted by least squares."""

    offset_ms: float
    scale: float

    def apply(self, predicted):
        return self.offset_ms + self.scale * np.asarray(predicted)


def fit_calibration(predicted, measured) -> Calibration:
    """Least-squares line through (LUT sum, measured)."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if len(p) < 2 or np.ptp(p) == 0:
        return Calibration(0.0, float(np.mean(m / p)) if len(p) else 1.0)
    scale, offset = np.polyfit(p, m, 1)
    return Calibration(float(offset), float(scale))


def error_stats(predicted, measured) -> dict:
    """MAPE, share within +-5 % and +-10 %, Kendall tau."""
    from scipy.stats import kendalltau

    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rel = (p - m) / m
    tau = kendalltau(p, m).statistic if len(p) > 1 else float("nan")
    return {
        "n": int(len(p)),
        "mape": float(np.mean(np.abs(rel))),
        "within_5": float(np.mean(np.abs(rel) <= 0.05)),
        "within_10": float(np.mean(np.abs(rel) <= 0.10)),
        "max_abs_error": float(np.max(np.abs(rel))),
        "kendall_tau": float(tau),
    }


def store_calibration(
    lut: Lut, cal: Calibration, space_name: str, n_fit: int, stats_raw: dict, stats_cal: dict
) -> None:
    """Record the correction in the LUT, with how it was fitted."""
    lut.data["calibration"] = {
        "offset_ms": cal.offset_ms,
        "scale": cal.scale,
        "method": "least squares: measured whole-network latency = offset_ms + scale * sum of LUT entries",
        "space": space_name,
        "fitted_on": n_fit,
        "fitted_at": now_iso(),
        "settings_id": lut.settings_id,
        "held_out_raw": stats_raw,
        "held_out_calibrated": stats_cal,
    }
    lut.save()


def scatter_plot(path: Path, predicted, measured, calibrated=None, title: str = "") -> None:
    """Predicted against measured latency, with the identity line and +-10 % band."""
    from hnas.plots import pyplot, save_png

    fig, ax = pyplot().subplots(figsize=(5.5, 5))
    m = np.asarray(measured)
    lo, hi = float(min(m.min(), np.min(predicted))) * 0.9, float(max(m.max(), np.max(predicted))) * 1.1
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=1, label="predicted = measured")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="+-10 %")
    ax.scatter(m, predicted, s=18, label="LUT sum (raw)")
    if calibrated is not None:
        ax.scatter(m, calibrated, s=18, marker="x", label="calibrated")
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    save_png(fig, path)


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
