"""An HNAS run folder, read only: what `Pipeline` writes and what report, rank, verify and export read.

    RUN/config.json                 space, data, proxy, LUT, latency band, schedule, search settings
    RUN/stageK/checkpoint.pt        supernet training checkpoint (written every epoch; training resumes)
    RUN/stageK/trained.json         training finished: per-epoch history
    RUN/stageK/evals.json           one-shot accuracies measured so far (the search never pays twice)
    RUN/stageK/search.json          CES archive (arch, accuracy, latency, MACs, params, rank), distribution,
                                    pruned space and its size
    RUN/results.json                per-stage summary, best architectures, final Pareto set

`SearchRun.read(path)` reads config.json once; a stage's files are named by `Stage` and read, checked against
their schemas, when asked for. Nothing here writes, trains or searches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from hnas.core.errors import HnasError
from hnas.core.io import read_json
from hnas.core.schema import POSITIVE_MS, Any, Int, ListOf, MapOf, Num, Obj, Opt, Str
from hnas.settings import RunConfig, SearchSettings, from_dict
from hnas.spec.space import SearchSpace

# --- the run folder's files and their schemas (checked whenever they are read) ------------------------------

_ROW = Obj(
    {
        "arch": Str(nonempty=True),
        "vector": ListOf(Int(0), 1),
        "accuracy": Num(at_least=0),
        "latency_ms": POSITIVE_MS,
        "macs": Num(at_least=0),
        "params": Num(at_least=0),
        "rank": Int(1),
        "generation": Int(0),
        "latencies_ms": ListOf(POSITIVE_MS, 2),  # a fleet's: every table's latency, the objective's first
    },
    optional=frozenset({"latencies_ms"}),
)


def row_latencies(row: dict) -> list[float]:
    """Every table's latency of a run's row (`_ROW`, written by `hnas.ledger.Archive.to_json`), the objective's
    first: one for a single table."""
    return row.get("latencies_ms", [row["latency_ms"]])


def latencies_text(row: dict) -> str:
    """A row's latencies as the tables and the report show them: "3.91 / 12.40" (ms, the objective's first)."""
    return " / ".join(f"{x:.2f}" for x in row_latencies(row))


SEARCH_SCHEMA = Obj(
    {
        "stage": Int(1),
        "searched_space": Obj({}, extra=True),
        "searched_size": Str(nonempty=True),
        "archive": ListOf(_ROW),
        "evaluated": Int(0),
        "accuracy_calls": Int(0),
        "budget": Int(0),
        "exhausted": Opt(Str()),
        "selected": Int(0),
        "distribution": Obj({"n_archs": Int(0), "layers": ListOf(MapOf(Num(at_least=0)))}),
        "pruned_space": Obj({}, extra=True),
        "pruned_size": Str(nonempty=True),
    }
)
TRAINED_SCHEMA = ListOf(
    Obj(
        {
            "epoch": Int(0),
            "loss": Any(),
            "train_acc": Num(at_least=0),
            "lr": Any(),
            "seconds": Any(),
            "val_acc": Opt(Num()),
        }
    )
)
EVALS_SCHEMA = MapOf(Num(at_least=0))
RESULTS_SCHEMA = Obj(
    {
        "stages": ListOf(Obj({"stage": Int(1)}, extra=True), 1),
        "best": ListOf(_ROW),
        "pareto": ListOf(_ROW),
        "latency_band_ms": ListOf(Opt(Num(at_least=0)), 2, 2),
        "lut": Opt(Str()),
        "tables": ListOf(  # a fleet's tables, the objective's first
            Obj(
                {
                    "name": Str(nonempty=True),
                    "lut": Opt(Str()),
                    "precision": Str(),
                    "band_ms": ListOf(Opt(Num(at_least=0)), 2, 2),
                }
            ),
            2,
        ),
    },
    optional=frozenset({"tables"}),
)


def saved_settings(path: str | Path) -> tuple[RunConfig, SearchSettings] | None:
    """The settings in an HNAS run folder's config.json, or None when it has none."""
    run = SearchRun.read(path)
    return None if run is None else (run.config, run.search)


@dataclass(frozen=True)
class Stage:
    """Stage k's files in a run folder."""

    k: int
    dir: Path
    checkpoint: Path
    trained_file: Path
    evals_file: Path
    search_file: Path

    @classmethod
    def of(cls, run: Path, k: int) -> Stage:
        d = run / f"stage{k}"
        return cls(k, d, d / "checkpoint.pt", d / "trained.json", d / "evals.json", d / "search.json")

    def trained(self) -> list[dict] | None:
        """The training history (checked), or None while this stage's supernet is not trained."""
        f = self.trained_file
        return read_json(f, TRAINED_SCHEMA, "training history") if f.is_file() else None

    def search(self) -> dict | None:
        """The search record (checked), or None while this stage has not searched."""
        f = self.search_file
        return read_json(f, SEARCH_SCHEMA, "search record") if f.is_file() else None

    def evals(self) -> dict[str, float]:
        """The one-shot accuracies this stage's search has measured so far (checked; none yet: empty)."""
        f = self.evals_file
        return read_json(f, EVALS_SCHEMA, "one-shot accuracies") if f.is_file() else {}

    def pruned_space(self) -> SearchSpace:
        """The space this stage's search pruned to (what stage k trains and stage k + 1 searches)."""
        rec = read_json(self.search_file, SEARCH_SCHEMA, "search record")
        return SearchSpace.from_dict(rec["pruned_space"], f"{self.search_file}: pruned_space")


class SearchRun:
    """An HNAS run folder and its settings (config.json, read once), read only."""

    def __init__(self, path: str | Path, config: RunConfig, search: SearchSettings):
        self.path = Path(path)
        self.config = config
        self.search = search

    @classmethod
    def read(cls, path: str | Path) -> SearchRun | None:
        """The run in `path`, or None when it has no config.json."""
        cfg_file = Path(path) / "config.json"
        if not cfg_file.is_file():
            return None
        data = read_json(cfg_file)
        if not isinstance(data, dict) or set(data) != {"run", "search"}:
            raise HnasError(f"{cfg_file} is not the config of an HNAS search run (expected 'run' and 'search')")
        where = str(cfg_file)
        return cls(
            path, RunConfig.from_dict(data["run"], where), from_dict(SearchSettings, data["search"], f"{where}, search")
        )

    @property
    def stages(self) -> int:
        return self.search.stages

    @property
    def results_file(self) -> Path:
        return self.path / "results.json"

    def stage(self, k: int) -> Stage:
        """Stage k's files."""
        return Stage.of(self.path, k)

    def space_of(self, k: int) -> SearchSpace:
        """The layer-wise space trained in stage k (stage 1: the initial space; k > 1: pruned in stage k)."""
        return self.deploy_space if k == 1 else self.stage(k).pruned_space()

    @cached_property
    def deploy_space(self) -> SearchSpace:
        return SearchSpace.from_dict(self.config.space)

    def results(self) -> dict:
        """results.json, checked."""
        return read_json(self.results_file, RESULTS_SCHEMA, "results")

    def final_search(self) -> dict:
        """The final stage's search record; one line when the run has not got that far."""
        final = self.stage(self.stages)
        if not final.search_file.is_file():
            raise HnasError(
                f"{self.path} has no final search ({final.search_file}): finish it with `hnas search --out {self.path}`"
            )
        return read_json(final.search_file, SEARCH_SCHEMA, "search record")

    def best_architecture(self):
        """The most accurate architecture inside the band of a finished run."""
        from hnas.spec.arch import parse_arch

        results = self.results()
        if not results["best"]:
            raise HnasError(f"{self.path} has no architecture inside the latency band to verify")
        return parse_arch(results["best"][0]["arch"], self.deploy_space)

    # --- the trained supernets (torch) --------------------------------------------------------------

    @cached_property
    def supernets(self):
        """The run's supernet settings, data and one-shot evaluators (`hnas.runs.SupernetRun`; nothing written)."""
        from hnas.runs import SupernetRun

        return SupernetRun(self.path, self.config)

    def supernet_after(self, k: int):
        """The trained supernet of stage k (from its checkpoint)."""
        return self.supernets.from_checkpoint(self.stage(k).checkpoint)[0]

    def final_supernet(self):
        """The supernet the final search ran on: the one trained in stage M-1, with its (pruned) space."""
        last = self.stages - 1
        if not self.stage(last).trained_file.is_file():
            raise HnasError(f"{self.path} has not finished training its stage {last} supernet: run `hnas search` first")
        return self.supernet_after(last)

    def accuracy_source(self, k: int, trained_stage: int, factory: Callable | None = None) -> Callable:
        """Stage k's accuracy source on the supernet trained in `trained_stage`: `factory(supernet, k)`, or the run's
        one-shot evaluator holding the accuracies stage k has measured already (stageK/evals.json)."""
        supernet = self.supernet_after(trained_stage)
        if factory is not None:
            return factory(supernet, k)
        evaluator = self.supernets.evaluator(supernet, tag=f"stage{trained_stage}")
        evals = self.stage(k).evals()
        evaluator.cache.update({(f"stage{trained_stage}", a): v for a, v in evals.items()})
        return evaluator

    def final_accuracy(self) -> tuple[Callable, SearchSpace]:
        """What the final search ranked with: its accuracy source (one-shot top-1 on the stage M-1 supernet,
        the accuracies it measured already included) and the final (pruned) space it searched."""
        M = self.stages
        if not self.stage(M - 1).trained_file.is_file():
            raise HnasError(f"{self.path} has not finished training its last supernet: finish the search first")
        return self.accuracy_source(M, M - 1), self.space_of(M - 1)
