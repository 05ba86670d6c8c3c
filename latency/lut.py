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

import copy
import datetime as dt
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_json, read_json
from hnas.core.schema import POSITIVE_MS, Below, Int, ListOf, MapOf, Num, Obj, Opt, Str, check
from hnas.spec.ops import MAX_CHANNELS, MAX_CLASSES, MAX_KERNEL, MAX_SIZE

SCHEMA = "hnas.lut/1"

# the largest figure a table may hold: no op runs for 1000 s, and a sum of a thousand such figures stays finite
MAX_MS = 1e6
MAX_SCALE = 1e3  # the largest calibration scale (a phone is not 1000 x slower than its table)


LUT_MS = Below(POSITIVE_MS, MAX_MS)  # a figure in ms: finite, above 0, below MAX_MS
LUT_US = Below(POSITIVE_MS, MAX_MS * 1000)  # the same in microseconds (benchmark_model's unit)
# benchmark_model prints whole microseconds: the fastest run of a tiny part can read 0 (under 1 us) on a fast core
BELOW_RESOLUTION_OK = Below(Num(at_least=0), MAX_MS * 1000)

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
        "median_ms": Opt(LUT_MS),
        "mean_ms": Opt(LUT_MS),
        "std_ms": Opt(Below(Num(at_least=0), MAX_MS)),
        "min_ms": Opt(Below(Num(at_least=0), MAX_MS)),
        "runs": Int(1),
        "repeats": Int(1),
        "repeat_medians_ms": ListOf(LUT_MS),
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
        "avg_us": LUT_US,
        "std_us": Below(Num(at_least=0), MAX_MS * 1000),
        "min_us": BELOW_RESOLUTION_OK,
        "median_us": LUT_US,
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
        "calibration": Opt(
            Obj({"offset_ms": Below(Num(), MAX_MS), "scale": Below(Num(above=0), MAX_SCALE)}, extra=True)
        ),
    },
    optional=frozenset({"pending", "calibration", "created_at", "updated_at"}),
    extra=True,
)


def check_repeat(rep: dict, key: str) -> dict:
    """A repeat as `Lut.load` will read it back, or one line saying why this measurement cannot be stored (a
    median under the benchmark's 1 us resolution: the part is too small to price on this device)."""
    return check(rep, REPEAT_SCHEMA, f"the measurement of {key}")


def entry_doubt(entry: dict) -> str | None:
    """Why a measured entry's figure is not known to be stable: "unstable" (its repeats kept disagreeing), "measured
    once" (one repeat cannot be judged), or None (stable, or imported: a published figure has no repeats to judge)."""
    if entry.get("source", "measured") != "measured":
        return None
    if entry.get("repeats", 2) < 2:
        return "measured once"
    return "unstable" if entry.get("stable") is False else None


def doubt_line(doubtful: dict[str, str], total: int, what: str, lut_name: str) -> str | None:
    """`3 of 22 entries of this prediction are unstable: K1, K2, K3 - re-measure them with ...` for `doubtful`
    (key -> `entry_doubt`), or None when there are none."""
    if not doubtful:
        return None
    keys = list(doubtful)
    shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
    kinds = sorted(set(doubtful.values()))
    fixes = []
    if "unstable" in kinds:
        fixes.append(f"`hnas lut refresh --lut {lut_name} --unstable` on a quiet machine")
    if "measured once" in kinds:
        fixes.append(f"`hnas lut build --out {lut_name} --repeats 5` (one repeat cannot be judged)")
    return (
        f"{len(keys)} of {total} entries {what} are {' or '.join(kinds)}: {shown}; re-measure them with "
        + " and ".join(fixes)
    )


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
        self._saved: dict | None = None  # the content of the file at `path`, as last read or written

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
        data = read_json(path, what="LUT", missing=build, broken="restore it or rebuild it")
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
        table = cls(data, path)
        table._saved = copy.deepcopy(data)
        return table

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

    def require_device(self) -> None:
        """Refuse, in one line, to measure anything against an imported published table."""
        if self.is_published:
            raise HnasError(f"{self.path} is a published table: there is no device here to measure it against")

    def bench_settings(self):
        """The `benchmark_model` settings and repeats the table was measured with (the one place they are read)."""
        from latency.bench import BenchSettings

        self.require_device()
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
        """Write atomically (temp file + rename) what `load` will read back (checked against the schema first);
        an unchanged table is not rewritten, so its file (and the sha256 runs record of it) stays the same."""
        if self.path is None:
            raise HnasError("this LUT has no file path; pass --out")
        if self._saved == self.data and self.path.is_file():
            return
        self.data["updated_at"] = now_iso()
        check(self.data, LUT_SCHEMA, f"LUT {self.path} (not written)")
        atomic_write_json(self.path, self.data)
        self._saved = copy.deepcopy(self.data)

    def stale_reason(
        self, key: str, export_key: str | None, max_age_s: float | None, unstable: bool = False
    ) -> str | None:
        """Why `key` must be (re)measured now, or None when its entry is fresh (`unstable`: an entry not known to be
        stable, `entry_doubt`, is measured again too)."""
        e = self.entries.get(key)
        if e is None:
            return "missing"
        if e.get("source", "measured") != "measured":
            return None  # imported figures are kept; they are refreshed only by re-importing
        if unstable and entry_doubt(e):
            return entry_doubt(e)
        if e.get("settings_id") != self.settings_id:
            return "settings or runtime changed"
        if export_key is not None and e.get("export_key") != export_key:
            return "op spec or export tools changed"
        if max_age_s is not None:
            age = dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(e["measured_at"])
            if age.total_seconds() > max_age_s:
                return "older than --max-age"
        return None
