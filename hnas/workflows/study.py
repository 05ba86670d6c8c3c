"""The ranking study (paper Table 4, Fig. 5): I-Supernet (M = 2), P-Supernet (M = 3) and HNAS (M = 4) with the
same total supernet epochs on the same latency table, each ranked against stand-alone training."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hnas.io import atomic_write_json
from hnas.pipeline import split_epochs
from hnas.rank import rank_run, scatter
from hnas.settings import Band, ProxySettings, RunConfig, SearchSettings, TrainConfig
from hnas.spec.arch import Architecture
from hnas.spec.space import SearchSpace
from hnas.workflows.search import latency_of, open_search


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
    k: int
    standalone_epochs: int | None = None


def run_study(folder: str | Path, s: StudySettings, log: Callable[[str], None] = print, progress=None) -> dict:
    """Run (or resume) M = 2, 3, 4 and rank each; writes FOLDER/study.json and study.png, returns the table."""
    folder = Path(folder)
    base = RunConfig(space=s.space.to_dict(), data=s.data, proxy=s.proxy, lut=s.lut)
    band = s.band_rel.scaled(latency_of(base).predict_arch(s.ref))
    results = []
    for M in (2, 3, 4):
        ep = split_epochs(s.total_epochs, M)
        log(f"M = {M}: supernet epochs {ep}")
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
        open_search(folder / f"M{M}", run, search, log=log).run()
        results.append(
            rank_run(folder / f"M{M}", s.k, s.standalone_epochs or s.total_epochs, lr=s.lr, log=log, progress=progress)
        )
    table = [
        {
            "M": r["stages"],
            "kendall_tau": r["kendall_tau"],
            "spearman_rho": r["spearman_rho"],
            "space_size": r["space_size"],
            "k": r["k"],
        }
        for r in results
    ]
    atomic_write_json(folder / "study.json", {"table": table, "runs": results})
    scatter(folder / "study.png", results)
    return {"table": table, "runs": results}
