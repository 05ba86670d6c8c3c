"""TFLite `benchmark_model`: the command line that runs it and the parser that reads what it prints.

`benchmark_flags` renders `BenchSettings` as the tool's flags, once for every device (the host runner, a local
binary, a phone's batch script); `benchmark_command` is the argv for one graph. `parse_benchmark_output` reads
the tool's text from any of its output eras (TF 1.13 legacy, TF 2.x, `INFO: `-prefixed current builds, Android
logcat lines) into a `BenchResult`: warm-up and measured-run statistics in microseconds, the init time and, with
`--enable_op_profiling=true`, the per-op "Run Order" table.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from hnas.core.errors import HnasError
from hnas.core.schema import Either, Num, OneOf, Said
from latency import defaults

TAIL_LINES = 15


# --------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BenchSettings:
    """Flags of one `benchmark_model` run; stored beside the measurements in a latency table."""

    num_threads: int = 1
    warmup_runs: int = defaults.WARMUP_RUNS
    num_runs: int = defaults.RUNS
    min_secs: float = 0.0
    warmup_min_secs: float = 0.0
    max_secs: float = 150.0
    use_xnnpack: bool = True
    enable_op_profiling: bool = False

    def __post_init__(self) -> None:
        for name, rule in _SETTING_RULES.items():
            found = rule.problem(getattr(self, name), name)
            if found:
                raise HnasError(f"{name}={getattr(self, name)}: {found[1]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every flag."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchSettings:
        """Settings from `to_dict()` output; missing keys take the defaults, unknown keys are an error."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise HnasError(
                f"unknown benchmark setting(s) {', '.join(unknown)}; known: {', '.join(known)} "
                "(was the latency table written by a newer hnas?)"
            )
        values: dict[str, Any] = {}
        for name, value in data.items():
            default = known[name].default
            if isinstance(default, bool):
                if not isinstance(value, bool):
                    raise HnasError(f"benchmark setting {name}={value!r}: write true or false")
                values[name] = value
            elif isinstance(value, bool) or not isinstance(value, int | float):
                raise HnasError(f"benchmark setting {name}={value!r}: write a number")
            elif isinstance(default, int):
                if value != int(value):
                    raise HnasError(f"benchmark setting {name}={value!r}: write a whole number")
                values[name] = int(value)
            else:
                values[name] = float(value)
        return cls(**values)


_SECONDS = Said(Num(at_least=0), "use 0 or more seconds (0 gives exact run counts)")
_SETTING_RULES = {  # checked in this order; each complaint says what to use
    "num_threads": Said(Either(OneOf((-1,)), Num(at_least=1)), "use a positive thread count (or -1 for the default)"),
    "warmup_runs": Said(Num(at_least=0), "use 0 or more warm-up runs"),
    "num_runs": Said(Num(at_least=1), "use at least 1 measured run"),
    "min_secs": _SECONDS,
    "warmup_min_secs": _SECONDS,
    "max_secs": Said(Num(above=0), "use a positive time limit in seconds"),
}


def _flag_number(value: float) -> str:
    """`0`, `150`, `0.5`: a number as a flag value, without needless decimals."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def _flag_bool(value: bool) -> str:
    """`true` or `false`, as benchmark_model spells booleans."""
    return "true" if value else "false"


def benchmark_flags(settings: BenchSettings) -> list[str]:
    """The flags of one `benchmark_model` run, all but --graph; min_secs=0 makes it run exactly num_runs times."""
    s = settings
    flags = [
        f"--num_threads={s.num_threads}",
        f"--warmup_runs={s.warmup_runs}",
        f"--warmup_min_secs={_flag_number(s.warmup_min_secs)}",
        f"--num_runs={s.num_runs}",
        f"--min_secs={_flag_number(s.min_secs)}",
        f"--max_secs={_flag_number(s.max_secs)}",
        f"--use_xnnpack={_flag_bool(s.use_xnnpack)}",
    ]
    if s.enable_op_profiling:
        flags.append("--enable_op_profiling=true")
    return flags


def benchmark_command(binary: str, graph: str, settings: BenchSettings) -> list[str]:
    """argv of `benchmark_model` for `graph`."""
    return [binary, f"--graph={graph}", *benchmark_flags(settings)]


# --------------------------------------------------------------------------------------------- results


@dataclass
class RunStats:
    """One `count=...` statistics line in microseconds; a field is None when that era does not print it."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None

    @property
    def median_or_avg(self) -> float:
        """The median in microseconds where printed, else the mean."""
        value = self.median if self.median is not None else self.avg
        if value is None:
            raise HnasError(f"these statistics (count={self.count}) have neither a median nor an average")
        return value

    @property
    def median_or_avg_ms(self) -> float:
        """`median_or_avg` in milliseconds."""
        return self.median_or_avg / 1000.0

    @property
    def avg_ms(self) -> float | None:
        """The mean in milliseconds, or None."""
        return self.ms("avg")

    @property
    def median_ms(self) -> float | None:
        """The median in milliseconds, or None."""
        return self.ms("median")

    def ms(self, name: str) -> float | None:
        """Field `name` (`avg`, `p95`, ...) in milliseconds, or None when absent."""
        if name == "count" or name not in {f.name for f in fields(self)}:
            raise HnasError(
                f"RunStats has no timing field {name!r}; use one of first curr min max avg std p5 median p95"
            )
        value = getattr(self, name)
        return None if value is None else value / 1000.0


@dataclass
class OpTiming:
    """One row of the op profiler's "Run Order" table (times in milliseconds, percent of the run)."""

    node_type: str
    name: str
    start_ms: float
    first_ms: float
    avg_ms: float
    percent: float
    times_called: int


@dataclass
class BenchResult:
    """What one `benchmark_model` run printed: warm-up and measured statistics, init time, op profile."""

    warmup: RunStats | None
    runs: RunStats
    init_us: float | None = None
    op_profile: list[OpTiming] = field(default_factory=list)
    raw_tail: str = ""


class BenchmarkParseError(HnasError):
    """benchmark_model's output could not be read; the message says what was expected and quotes its tail."""

    def __init__(self, expected: str, text: str = "") -> None:
        self.expected = expected
        self.tail = _tail(text)
        quoted = "\n".join(f"  | {line}" for line in self.tail.splitlines()) or "  | (no output)"
        super().__init__(
            f"could not read benchmark_model output: expected {expected}. "
            f"Check that the binary ran on this graph and that both stderr and stdout were captured. "
            f"Last {TAIL_LINES} lines of the output:\n{quoted}"
        )


def _tail(text: str, n: int = TAIL_LINES) -> str:
    """The last `n` non-blank-trailing lines of `text`."""
    return "\n".join(text.rstrip().splitlines()[-n:])


# --------------------------------------------------------------------------------------------- parser

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf)"
_PREFIXES = (
    # logcat -v threadtime: `11-28 07:17:35.123  1234  1234 I tflite  : `
    re.compile(r"^\d{2}-\d{2}\s+\d{2}:\d{2}:\d{2}\.\d+\s+\d+\s+\d+\s+[VDIWEF]\s+[^:]*?\s*:\s?"),
    # logcat -v brief: `I/tflite  ( 1234): `
    re.compile(r"^[VDIWEF]/[^:(]*?\s*(?:\(\s*\d+\))?\s*:\s?"),
    # logcat as printed by the guide's sample: `I tflite  : `
    re.compile(r"^[VDIWEF]\s+\S+\s*:\s?"),
)
_LEVEL = re.compile(r"^\s*(?:INFO|VERBOSE|WARNING):\s?")
_STAT_LINE = re.compile(r"^count=")
_STAT_PAIR = re.compile(rf"(\w+)=({_NUM})")
_ALL_SAME = re.compile(r"\(all same\)")
_INIT = re.compile(rf"timings in us:.*?\bInit:\s*({_NUM})")
_FATAL = re.compile(r"^(?:ERROR:|Error:|Failed|Benchmarking failed)|\bBenchmarking failed\b")
_STAT_FIELDS = ("first", "curr", "min", "max", "avg", "std", "p5", "median", "p95")
_PROFILE_MARK = "Operator-wise Profiling Info for Regular Benchmark Runs"


def _strip_prefix(line: str) -> str:
    """A line without its logcat prefix and `INFO: `-style level tag; ERROR: is kept for error detection."""
    line = line.rstrip("\r\n")
    for pattern in _PREFIXES:
        match = pattern.match(line)
        if match:
            line = line[match.end() :]
            break
    return _LEVEL.sub("", line, count=1)


def _parse_stat_line(line: str, text: str) -> RunStats:
    """RunStats from `count=N first=... avg=... [p5=... median=... p95=...]` or `count=N curr=X (all same)`."""
    pairs = {key: value for key, value in _STAT_PAIR.findall(line)}
    try:
        count_value = float(pairs["count"])
    except (KeyError, ValueError):
        raise BenchmarkParseError(f"an integer after count= in the statistics line {line.strip()!r}", text) from None
    if count_value != int(count_value) or count_value < 0:
        raise BenchmarkParseError(f"a non-negative integer after count= in {line.strip()!r}", text)
    stats = RunStats(count=int(count_value))
    for name in _STAT_FIELDS:
        if name in pairs:
            setattr(stats, name, float(pairs[name]))
    all_same = _ALL_SAME.search(line) is not None or (stats.count >= 1 and stats.avg is None)
    if stats.count >= 1 and all_same and stats.curr is not None:
        # the tool prints only curr when every sample is equal: the other figures are that value
        for name in ("first", "min", "max", "avg"):
            if getattr(stats, name) is None:
                setattr(stats, name, stats.curr)
        if stats.std is None:
            stats.std = 0.0
    return stats


def _parse_op_row(line: str, columns: list[str], text: str) -> OpTiming:
    """One "Run Order" row; columns are located by the table header."""
    cells = [c.strip() for c in line.split("\t") if c.strip()]
    if len(cells) != len(columns):
        cells = line.split(None, len(columns) - 1)
    if len(cells) != len(columns):
        raise BenchmarkParseError(f"{len(columns)} columns ({' '.join(columns)}) in op-profile row {line!r}", text)
    row = dict(zip(columns, cells))
    try:
        return OpTiming(
            node_type=row["node type"],
            name=row["name"],
            start_ms=float(row["start"]),
            first_ms=float(row["first"]),
            avg_ms=float(row["avg ms"]),
            percent=float(row["%"].rstrip("%")),
            times_called=int(row["times called"]),
        )
    except (KeyError, ValueError):
        raise BenchmarkParseError(
            f"numeric start/first/avg ms/%/times called columns in op-profile row {line!r}", text
        ) from None


def _parse_op_profile(lines: list[str], text: str) -> list[OpTiming]:
    """Rows of the "Run Order" table after "Operator-wise Profiling Info for Regular Benchmark Runs"."""
    try:
        start = next(i for i, line in enumerate(lines) if _PROFILE_MARK in line)
    except StopIteration:
        return []
    i = start + 1
    while i < len(lines) and "Run Order" not in lines[i]:
        i += 1
    i += 1
    if i >= len(lines) or "[node type]" not in lines[i].lower():
        raise BenchmarkParseError(f"a 'Run Order' table with a [node type] header after '{_PROFILE_MARK}'", text)
    columns = [c.strip().strip("[]").lower() for c in re.findall(r"\[[^\]]*\]", lines[i])]
    rows: list[OpTiming] = []
    for line in lines[i + 1 :]:
        if not line.strip() or line.lstrip().startswith("="):
            break
        rows.append(_parse_op_row(line, columns, text))
    return rows


def parse_benchmark_output(text: str) -> BenchResult:
    """Read `benchmark_model` output (stdout and stderr in any order, any era) into a BenchResult."""
    lines = [_strip_prefix(line) for line in text.splitlines()]
    stat_lines = [line.strip() for line in lines if _STAT_LINE.match(line.strip())]
    fatal = [line.strip() for line in lines if _FATAL.search(line.strip())]
    if any("Benchmarking failed" in line for line in fatal) or (fatal and not stat_lines):
        raise BenchmarkParseError(f"a successful run, but the tool reported: {fatal[0]}", text)
    if not stat_lines:
        raise BenchmarkParseError(
            "a 'count=... avg=...' statistics line (is this the output of TFLite benchmark_model?)", text
        )
    runs = _parse_stat_line(stat_lines[-1], text)
    if runs.count == 0:
        raise BenchmarkParseError(
            "at least one measured run, but the tool printed count=0 (raise --num_runs or --max_secs)", text
        )
    if runs.median is None and runs.avg is None:
        raise BenchmarkParseError(f"an avg= or median= figure in the statistics line {stat_lines[-1]!r}", text)
    warmup = _parse_stat_line(stat_lines[0], text) if len(stat_lines) >= 2 else None
    if warmup is not None and warmup.count == 0:
        warmup = None
    init_us = None
    for line in lines:
        match = _INIT.search(line)
        if match:
            init_us = float(match.group(1))
    return BenchResult(
        warmup=warmup,
        runs=runs,
        init_us=init_us,
        op_profile=_parse_op_profile(lines, text),
        raw_tail=_tail(text),
    )
