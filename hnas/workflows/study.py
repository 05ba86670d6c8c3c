"""The ranking study (paper Table 4, Fig. 5): I-Supernet (M = 2), P-Supernet (M = 3) and HNAS (M = 4) with the
same total supernet epochs on the same latency table, each ranked against stand-alone training repeated over S
seeds, with bootstrap intervals and the noise ceiling (`hnas.rank`, `hnas.rankstats`).

    FOLDER/study_config.json     the settings the three searches were started with (a rerun must match them)
    FOLDER/M2, M3, M4/           the search runs, each with its rank/ folder
    FOLDER/study.json            the table (per M and pick: tau, rho, intervals, ceiling, space size), what the
                                 figure shows and the runs (per architecture: one-shot, stand-alone repeats)
    FOLDER/study.png             tau per M with intervals and the ceiling; one-shot against stand-alone

Every piece resumes: the searches step by step, each stand-alone training per epoch; the figures are recomputed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hnas.errors import HnasError
from hnas.io import atomic_write_json
from hnas.pipeline import saved_settings
from hnas.rank import plot_study, rank_run
from hnas.recipes import split_epochs
from hnas.runs import run_lut
from hnas.settings import Band, ProxySettings, RankSettings, RunConfig, SearchSettings, TrainConfig
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from hnas.train import read_json
from hnas.workflows.search import latency_of, open_search

STUDY_STAGES = (2, 3, 4)


@dataclass
class StudySettings:
    """What the three searches and the stand-alone trainings share."""

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
    rank: RankSettings = field(default_factory=RankSettings)

    def search_record(self) -> dict:
        """The settings the searches depend on (JSON); the ranking settings may change between reruns."""
        return json.loads(
            json.dumps(
                {
                    "space": self.space.to_dict(),
                    "lut": self.lut,
                    "data": self.data,
                    "total_epochs": self.total_epochs,
                    "lr": self.lr,
                    "band_rel": asdict(self.band_rel),
                    "ref": str(self.ref),
                    "population": self.population,
                    "generations": self.generations,
                    "batch_size": self.batch_size,
                    "proxy": asdict(self.proxy),
                }
            )
        )


def _check_folder(folder: Path, s: StudySettings) -> None:
    """Record the searches' settings on the first run; a rerun with other ones is an error, not a mixture."""
    record = s.search_record()
    file = folder / "study_config.json"
    if file.is_file():
        saved = read_json(file)
        if saved != record:
            changed = sorted(k for k in set(saved) | set(record) if saved.get(k) != record.get(k))
            raise HnasError(
                f"{folder} was started with other settings ({', '.join(changed)} differ; see {file}): rerun "
                "with those, or give a new --study folder (the ranking options --k, --pick, --seeds, --epochs, "
                "--bootstrap and --draw-seed may change)"
            )
        return
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(file, record)


def run_study(folder: str | Path, s: StudySettings, log: Callable[[str], None] = print, progress=None) -> dict:
    """Run (or resume) M = 2, 3, 4 and rank each; writes FOLDER/study.json and study.png, returns the study."""
    folder = Path(folder)
    _check_folder(folder, s)
    base = RunConfig(space=s.space.to_dict(), data=s.data, proxy=s.proxy, lut=s.lut)
    band = s.band_rel.scaled(latency_of(base).predict_arch(s.ref))
    results = []
    for M in STUDY_STAGES:
        ep = split_epochs(s.total_epochs, M)
        resumed = " (resuming)" if saved_settings(folder / f"M{M}") is not None else ""
        log(f"M = {M}: supernet epochs {ep}{resumed}")
        search = SearchSettings(
            stages=M,
            epochs=ep,
            lrs=[s.lr] + [s.lr / 5] * (M - 2),
            population=s.population,
            generations=s.generations,
            band=band,
            band_rel=s.band_rel,
            ref=str(s.ref),
        )
        train = TrainConfig(epochs=ep[0], lr=s.lr, batch_size=s.batch_size, warmup_epochs=ep[0] // 3)
        run = RunConfig(space=base.space, data=s.data, proxy=s.proxy, train=train, lut=s.lut)
        pipe = open_search(folder / f"M{M}", run, search, log=log, lut=s.lut)  # a resumed run: its table, moved
        pipe.run()
        results.append(rank_run(pipe.path, s.rank, lr=s.lr, latency=pipe.latency, log=log, progress=progress))
    table = study_table(results)
    figure = plot_study(folder / "study.png", table, results)
    study = {
        "settings": {**s.search_record(), "rank": asdict(s.rank)},
        "table": table,
        "figure": figure,  # what study.png shows, read back from its artists
        "runs": results,
    }
    atomic_write_json(folder / "study.json", study)
    return study


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


def rank_search(run: str | Path, settings: RankSettings, log: Callable[[str], None] = print, progress=None) -> dict:
    """Rank a finished search run (RUN/rank/); its latency table prices the space draws when it is still there."""
    saved = saved_settings(run)
    if saved is None:
        raise HnasError(f"{run} is not an HNAS run (no config.json): give a search run folder")
    cfg = run_lut(saved[0], run, missing_ok=True)  # a changed table is refused; a missing one is done without
    latency = latency_of(cfg) if cfg.lut else None
    return rank_run(run, settings, latency=latency, log=log, progress=progress)
