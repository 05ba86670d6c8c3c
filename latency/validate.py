"""How good a LUT is end to end: predicted against measured latency of N random whole networks.

`validate` measures N random architectures of a space on the LUT's device and core with the LUT's settings,
fits a per-device end-to-end correction (measured = offset + scale x LUT sum) on the first `fit` of them,
and reports, on the held-out networks, the mean absolute percentage error, the share within 5 % and 10 % and
Kendall's tau, raw and calibrated, with a plot. The correction is stored in the LUT (the predictor applies it
from then on) only when it beats the raw LUT sums on the held-out networks; otherwise the table predicts raw
sums, and the report says why. The report names the entries of the space that are unstable or measured once.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_json
from hnas.spec.arch import sample_across_sizes
from hnas.spec.space import SearchSpace
from latency.devices import Device
from latency.export import Exporter
from latency.lut import Lut, doubt_line, now_iso
from latency.predict import LatencyPredictor
from latency.stability import Stability
from latency.verify import check_device, measure_networks


def default_folder(lut_path: str | Path) -> Path:
    """`lut/<name>-validate/` beside the LUT."""
    p = Path(lut_path)
    return p.parent / (p.stem + "-validate")


def validate(
    lut_path: str,
    device: Device,
    space: SearchSpace,
    n: int = 50,
    fit: int = 10,
    folder: str | Path | None = None,
    seed: int = 0,
    exporter: Exporter | None = None,
    progress=None,
    stability: Stability | None = None,
    precision: str | None = None,
) -> dict:
    """Measure `n` random networks spread from the space's smallest to its largest (`sample_across_sizes`; the same
    ones for every table, given `seed`) at the LUT's precision (which
    `precision` must match when given), refit the LUT's calibration on `fit` of them, report on the rest; writes
    `validate.json` and `validate.png` to `folder` and returns the report."""
    if fit >= n:
        raise HnasError(f"--fit {fit} leaves no held-out architecture of -n {n}: use --fit < -n")
    table = Lut.load(lut_path)
    raw = LatencyPredictor(table, space, lut_path, calibrated=False, precision=precision)
    check_device(table, device, lut_path)
    rng = np.random.default_rng(seed)  # fitted and held-out networks each spread over the space's sizes
    archs = sample_across_sizes(space, fit, rng) + sample_across_sizes(space, n - fit, rng)
    rows = measure_networks(device, archs, table, exporter, progress, stability=stability)
    pred = np.array([raw.predict_arch(a) for a in archs])
    meas = np.array([r["measured_ms"] for r in rows])
    stable = np.array([r["stable"] for r in rows])
    fitted, held = np.flatnonzero(stable[:fit]), fit + np.flatnonzero(stable[fit:])
    if len(fitted) < 2 or len(held) < 2:
        raise HnasError(
            f"only {int(stable.sum())} of {n} networks measured stably (repeats within the spread rule): too few to "
            "fit or judge a calibration; rerun on a quiet machine"
        )
    cal = fit_calibration(pred[fitted], meas[fitted])
    stats_raw, stats_cal = error_stats(pred[held], meas[held]), error_stats(cal.apply(pred[held]), meas[held])
    applied, note = judge_calibration(cal, stats_raw, stats_cal, raw.additive().span()[0], space.name)
    store_calibration(table, cal if applied else None, space.name, fit, stats_raw, stats_cal)
    now = cal.apply if applied else np.asarray  # what the table predicts from now on
    doubtful, used = raw.doubtful()
    folder = Path(folder) if folder else default_folder(lut_path)
    report = {
        "lut": lut_path,
        "space": space.name,
        "precision": raw.precision,
        "device": device.describe(),
        "n": n,
        "fit": fit,
        "unstable": int((~stable).sum()),
        "calibration": {"offset_ms": cal.offset_ms, "scale": cal.scale},
        "calibration_applied": applied,
        "calibration_note": note,
        "held_out_raw": stats_raw,
        "held_out_calibrated": stats_cal,
        "held_out_applied": stats_cal if applied else stats_raw,  # the errors of what the table now predicts
        "doubtful_entries": doubtful,  # entries of the space that are unstable or measured once
        "doubtful_note": doubt_line(doubtful, used, f"of {lut_path} that price space {space.name!r}", lut_path),
        "networks": [
            {
                **r,
                "predicted_raw_ms": float(p),
                "predicted_calibrated_ms": float(cal.apply(p)),
                "predicted_ms": float(now(p)),
                "used_for_fit": i < fit,
            }
            for i, (r, p) in enumerate(zip(rows, pred))
        ],
        "folder": str(folder),
    }
    atomic_write_json(folder / "validate.json", report)
    from hnas.core.plots import save_png

    title = f"{space.name} on {table.device.get('model')}, {raw.precision}: {n} networks"
    save_png(validation_plot(pred, meas, cal.apply(pred), title=title), folder / "validate.png")
    return report


@dataclass
class Calibration:
    """measured ~= offset_ms + scale * LUT sum, fitted by least squares of the relative error."""

    offset_ms: float
    scale: float

    def apply(self, predicted):
        return self.offset_ms + self.scale * np.asarray(predicted)


def fit_calibration(predicted, measured) -> Calibration:
    """The line through (LUT sum, measured) of least squared *relative* error (what the report judges, and what a
    small network in a search band needs: in absolute terms the largest networks would decide the offset)."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if len(p) < 2 or np.ptp(p) == 0:
        return Calibration(0.0, float(np.mean(m / p)) if len(p) else 1.0)
    scale, offset = np.polyfit(p, m, 1, w=1.0 / m)
    return Calibration(float(offset), float(scale))


def judge_calibration(
    cal: Calibration, raw: dict, calibrated: dict, fastest_raw_ms: float, space_name: str
) -> tuple[bool, str]:
    """Whether a fitted calibration is applied, and why in one line: only when it beats the raw LUT sums on the
    held-out networks (a lower MAPE) and predicts a latency above 0 for the space's fastest architecture."""
    n, c, r = raw["n"], calibrated["mape"] * 100, raw["mape"] * 100
    fastest = float(cal.apply(fastest_raw_ms))
    if not fastest > 0:
        return False, (
            f"not applied: it predicts {fastest:.2f} ms for the fastest architecture of space {space_name!r}; the "
            "table predicts raw LUT sums"
        )
    if not c < r:
        return False, (
            f"not applied: it does not beat the raw LUT sums on the {n} held-out networks (MAPE {c:.2f} % against "
            f"{r:.2f} %); the table predicts raw LUT sums"
        )
    return True, f"applied: it beats the raw LUT sums on the {n} held-out networks (MAPE {c:.2f} % against {r:.2f} %)"


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


METHOD = (
    "least squares of the relative error, on networks spread over the space's sizes: measured whole-network "
    "latency = offset_ms + scale * sum of LUT entries"
)


def store_calibration(
    lut: Lut, cal: Calibration | None, space_name: str, n_fit: int, stats_raw: dict, stats_cal: dict
) -> None:
    """Record the correction in the LUT, with how it was fitted (None: the table predicts raw sums; a calibration
    it held is removed, since this validation found the raw sums better)."""
    if cal is None:
        lut.data["calibration"] = None
        lut.save()
        return
    lut.data["calibration"] = {
        "offset_ms": cal.offset_ms,
        "scale": cal.scale,
        "method": METHOD,
        "space": space_name,
        "fitted_on": n_fit,
        "fitted_at": now_iso(),
        "settings_id": lut.settings_id,
        "held_out_raw": stats_raw,
        "held_out_calibrated": stats_cal,
    }
    lut.save()


def validation_plot(predicted, measured, calibrated=None, title: str = ""):
    """Predicted against measured latency, with the identity line and the +-10 % band under the points."""
    from hnas.core.plots import pyplot

    fig, ax = pyplot().subplots(figsize=(5.5, 5))
    m = np.asarray(measured)
    lo, hi = float(min(m.min(), np.min(predicted))) * 0.9, float(max(m.max(), np.max(predicted))) * 1.1
    xs = np.linspace(lo, hi, 10)
    ax.plot(xs, xs, "k-", lw=1, label="predicted = measured")
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="+-10 %", zorder=0)
    ax.scatter(m, predicted, s=18, label="LUT sum (raw)", zorder=2)
    if calibrated is not None:
        ax.scatter(m, calibrated, s=18, marker="x", label="calibrated", zorder=2)
    ax.set_xlabel("measured end-to-end latency (ms)")
    ax.set_ylabel("predicted latency (ms)")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return fig
