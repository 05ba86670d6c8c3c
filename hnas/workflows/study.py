"""The HNAS study: does pruning over M stages make the supernet rank better and find better architectures?
I-Supernet (M = 2), P-Supernet (M = 3) and HNAS (M = 4) with the same total supernet epochs (and, with the
continuous schedule, the same learning-rate curve), over several search seeds, against stand-alone training
repeated over S seeds. The paper's Table 4 (tau, rho), Table 5 (the best architecture's stand-alone top-1, with
SPOS-EA on the I-Supernet as the baseline) and Fig. 6 (supernet validation accuracy per epoch), with intervals
and the noise ceiling.

    FOLDER/study_config.json          the settings the searches were started with (a rerun must match them)
    FOLDER/seed<s>/M<M>/              one search run per search seed and M, each resumable step by step
    FOLDER/seed<s>/M2/spos_ea.json    SPOS-EA on that seed's I-Supernet, the same band and budget as CES
    FOLDER/standalone/<key>/seed<t>/  every stand-alone training, shared by all runs that pick the architecture
    FOLDER/study.json                 Table 4 (search seed 0, per M and pick), Table 5, Fig. 6 data, the figure's
                                      data read back from its artists, and per architecture every repeat
    FOLDER/study.png                  the figure: tau per M with the ceiling; one-shot against stand-alone;
                                      Fig. 6; Table 5
    FOLDER/summary.json               the tables without the per-architecture detail, with the command, the
                                      machine, the load average and the wall time of every session
Searches and stand-alone trainings run `jobs` at a time in worker processes of one torch thread each (on a GPU,
all on it). Every piece resumes after a kill; the figures are recomputed.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.core.io import atomic_write_json, read_json
from hnas.rank import (
    by_arch,
    common_space,
    finished_search,
    pick_architectures,
    plot_study,
    rank_run,
    ranked,
    standalone_config,
    standalone_jobs,
)
from hnas.recipes import continuous_lrs, recipe_for, split_epochs
from hnas.runs import run_lut, sha256_file
from hnas.searchrun import RESULTS_SCHEMA, TRAINED_SCHEMA, SearchRun, saved_settings
from hnas.settings import ProxySettings, RankSettings, RunConfig, SearchSettings, StudyDefaults
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from hnas.standalone import train_jobs
from hnas.workflows.fleet import Fleet
from hnas.workflows.search import assemble_search, latency_of, open_search

STUDY_OPTIONS = ("--total-epochs", "--lr")  # the training flags of `hnas study` (what its hints name)
STUDY_STAGES = (2, 3, 4)
NAMES = {2: "I-Supernet (M = 2)", 3: "P-Supernet (M = 3)", 4: "HNAS (M = 4)"}
BASELINE = "SPOS-EA on I-Supernet"


@dataclass
class StudySettings:
    """What the searches share (fixed for a study folder) and how they are ranked (may change between reruns)."""

    space: SearchSpace
    lut: str
    data: str
    total_epochs: int
    lr: float
    band_rel: Band
    ref: Architecture
    population: int
    generations: int
    batch_size: int
    proxy: ProxySettings
    schedule: str = StudyDefaults.schedule
    search_seeds: int = StudyDefaults.search_seeds
    rank: RankSettings = field(default_factory=RankSettings)
    others: tuple[str, ...] = ()  # a fleet's other tables: each held to band_rel x the reference on it

    def __post_init__(self):
        for M in STUDY_STAGES:  # every setting checked before the folder is written: a value out of range is one line
            recipe_for(self.data).assemble(self.space.to_dict(), self.data, self.lut, M, **self.overrides(M, 0))

    def search_record(self) -> dict:
        """The settings the searches depend on (JSON); more search seeds or other ranking settings may be given
        on a rerun."""
        return json.loads(
            json.dumps(
                {
                    "space": self.space.to_dict(),
                    "lut_sha256": _table_identity(self.lut),
                    "data": self.data,
                    "total_epochs": self.total_epochs,
                    "lr": self.lr,
                    "schedule": self.schedule,
                    "band_rel": asdict(self.band_rel),
                    "ref": str(self.ref),
                    "population": self.population,
                    "generations": self.generations,
                    "batch_size": self.batch_size,
                    "proxy": asdict(self.proxy),
                    # a fleet's other tables (absent for one table: a study folder of one table reads as before)
                    **({"others_sha256": [_table_identity(p) for p in self.others]} if self.others else {}),
                }
            )
        )

    @property
    def warmup_epochs(self) -> int:
        """The chain-layer warm-up, the same for every M: a third of HNAS's first stage."""
        return split_epochs(self.total_epochs, max(STUDY_STAGES))[0] // 3

    def overrides(self, stages: int, seed: int) -> dict:
        """What the study sets over its data's recipe for M = `stages` and search seed `seed`: the total epochs
        split 3:2:1 (or 2:1), the first stage at `lr`, later stages at lr / 5 (restart, the paper's kind) or
        continuing one curve (continuous); the run config (initial weights, data order, warm-up) is the same for
        every M of a seed."""
        ep = split_epochs(self.total_epochs, stages)
        lrs = continuous_lrs(ep, self.lr) if self.schedule == "continuous" else [self.lr] + [self.lr / 5] * (stages - 2)
        return {
            "proxy": asdict(self.proxy),
            "train": {
                "epochs": split_epochs(self.total_epochs, 2)[0],
                "lr": self.lr,
                "batch_size": self.batch_size,
                "warmup_epochs": self.warmup_epochs,
                "seed": seed,
            },
            "search": {
                "epochs": ep,
                "lrs": lrs,
                "schedule": self.schedule,
                "population": self.population,
                "generations": self.generations,
                "seed": seed,
            },
        }

    def assemble(self, stages: int, seed: int, opened: Fleet | None = None) -> tuple[RunConfig, SearchSettings, Fleet]:
        """The search of M = `stages` and seed `seed` (`assemble_search`: the data's recipe plus `overrides`;
        `opened`: the tables another search of the study opened)."""
        recipe = recipe_for(self.data)
        extra = self.overrides(stages, seed)
        others = [(path, None, self.band_rel, self.ref) for path in self.others]
        return assemble_search(
            recipe,
            self.space,
            self.data,
            self.lut,
            stages,
            band_rel=self.band_rel,
            ref=self.ref,
            others=others,
            opened=opened,
            **extra,
        )


def _table_identity(lut: str) -> str:
    """What a study records of a table: its file's sha256 (the same table moved or renamed is the same study), or
    the value given where no such file is."""
    return sha256_file(Path(lut)) if Path(lut).is_file() else lut


def _check_folder(folder: Path, s: StudySettings) -> None:
    """A rerun with other search settings than the folder recorded is an error, not a mixture (`_study` records
    them once every search has been checked)."""
    record = s.search_record()
    file = folder / "study_config.json"
    if file.is_file():
        saved = read_json(file)
        if isinstance(saved, dict) and "lut" in saved and "lut_sha256" not in saved:  # recorded by path before
            lut = saved.pop("lut")
            saved["lut_sha256"] = _table_identity(lut) if isinstance(lut, str) else lut
        if saved != record:
            changed = sorted(k for k in set(saved) | set(record) if saved.get(k) != record.get(k))
            raise HnasError(
                f"{folder} was started with other settings ({', '.join(changed)} differ; see {file}): rerun "
                "with those, or give a new study folder (--search-seeds and the ranking options --k, --pick, "
                "--seeds, --epochs, --standalone-lr, --standalone-batch-size, --bootstrap, --draw-seed may change)"
            )


# --- the searches, several at once -------------------------------------------------------------------------


def run_searches(paths: list[Path], jobs: int, log: Callable[[str], None] = print, baseline: set | None = None) -> None:
    """Run (or resume) the search runs in `paths` (each already holds its config.json), `jobs` at a time in
    worker processes with one torch thread each; runs in `baseline` also get SPOS-EA on their final supernet."""
    baseline = baseline or set()
    if jobs <= 1 or len(paths) <= 1:
        for p in paths:
            _search(str(p), p in baseline, log)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from hnas.standalone import _init_worker

    with ProcessPoolExecutor(
        max_workers=min(jobs, len(paths)),
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(os.getpid(), 1),
    ) as pool:
        futures = {pool.submit(_search_in_worker, str(p), p in baseline): p for p in paths}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                problem = f.result()
                if problem is not None:
                    for other in pending:
                        other.cancel()
                    raise HnasError(problem)
                log(f"{_label(futures[f])}: search finished")


def _label(path: Path | str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.name}"


def _search(path: str, baseline: bool, log: Callable[[str], None]) -> None:
    label = _label(path)
    pipe = open_search(path, log=lambda m: log(f"{label}: {m}"), progress=False, options=STUDY_OPTIONS)
    pipe.run()
    if baseline:
        spos_baseline(pipe.folder, pipe.latency, log=lambda m: log(f"{label}: {m}"), constraints=pipe.constraints)


def _search_in_worker(path: str, baseline: bool) -> str | None:
    try:
        _search(path, baseline, lambda m: print(m, flush=True))
        return None
    except HnasError as exc:
        return str(exc)


def spos_baseline(run: SearchRun, latency, log: Callable[[str], None] = print, constraints=None) -> dict:
    """SPOS's evolutionary search on the run's final supernet (for M = 2: the I-Supernet) with the band and the
    budget of its final CES (`population x generations`), its one-shot accuracies shared with the run's
    evaluator; cached in RUN/stageM/spos_ea.json. Returns the record (archive rows, best inside the band).
    `constraints`: the run's constraints on a space (`Pipeline.constraints`: a fleet's bands too); default: the
    run's band and caps."""
    from hnas.ces import Constraints
    from hnas.core.io import atomic_write_json
    from hnas.spos_ea import spos_ea

    out = run.stage(run.stages).dir / "spos_ea.json"
    if out.is_file():
        return read_json(out)
    accuracy, space = run.final_accuracy()
    s = run.search
    log(f"SPOS-EA on the final supernet: population {s.population}, {s.generations} generations, band {s.band} ms")
    res = spos_ea(
        space,
        accuracy,
        latency.for_space(space).predict,
        constraints(space) if constraints is not None else Constraints(s.band, s.max_macs, s.max_params),
        s.population,
        s.generations,
        seed=s.seed + 1000,
    )
    rows = res.archive.to_json(space)
    record = {"archive": rows, "best": max(rows, key=lambda r: r["accuracy"]), "evaluated": len(rows)}
    atomic_write_json(out, record)
    return record


# --- the study --------------------------------------------------------------------------------------------


def run_study(
    folder: str | Path, s: StudySettings, log: Callable[[str], None] = print, progress=None, command: str = ""
) -> dict:
    """Run (or resume) every search and stand-alone training of the study; writes study.json, study.png and
    summary.json in FOLDER and returns the study."""
    folder = Path(folder)
    _check_folder(folder, s)
    seeds = list(range(s.search_seeds))
    paths = {(seed, M): folder / f"seed{seed}" / f"M{M}" for seed in seeds for M in STUDY_STAGES}
    opened = None
    for (seed, M), path in paths.items():  # every run checked (its table, band, memory, data), then its config
        resumed = " (resuming)" if saved_settings(path) is not None else ""  # written, before any worker starts
        log(f"search seed {seed}, M = {M}: supernet epochs {split_epochs(s.total_epochs, M)}{resumed}")
        run, search, fleet = s.assemble(M, seed, opened)
        opened = fleet  # the tables are read once: every search of the study is on the same ones
        open_search(path, run, search, log=log, progress=False, lut=[s.lut, *s.others], fleet=fleet)
    if not (folder / "study_config.json").is_file():
        atomic_write_json(folder / "study_config.json", s.search_record())
    clock = Sessions(folder, command)
    try:
        return _study(folder, s, paths, fleet.latency, log, progress, command, clock)
    finally:
        clock.close()


def _study(folder: Path, s: StudySettings, paths: dict, latency, log, progress, command: str, clock: Sessions) -> dict:
    """The study on its checked searches (`paths`; `latency`: their objective, which prices the band picks)."""
    seeds = list(range(s.search_seeds))
    run_searches(list(paths.values()), s.rank.jobs, log, baseline={paths[(seed, 2)] for seed in seeds})

    # Table 4 on search seed 0: K picks per M; Table 5: every run's best architecture inside the band
    runs = {key: finished_search(path) for key, path in paths.items()}
    searched = {M: SearchRun(paths[(0, M)], *runs[(0, M)][:2]) for M in STUDY_STAGES}
    # band picks: the same K architectures for every M (from what every final space holds), one truth for all
    within = common_space([searched[M].space_of(M - 1) for M in STUDY_STAGES]) if "band" in s.rank.picks else None
    picks = {M: pick_architectures(searched[M], runs[(0, M)][2], s.rank, latency, within) for M in STUDY_STAGES}
    best = {key: _best(path) for key, path in paths.items()}
    spos = {seed: read_json(paths[(seed, 2)] / "stage2" / "spos_ea.json")["best"] for seed in seeds}
    archs = list(
        dict.fromkeys(
            [r["arch"] for M in STUDY_STAGES for rows in picks[M].values() for r in rows]
            + [b["arch"] for b in best.values()]
            + [b["arch"] for b in spos.values()]
        )
    )
    cfg0, search0, _ = runs[(0, 2)]
    tcfg = standalone_config(cfg0.train, search0, s.rank)
    sa_seeds = list(range(s.rank.seeds))
    jobs = standalone_jobs(archs, cfg0, tcfg, sa_seeds, folder / "standalone")
    log(f"stand-alone: {len(archs)} architectures x {len(sa_seeds)} seeds, {s.rank.jobs} at a time")
    trained = by_arch(train_jobs(jobs, s.rank.jobs, log=log, progress=progress))

    results = [
        ranked(paths[(0, M)], *runs[(0, M)][:3], tcfg, sa_seeds, picks[M], trained, s.rank) for M in STUDY_STAGES
    ]
    table4 = study_table(results)
    table5 = table5_rows(best, spos, trained, {key: p for key, p in paths.items()})
    fig6 = supernet_curves(paths)
    figure = plot_study(folder / "study.png", table4, results, fig6, table5)
    sessions = clock.close()
    study = {
        "settings": {**s.search_record(), "search_seeds": s.search_seeds, "rank": asdict(s.rank)},
        "table4": table4,
        "table5": table5,
        "fig6": fig6,
        "figure": figure,  # what study.png shows, read back from its artists
        "runs": results,
    }
    atomic_write_json(folder / "study.json", study)
    summary = {
        "command": command,
        "machine": _machine(),
        "sessions": sessions,
        "wall_s": round(sum(x["wall_s"] for x in sessions), 1),
        "cpu_s": round(sum(x.get("cpu_s", 0.0) for x in sessions), 1),
        **{k: v for k, v in study.items() if k not in ("figure", "runs")},
    }
    atomic_write_json(folder / "summary.json", summary)
    return study


def _best(path: Path) -> dict:
    results = read_json(path / "results.json", RESULTS_SCHEMA, "results")
    if not results["best"]:
        raise HnasError(f"{path} found no architecture inside the band: widen --lat-rel")
    return results["best"][0]


def study_table(results: list[dict]) -> list[dict]:
    """Table 4 with intervals: one row per run and pick (every figure of `hnas.rankstats` and the space sizes)."""
    rows = []
    for r in results:
        for pick, p in r["picks"].items():
            rows.append(
                {
                    "M": r["stages"],
                    "pick": pick,
                    "k": p["k"],
                    "seeds": len(r["seeds"]),
                    "space_size": r["space_size"],
                    "initial_size": r["initial_size"],
                    **{k: v for k, v in p.items() if k not in ("k", "n", "seeds", "architectures")},
                }
            )
    return rows


def table5_rows(best: dict, spos: dict, trained: dict, paths: dict) -> list[dict]:
    """Table 5: per method, per search seed the best architecture inside the band (its latency, one-shot top-1
    and mean stand-alone test top-1 over the protocol's seeds) and the final supernet's validation accuracy; mean
    and sd over search seeds, and the paired difference to the I-Supernet with a 95 % t-interval."""
    from scipy.stats import t as student

    seeds = sorted({seed for seed, _ in best})
    methods = [(NAMES[M], {seed: best[(seed, M)] for seed in seeds}, M) for M in STUDY_STAGES]
    methods.append((BASELINE, spos, 2))
    base = [_standalone(trained, best[(seed, 2)]["arch"]) for seed in seeds]
    rows = []
    for name, chosen, M in methods:
        sa = [_standalone(trained, chosen[seed]["arch"]) for seed in seeds]
        diff = np.array(sa) - np.array(base)
        n = len(seeds)
        half = float(student.ppf(0.975, n - 1) * diff.std(ddof=1) / np.sqrt(n)) if n > 1 else None
        rows.append(
            {
                "method": name,
                "M": M,
                "per_seed": [
                    {
                        "seed": seed,
                        "arch": chosen[seed]["arch"],
                        "latency_ms": chosen[seed]["latency_ms"],
                        "one_shot": chosen[seed]["accuracy"],
                        "standalone_test": sa[i],
                        "supernet_val_acc": _supernet_acc(paths[(seed, M)]),
                    }
                    for i, seed in enumerate(seeds)
                ],
                "standalone_mean": float(np.mean(sa)),
                "standalone_sd": float(np.std(sa, ddof=1)) if n > 1 else None,
                "one_shot_mean": float(np.mean([chosen[seed]["accuracy"] for seed in seeds])),
                "supernet_val_acc_mean": float(np.mean([_supernet_acc(paths[(seed, M)]) for seed in seeds])),
                "vs_i_supernet": float(diff.mean()),
                "vs_i_supernet_ci": None
                if half is None or name == NAMES[2]
                else [diff.mean() - half, diff.mean() + half],
            }
        )
    return rows


def _standalone(trained: dict, arch: str) -> float:
    return float(np.mean([r.test_top1 for r in trained[arch]]))


def _supernet_acc(path: Path) -> float | None:
    """The final supernet's validation accuracy (mean one-shot top-1 of its fixed architectures, last epoch)."""
    M = saved_settings(path)[1].stages
    hist = read_json(path / f"stage{M - 1}" / "trained.json", TRAINED_SCHEMA, "training history")
    return hist[-1]["val_acc"] if hist else None


def supernet_curves(paths: dict) -> dict:
    """Fig. 6: per M and search seed the supernet's validation accuracy after every epoch, epochs counted over
    all training stages, and the epochs after which it was pruned."""
    curves: dict = {}
    for (seed, M), path in sorted(paths.items()):
        epochs, acc, pruned_after = [], [], []
        for k in range(1, M):
            hist = read_json(path / f"stage{k}" / "trained.json", TRAINED_SCHEMA, "training history")
            for h in hist:
                epochs.append(len(epochs) + 1)
                acc.append(h["val_acc"])
            if k < M - 1:
                pruned_after.append(len(epochs))
        curves.setdefault(str(M), {})[str(seed)] = {"epoch": epochs, "val_acc": acc, "pruned_after": pruned_after}
    return curves


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "gpu": gpu,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
    }


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished worker processes (user + system)."""
    import resource

    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class Sessions:
    """FOLDER/sessions.json: every invocation's start, wall time, CPU time (this process and its finished workers:
    on a shared machine, CPU time / cores is what the study would take alone) and load average, this one's kept
    current every `every` seconds by a background thread, so a killed session's wall time is counted too."""

    def __init__(self, folder: Path, command: str, every: float = 10.0):
        import threading

        self.file = folder / "sessions.json"
        self.past = read_json(self.file) if self.file.is_file() else []
        self.started, self.cpu0 = time.time(), _cpu_seconds()
        self.entry = {
            "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self.started)),
            "wall_s": 0.0,
            "cpu_s": 0.0,
            "load_start": [round(x, 2) for x in os.getloadavg()],
            "load_end": None,
            "command": command,
        }
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(every,), daemon=True)
        self._save()
        self._thread.start()

    def _save(self) -> list[dict]:
        self.entry["wall_s"] = round(time.time() - self.started, 1)
        self.entry["cpu_s"] = round(_cpu_seconds() - self.cpu0, 1)
        self.entry["load_end"] = [round(x, 2) for x in os.getloadavg()]
        sessions = [*self.past, self.entry]
        atomic_write_json(self.file, sessions)
        return sessions

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            self._save()

    def close(self) -> list[dict]:
        """Stop the thread; the sessions with this one's final figures (written once)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self.final = self._save()
        return self.final


def rank_search(run: str | Path, settings: RankSettings, log: Callable[[str], None] = print, progress=None) -> dict:
    """Rank a finished search run (RUN/rank/); its latency table prices the space draws when it is still there."""
    saved = saved_settings(run)
    if saved is None:
        raise HnasError(f"{run} is not an HNAS run (no config.json): give a search run folder")
    cfg = run_lut(saved[0], run, missing_ok=True)  # a changed table is refused; a missing one is done without
    latency = latency_of(cfg) if cfg.lut else None
    return rank_run(run, settings, latency=latency, log=log, progress=progress)
