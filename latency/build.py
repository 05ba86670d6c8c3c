"""Build and refresh latency tables: export what is missing or stale, measure round-robin, save every result.

Repeats are interleaved: round r benchmarks every unfinished entry once before round r+1 starts, so slow
drift of the machine (heat, other load) spreads over all entries instead of biasing a few. An entry's figure
is the median of its repeat medians; entries whose repeat medians disagree get extra repeats after a pause
(`latency.stability`), and are marked unstable when they keep disagreeing. Every repeat is written to the
table's `pending` section at once (atomically), so a killed build reruns only what is missing.

Converting overlaps measuring (`BuildOptions.overlap`) where this machine has a CPU the devices do not measure on:
worker processes pinned to those CPUs convert the entries in order (`Ahead`) while the first rounds measure. A
phone measures them in batches, each of the entries converted (and pushed) by the time the last batch ended. The
host (`Device.streams`: it takes its models as they come; `BuildOptions.beside_host`, off with `--measure-alone`)
measures each model as soon as it is converted, and a round skips models not converted yet once it has `MIN_ROUND`
entries. The rules above are those of a serial build. Otherwise everything is converted first.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.precision import FLOAT32, Precision
from hnas.core.progress import phase
from hnas.spec.parts import Part
from latency import defaults
from latency.bench import BenchSettings
from latency.devices import Device
from latency.export import Exported, Exporter
from latency.lut import Lut, aggregate, check_repeat, now_iso, settings_id
from latency.precision import check_build_target
from latency.stability import Stability


@dataclass
class BuildOptions:
    """How to measure: benchmark settings, repeats per entry, re-measure rule, staleness age, and the precision of
    the table's entries (float32, or int8: full-integer quantized; `latency.precision`)."""

    settings: BenchSettings = field(default_factory=BenchSettings)
    repeats: int = defaults.REPEATS
    stability: Stability = field(default_factory=Stability)
    max_age_s: float | None = None
    max_throttled: int = 5
    precision: str = FLOAT32
    unstable: bool = False  # also re-measure entries marked unstable or measured once (`lut refresh --unstable`)
    overlap: bool = True  # convert in worker processes while the device measures, where it can (`Ahead`)
    beside_host: bool = defaults.CONVERT_BESIDE_HOST  # ... also while this host's pinned core measures

    def __post_init__(self):
        Precision.parse(self.precision)
        if self.repeats < 1:
            raise HnasError("--repeats must be at least 1")


@dataclass
class BuildReport:
    """What a build or refresh did."""

    path: Path
    planned: dict[str, str]  # key -> why it was measured
    measured: list[str]
    remeasured: list[str]
    skipped_fresh: int
    unstable: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    export_s: float = 0.0
    convert_s: float = 0.0
    measure_s: float = 0.0
    exported: int = 0
    cached: int = 0
    throttled: list[str] = field(default_factory=list)


def default_lut_path(device: dict, lut_dir: str | Path = "lut", precision: str = FLOAT32) -> Path:
    """`lut/<device id>-<cpu or model>[-<machine>][-int8].json`, lower case (the host's machine fingerprint is part
    of the name: a table of this CPU model measured on another machine is never written to)."""
    name = f"{device.get('id', 'device')}-{device.get('cpu') or device.get('model', '')}-{device.get('machine', '')}"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return Path(lut_dir) / f"{slug}{Precision.parse(precision).file_suffix}.json"


def device_name(d: dict) -> str:
    """`x86_64 host / AMD EPYC core 1 (machine 1a2b3c4d)`: how messages name a device."""
    machine = (
        f" (machine {d['machine']})" if d.get("machine") else (" (machine unknown)" if d.get("id") == "local" else "")
    )
    return f"{d.get('model')} / {d.get('cpu')} core {d.get('core')}{machine}"


def same_device(a: dict, b: dict) -> bool:
    """Two device fingerprints name the same device and core (for the host: the same machine too)."""
    return all(a.get(k) == b.get(k) for k in ("id", "model", "cpu", "core", "machine"))


def require_same_device(lut: Lut, desc: dict, path: Path) -> None:
    """Refuse, in one line naming the fix, measuring this device (`desc`) into a table of another device."""
    if not same_device(lut.device, desc):
        raise HnasError(
            f"LUT {path} was measured on {device_name(lut.device)}, not on this device ({device_name(desc)}): a table "
            "never mixes two devices' measurements; measure this device into a new table with `hnas lut build "
            "--out NEW.json` (refresh a table on the device it was measured on)"
        )


def open_lut(path: Path, device: Device, settings: dict) -> Lut:
    """Load the table at `path` (checking it belongs to this device) or start a new one."""
    desc, runtime = device.describe(), device.runtime()
    if not path.exists():
        return Lut.new(desc, runtime, settings, path)
    lut = Lut.load(path)
    require_same_device(lut, desc, path)
    check_build_target(lut, Precision.of_settings(settings), path)
    lut.data["device"] = desc
    if lut.data["settings"] != settings or lut.data["runtime"] != runtime:
        lut.data["settings"], lut.data["runtime"] = settings, runtime
    sid = lut.settings_id
    for key in [k for k, p in lut.pending.items() if p.get("settings_id") != sid]:
        del lut.pending[key]  # repeats taken with other settings cannot be combined
    return lut


def _pin_worker(cpus: list[int]) -> None:
    """A conversion worker: on `cpus` only, one thread, quiet, ended with the build that started it (Linux)."""
    import signal

    os.sched_setaffinity(0, cpus)
    os.environ.update(OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the build's to report, in one line
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the build


@functools.cache
def _worker_exporter(cache_dir: str) -> Exporter:
    return Exporter(cache_dir)  # one per worker process: TensorFlow is imported once there


def _export_in_worker(cache_dir: str, part: Part) -> Exported:
    return _worker_exporter(cache_dir).export_part(part)


def conversion_cpus(devices: list[Device], beside_host: bool = defaults.CONVERT_BESIDE_HOST) -> list[int]:
    """The host CPUs conversion may use while `devices` measure: every CPU of this process but the measuring
    cores of the host devices (none on a 1-CPU host, none at all while the host measures unless `beside_host`)."""
    from latency.devices import _host_cpus

    busy = {d.core for d in devices if getattr(d, "core", None) is not None and d.streams}
    if busy and not beside_host:
        return []
    return [c for c in _host_cpus() if c not in busy]


class Ahead:
    """Every item exported (`Exporter.export_part`) in worker processes pinned to `cpus`, in order, from the start:
    `result(key)` waits for one. The workers end with `close` (or with this process)."""

    def __init__(self, items: list[Part], exporter: Exporter, cpus: list[int]):
        workers = min(len(cpus), defaults.CONVERT_WORKERS, len(items)) or 1
        self.pool = ProcessPoolExecutor(
            workers, multiprocessing.get_context("spawn"), initializer=_pin_worker, initargs=(cpus,)
        )
        cache = str(exporter.cache_dir)
        self.futures: dict[str, Future] = {it.key: self.pool.submit(_export_in_worker, cache, it) for it in items}

    def ready(self, key: str) -> bool:
        """Whether the item `key` is converted (or its conversion failed)."""
        return self.futures[key].done()

    def result(self, key: str) -> Exported:
        """The export of the item `key`, once converted (a conversion's error is raised here)."""
        return self.futures[key].result()

    def counts(self) -> tuple[int, int]:
        """(models converted, models found in the cache), once every item is done."""
        done = [f.result() for f in self.futures.values()]
        return sum(not ex.cached for ex in done), sum(ex.cached for ex in done)

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def build(
    device: Device,
    items: list[Part],
    path: str | Path,
    options: BuildOptions,
    exporter: Exporter | None = None,
    progress: Callable | None = None,
    ahead: Ahead | None = None,
) -> BuildReport:
    """Measure every item of `items` that is missing or stale in the table at `path`; returns a report. With
    `ahead` (converting `items` meanwhile) the first round measures each model as soon as it is converted."""
    path = Path(path)
    exporter = exporter or Exporter()
    settings = {**options.settings.to_dict(), "repeats": options.repeats, "core": device.describe().get("core")}
    settings.update(Precision.parse(options.precision).settings())
    lut = open_lut(path, device, settings)
    sid = settings_id(settings, lut.data["runtime"])
    by_key = {it.key: it for it in items}
    if len(by_key) != len(items):
        raise HnasError("duplicate LUT items given")
    if any(it.precision != options.precision for it in items):
        raise HnasError(f"LUT items of another precision than the table's ({options.precision}) given")

    # 1. plan: export (cached) every item, or only derive its cache key when `ahead` converts it, and decide
    # which need measuring
    report = BuildReport(path, {}, [], [], 0)
    exported: dict[str, Exported] = {}
    cache_keys: dict[str, str] = {}

    def converted(key: str) -> Exported:
        """The item's export (waiting for `ahead` to convert it), counted in the report once."""
        if key not in exported:
            ex = exported[key] = ahead.result(key) if ahead is not None else exporter.export_part(by_key[key])
            report.export_s += ex.export_s
            report.convert_s += ex.convert_s
            report.cached += ex.cached
            report.exported += not ex.cached
        return exported[key]

    with phase(progress, "check", len(items)) as advance:
        for it in items:
            key = cache_keys[it.key] = exporter.part_key(it) if ahead is not None else converted(it.key).cache_key
            why = lut.stale_reason(it.key, key, options.max_age_s, options.unstable)
            if why is not None:
                report.planned[it.key] = why
            else:
                report.skipped_fresh += 1
            advance()
    for key, p in list(lut.pending.items()):
        if key in report.planned and p.get("export_key") != cache_keys[key]:
            del lut.pending[key]
    lut.save()
    if not report.planned:
        return report

    # 2. push the models the device needs (a streaming device reads them where they will be; a phone gets each
    # model converted meanwhile with the batch that first measures it)
    remote: dict[str, str] = {}
    key_of: dict[str, str] = {}

    def push(keys: list[str]) -> None:
        new = [k for k in keys if k not in remote]
        streamed = ahead is not None and device.streams
        files = [exporter.path_for(cache_keys[k]) if streamed else converted(k).path for k in new]
        remote.update(zip(new, device.push_many(files)))
        key_of.update((remote[k], k) for k in new)

    if ahead is None or device.streams:
        push(list(report.planned))
    target = dict.fromkeys(report.planned, options.repeats)
    throttle_count: dict[str, int] = {}

    def pending_repeats(key: str) -> list[dict]:
        return lut.pending.get(key, {}).get("repeats", [])

    def settle(key: str) -> bool:
        """Finish `key` when it has its repeats and they agree (or extra repeats are used up)."""
        reps = pending_repeats(key)
        if len(reps) < target[key]:
            return False
        extra = len(reps) - options.repeats
        medians = [r["median_us"] for r in reps]
        if options.stability.again(medians, extra):
            target[key] = len(reps) + 1
            if key not in report.remeasured:
                report.remeasured.append(key)
            return False
        verdict = options.stability.verdict(medians)
        _finish(lut, by_key[key], reps, converted(key), sid, max(0, extra), verdict)
        report.measured.append(key)
        if not verdict["stable"]:
            report.unstable.append(key)
        return True

    for key in report.planned:  # repeats finished before an interruption
        settle(key)
    lut.save()

    # 3. measure round-robin until every entry has its repeats
    t0 = time.perf_counter()
    total = sum(max(0, target[k] - len(pending_repeats(k))) for k in report.planned if k not in report.measured)
    with phase(progress, "measure", total) as advance:

        def record(measurements) -> None:
            """Store each repeat as it comes (a throttled run is not counted: measured again next round)."""
            for m in measurements:
                key = key_of.get(m.model)
                if key is None:
                    raise HnasError(f"the device reported a model it was not asked to run: {m.model}")
                if m.result is None:
                    raise HnasError(f"benchmark of {key} failed (exit {m.rc}); last lines:\n{m.failure_tail()}")
                if m.throttled is not None and throttle_count.get(key, 0) < options.max_throttled:
                    throttle_count[key] = throttle_count.get(key, 0) + 1
                    report.throttled.append(f"{key}: {m.throttled}")
                    device.cool_down()
                    continue
                runs = m.result.runs
                rep = {
                    "count": runs.count,
                    "avg_us": runs.avg,
                    "std_us": runs.std or 0.0,
                    "min_us": runs.min if runs.min is not None else runs.avg,
                    "median_us": runs.median_or_avg,
                }
                if m.conditions:
                    rep["conditions"] = m.conditions
                check_repeat(rep, key)  # what is stored must load: the writer asks the reader's schema first
                entry = lut.pending.setdefault(key, {"repeats": [], "settings_id": sid, "export_key": cache_keys[key]})
                entry["repeats"].append(rep)
                before = target[key]
                settle(key)
                lut.save()
                if target[key] > before:
                    advance(total_delta=target[key] - before)
                advance()

        rounds = 0
        while True:
            todo = [k for k in report.planned if k not in report.measured]
            if not todo:
                break
            if rounds >= options.repeats and all(len(pending_repeats(k)) >= options.repeats for k in todo):
                options.stability.pause()  # only entries whose repeats disagree are left: let a disturbance pass
            rounds += 1
            for batch in _round(todo, ahead, device.streams, converted, push):
                models = [remote[k] for k in batch] if isinstance(batch, list) else (remote[k] for k in batch)
                record(device.measure(models, options.settings))
            busy = device.busy()  # what competed with this round on the device, judged during the round
            if busy and busy not in report.busy:
                report.busy.append(busy)
    report.measure_s = time.perf_counter() - t0
    return report


def _round(todo: list[str], ahead: Ahead | None, streams: bool, converted: Callable, push: Callable):
    """The batches of one round over the entries `todo`, in order: all of them at once when every model is
    converted; while `ahead` converts, a streaming device gets the models as each is converted (one batch, an
    iterator), another device (a phone) one batch per wait: the entries converted (and pushed) by then."""
    if ahead is None or all(ahead.ready(k) for k in todo):
        push(todo)
        yield todo
    elif streams:
        yield _as_converted(todo, ahead, converted)
    else:
        left = list(todo)
        while left:
            converted(left[0])  # wait for the next one in order, then take every one ready by then
            batch = [k for k in left if ahead.ready(k)]
            push(batch)
            yield batch
            left = [k for k in left if k not in batch]


def _as_converted(todo: list[str], ahead: Ahead, converted: Callable):
    """A streaming round while `ahead` converts: each entry of `todo` as it is converted, in order, until the round
    has `MIN_ROUND` entries; from there an entry not converted yet waits for the next round (the measuring core
    does not idle while other entries still need repeats, and an entry's repeats stay `MIN_ROUND` apart)."""
    n = 0
    for k in todo:
        if n < defaults.MIN_ROUND or ahead.ready(k):
            converted(k)
            n += 1
            yield k  # pushed before: the host reads each model where it will be


def _conditions(reps: list[dict]) -> dict | None:
    """Lowest pinned-core frequency and highest temperature seen around an entry's repeats."""
    freqs = [c["freq_khz"] for r in reps for c in r.get("conditions", {}).values() if c.get("freq_khz")]
    temps = [c["temp_mc"] for r in reps for c in r.get("conditions", {}).values() if "temp_mc" in c]
    if not freqs and not temps:
        return None
    return {
        "freq_khz_min": min(freqs) if freqs else None,
        "freq_khz_max": max(freqs) if freqs else None,
        "temp_c_max": max(temps) / 1000 if temps else None,
    }


def _finish(lut: Lut, item: Part, reps: list[dict], ex, sid: str, extra: int, verdict: dict) -> None:
    lut.entries[item.key] = {
        "spec": item.to_spec(),
        **aggregate(reps),
        "measured_at": now_iso(),
        "model_sha256": ex.sha256,
        "export_key": ex.cache_key,
        "settings_id": sid,
        "source": "measured",
        "remeasured": extra,
        **verdict,
        "conditions": _conditions(reps),
    }
    lut.pending.pop(item.key, None)


def build_many(
    jobs: list[tuple[Device, Path]],
    items: list[Part],
    options: BuildOptions,
    exporter: Exporter,
    progress=None,
    performance: bool = False,
) -> dict[str, BuildReport]:
    """Build one LUT per (device, path) job; several phones measure in parallel threads (one bar each).

    Every model is converted once (the cache serves every device): in worker processes on the CPUs the devices do
    not measure on while the first round measures (`Ahead`) when `options.overlap` and such a CPU exists; else
    first, in this thread (conversion is not thread-safe). Each report counts those
    conversions. A device's error is raised after the others finish, named after the device when there are
    several; an interrupt is raised as KeyboardInterrupt. Before anything is converted: each device is reached, a
    table of another device refused, the parts' memory checked and each table locked (a second build of the same
    table is refused, naming the first one's process)."""

    from hnas.core.io import exclusive
    from latency.export import require_parts_fit

    for dev, path in jobs:  # every device is reached (and probed) before anything is converted or measured
        desc = dev.describe()
        if path.exists():  # a table of another device is refused before minutes of conversion
            require_same_device(Lut.load(path), desc, path)
    require_parts_fit(items, "the latency table")
    with contextlib.ExitStack() as held:
        for _, path in sorted(jobs, key=lambda job: str(job[1])):  # one build per table at a time
            held.enter_context(exclusive(path, "a latency table being built"))
        devices = [dev for dev, _ in jobs]
        cpus = conversion_cpus(devices, options.beside_host) if options.overlap else []
        if cpus and all(exporter.path_for(exporter.part_key(it)).is_file() for it in items):
            cpus = []  # everything converted before: no workers to start (a refresh, a demo rerun)
        ahead = Ahead(items, exporter, cpus) if cpus else None
        if ahead is not None:
            held.callback(ahead.close)
        converted = cached = 0
        if ahead is None:
            with phase(progress, "export", len(items)) as advance:
                for it in items:
                    ex = exporter.export_part(it)
                    converted += not ex.cached
                    cached += ex.cached
                    advance()
        reports: dict[str, BuildReport] = {}
        errors: dict[str, BaseException] = {}

        def work(dev: Device, path: Path) -> None:
            try:
                try:
                    with dev.performance() if performance else contextlib.nullcontext():
                        prefix = f"{dev.name} " if len(jobs) > 1 and progress else ""
                        bar = (lambda label, total: progress(prefix + label, total)) if progress else None
                        report = build(dev, items, path, options, exporter, bar, ahead)
                        report.exported, report.cached = (converted, cached) if ahead is None else ahead.counts()
                        reports[dev.name] = report
                finally:
                    dev.close()
            except BaseException as exc:  # noqa: BLE001 - raised below, after the other devices finish
                errors[dev.name] = exc

        if len(jobs) == 1:
            work(*jobs[0])
        else:
            threads = [threading.Thread(target=work, args=job, daemon=True) for job in jobs]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if errors:
            name, exc = next(iter(errors.items()))
            if isinstance(exc, HnasError) and len(jobs) > 1:
                raise type(exc)(f"{name}: {exc}") from None
            raise exc
        return reports


def report_line(report: BuildReport) -> str:
    """One line on what a build did."""
    line = (
        f"{report.path}: measured {len(report.measured)} entries ({len(report.remeasured)} with extra repeats), "
        f"{report.skipped_fresh} already fresh; converted {report.exported} models, {report.cached} from the cache"
    )
    if report.throttled:
        line += f"; {len(report.throttled)} throttled runs re-measured"
    if report.unstable:
        line += (
            f"; {len(report.unstable)} entries stayed unstable or were measured once (marked in the table): "
            f"{', '.join(report.unstable[:3])}"
        )
    if report.busy:
        line += (
            f"; the host was busy ({report.busy[0]}): re-measure on a quiet machine with "
            f"`hnas lut refresh --lut {report.path} --max-age 0s`"
        )
    if report.measured:
        import statistics

        line += f"; why: {', '.join(statistics.multimode(report.planned.values()))}"
    return line
