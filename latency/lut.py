"""The per-device latency lookup table: a versioned JSON file, written atomically after every measurement.

Layout (schema `hnas.lut/1`, described in lut/README.md):

    {"schema", "device": {...fingerprint}, "runtime": {...}, "settings": {...}, "created_at", "updated_at",
     "entries": {KEY: {"spec", "median_ms", "mean_ms", "std_ms", "min_ms", "runs", "repeats",
                       "repeat_medians_ms", "measured_at", "model_sha256", "export_key", "settings_id",
                       "source", "remeasured", "conditions"}},
     "pending": {KEY: {"repeats": [{"count", "avg_us", "std_us", "min_us", "median_us"}...], ...}},
     "calibration": null}

`pending` holds repeats of entries whose round-robin measurement is not finished, so a killed build loses
nothing: the rerun continues with the repeats that are missing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from hnas.errors import HnasError
from hnas.io import atomic_write_json
from hnas.schema import POSITIVE_MS, Int, ListOf, MapOf, Num, Obj, Opt, Str, check, load_json
from hnas.spec.ops import MAX_CHANNELS, MAX_CLASSES, MAX_KERNEL, MAX_SIZE

SCHEMA = "hnas.lut/1"


# benchmark_model prints whole microseconds: the fastest run of a tiny part can read 0 (under 1 us) on a fast core
BELOW_RESOLUTION_OK = Num(at_least=0)

_SHAPE = Obj(
    {
        "in_size": Int(1, at_most=MAX_SIZE),
        "in_ch": Int(1, at_most=MAX_CHANNELS),
        "out_ch": Int(1, at_most=max(MAX_CHANNELS, MAX_CLASSES)),  # a classifier's outputs are its channels
        "stride": Int(allowed=(1, 2)),
    }
)
_SPEC = Obj(
    {
        "op": Str(nonempty=True),
        "part": Str(nonempty=True),
        "kernel": Int(1, at_most=MAX_KERNEL),
        "shape": _SHAPE,
        "precision": Str(),
    },
    optional=frozenset({"op", "part", "kernel", "precision"}),
    rule=lambda d: None if ("op" in d) != ("part" in d) else "needs exactly one of 'op' and 'part'",
)
_ENTRY = Obj(
    {
        "spec": _SPEC,
        "median_ms": Opt(POSITIVE_MS),
        "mean_ms": Opt(POSITIVE_MS),
        "std_ms": Opt(Num(at_least=0)),
        "min_ms": Opt(BELOW_RESOLUTION_OK),
        "runs": Int(1),
        "repeats": Int(1),
        "repeat_medians_ms": ListOf(POSITIVE_MS),
    },
    optional=frozenset({"median_ms", "mean_ms", "std_ms", "min_ms", "runs", "repeats", "repeat_medians_ms"}),
    extra=True,
    rule=lambda d: (
        "a measured entry needs median_ms"
        if d.get("source", "measured") == "measured" and d.get("median_ms") is None
        else None
        if d.get("median_ms") or d.get("mean_ms")
        else "has neither median_ms nor mean_ms"
    ),
)
REPEAT_SCHEMA = Obj(
    {
        "count": Int(1),
        "avg_us": POSITIVE_MS,
        "std_us": Num(at_least=0),
        "min_us": BELOW_RESOLUTION_OK,
        "median_us": POSITIVE_MS,
    },
    extra=True,
)
LUT_SCHEMA = Obj(
    {
        "schema": Str(),
        "device": Obj({}, extra=True),
        "runtime": Obj({}, extra=True),
        "settings": Obj({}, extra=True),
        "created_at": Str(),
        "updated_at": Str(),
        "entries": MapOf(_ENTRY),
        "pending": MapOf(Obj({"repeats": ListOf(REPEAT_SCHEMA)}, extra=True)),
        "calibration": Opt(Obj({"offset_ms": Num(), "scale": Num(above=0)}, extra=True)),
    },
    optional=frozenset({"pending", "calibration", "created_at", "updated_at"}),
    extra=True,
)


def check_repeat(rep: dict, key: str) -> dict:
    """A repeat as `Lut.load` will read it back, or one line saying why this measurement cannot be stored (a
    median under the benchmark's 1 us resolution: the part is too small to price on this device)."""
    return check(rep, REPEAT_SCHEMA, f"the measurement of {key}")


def now_iso() -> str:
    """UTC timestamp, seconds resolution."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def settings_id(settings: dict, runtime: dict) -> str:
    """Digest of everything that changes a figure besides the op itself: benchmark settings and runtime."""
    payload = json.dumps({"settings": settings, "runtime": runtime}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def aggregate(repeats: list[dict]) -> dict:
    """Entry figures from repeats: median of repeat medians; pooled mean and std over all runs; minimum."""
    counts = np.array([r["count"] for r in repeats], dtype=float)
    avgs = np.array([r["avg_us"] for r in repeats])
    stds = np.array([r["std_us"] for r in repeats])
    meds = np.array([r["median_us"] for r in repeats])
    n = counts.sum()
    mean = float((counts * avgs).sum() / n)
    pooled_var = float(((counts * (stds**2 + (avgs - mean) ** 2)).sum()) / n)
    return {
        "median_ms": float(np.median(meds)) / 1000,
        "mean_ms": mean / 1000,
        "std_ms": math.sqrt(pooled_var) / 1000,
        "min_ms": float(min(r["min_us"] for r in repeats)) / 1000,
        "runs": int(n),
        "repeats": len(repeats),
        "repeat_medians_ms": [round(float(m) / 1000, 6) for m in meds],
    }


class Lut:
    """A latency table file (or one being built)."""

    def __init__(self, data: dict, path: Path | None = None):
        self.data = data
        self.path = path

    @classmethod
    def new(cls, device: dict, runtime: dict, settings: dict, path: Path | None = None) -> Lut:
        """An empty table for a device, runtime and settings."""
        t = now_iso()
        data = {
            "schema": SCHEMA,
            "device": device,
            "runtime": runtime,
            "settings": settings,
            "created_at": t,
            "updated_at": t,
            "entries": {},
            "pending": {},
            "calibration": None,
        }
        return cls(data, path)

    @classmethod
    def load(cls, path: str | Path) -> Lut:
        """Read a table; a missing, unreadable or foreign file is a one-line error."""
        path = Path(path)
        build = "build one with `hnas lut build --device local --space basic`"
        data = load_json(path, "LUT", missing=build, broken="restore it or rebuild it")
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise HnasError(
                f"LUT {path} has schema {data.get('schema') if isinstance(data, dict) else None!r}, "
                f"expected {SCHEMA!r}; rebuild it with `hnas lut build`"
            )
        check(data, LUT_SCHEMA, f"LUT {path}")
        for key, entry in data["entries"].items():
            from hnas.spec.parts import Part

            try:
                derived = Part.from_spec(entry["spec"]).key
            except HnasError as exc:
                raise HnasError(f"LUT {path}: entries[{key!r}].spec: {exc}") from None
            if derived != key:
                raise HnasError(
                    f"LUT {path}: entry {key!r} holds the spec of {derived!r}; rebuild it with `hnas lut refresh`"
                )
        data.setdefault("pending", {})
        data.setdefault("calibration", None)
        return cls(data, path)

    @property
    def entries(self) -> dict[str, dict]:
        """Finished entries by key."""
        return self.data["entries"]

    @property
    def pending(self) -> dict[str, dict]:
        """Unfinished entries (repeats so far) by key."""
        return self.data["pending"]

    @property
    def device(self) -> dict:
        """Device fingerprint."""
        return self.data["device"]

    @property
    def settings_id(self) -> str:
        """Digest of the table's current settings and runtime."""
        return settings_id(self.data["settings"], self.data["runtime"])

    @property
    def is_published(self) -> bool:
        """An imported published table: there is no device here to measure it against."""
        return self.device.get("kind") == "published"

    def bench_settings(self):
        """The `benchmark_model` settings and repeats the table was measured with (the one place they are read)."""
        from latency.bench import BenchSettings

        if self.is_published:
            raise HnasError(f"{self.path} is a published table: there is no device here to measure it against")
        stored = dict(self.data["settings"])
        repeats = int(stored.pop("repeats", 5))
        stored.pop("core", None)
        stored.pop("precision", None)  # the table's, not benchmark_model's (latency.precision)
        return BenchSettings.from_dict(stored), repeats

    def latency_ms(self, key: str) -> float | None:
        """The figure the predictor uses: the median (or, for imported tables, the mean)."""
        e = self.entries.get(key)
        if e is None:
            return None
        return e["median_ms"] if e.get("median_ms") is not None else e["mean_ms"]

    def save(self) -> None:
        """Write atomically (temp file + rename)."""
        if self.path is None:
            raise HnasError("this LUT has no file path; pass --out")
        self.data["updated_at"] = now_iso()
        atomic_write_json(self.path, self.data)

    def stale_reason(self, key: str, export_key: str | None, max_age_s: float | None) -> str | None:
        """Why `key` must be (re)measured now, or None when its entry is fresh."""
        e = self.entries.get(key)
        if e is None:
            return "missing"
        if e.get("source", "measured") != "measured":
            return None  # imported figures are kept; they are refreshed only by re-importing
        if e.get("settings_id") != self.settings_id:
            return "settings or runtime changed"
        if export_key is not None and e.get("export_key") != export_key:
            return "op spec or export tools changed"
        if max_age_s is not None:
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(e["measured_at"])
            if age.total_seconds() > max_age_s:
                return "older than --max-age"
        return None
