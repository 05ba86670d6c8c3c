"""The M-stage HNAS pipeline (paper Algorithm 1), resumable step by step.

    stage 1        train the initial supernet on the full layer-wise space
    stage k        (2 <= k <= M-1) CES on the stage k-1 supernet -> operation distribution over the
                   architectures of nondomination rank < R -> prune ops with p < P_th -> fine-tune the pruned
                   supernet from the weights it inherits
    stage M        CES on the stage M-1 supernet -> the most accurate architectures inside the latency band,
                   and the final Pareto set

Run folder: `hnas.searchrun` (`SearchRun` reads what this module writes).

Under torchrun the supernet trains with DDP (hnas.train) and each search generation's accuracy evaluations are
split across the ranks (hnas.dist.SharedAccuracy); rank 0 alone writes these files and prints, and whether a step
is done is rank 0's answer, so every rank takes the same steps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from hnas.ces import Constraints, ces, require_feasible
from hnas.core.io import atomic_write_json, read_json
from hnas.core.progress import bars, phase, standalone
from hnas.dist import exists, is_main, shared, write_on_main
from hnas.prune import estimate, prune, select_by_rank
from hnas.runs import pin_fleet, pin_lut
from hnas.searchrun import SEARCH_SCHEMA, SearchRun
from hnas.settings import FIXED_ARCHS_SEED, RunConfig, SearchSettings, TrainConfig
from hnas.spec.modules import zero_init_residuals
from hnas.spec.space import SearchSpace
from hnas.supernet import Supernet
from hnas.train import (
    TRAINING_OPTIONS,
    chance_hint,
    default_device,
    train,
)

AccuracyFactory = Callable[[Supernet, int], Callable]


class Pipeline:
    """An HNAS run in a folder. It is handed its latency objective (`latency`: a model with `predict(vectors)` and
    `for_space(space)`, e.g. a LUT predictor of the deployment space) and, optionally, an accuracy factory; it
    opens no latency table itself. A fleet search is also handed its other tables (`more`: one model each, with a
    name, in the order of `search.fleet`, whose bands they are held to) and the first table's `name`."""

    def __init__(
        self,
        path: str | Path,
        run: RunConfig,
        search: SearchSettings,
        latency,
        accuracy_factory: AccuracyFactory | None = None,
        log: Callable[[str], None] = print,
        progress: bool = True,
        options: tuple[str, ...] = TRAINING_OPTIONS,
        more: tuple[tuple[str, object], ...] = (),
        name: str = "the latency table",
    ):
        if len(more) != len(search.fleet):
            raise ValueError(f"{len(search.fleet)} other tables in the settings, {len(more)} latency models given")
        self.more, self.name = tuple(more), name
        self.path = Path(path)
        self.options = options  # the flags of the command running this search: hints name only those
        cfg_file = self.path / "config.json"
        self.search = search
        self.latency = latency
        if not exists(cfg_file):
            run = pin_lut(run)  # a new run records its LUT as an absolute path with its sha256
            search = self.search = pin_fleet(search)  # and its other tables so
        self.folder = SearchRun(self.path, run, search)  # what this pipeline writes, read back
        self.sn = self.folder.supernets  # its config lives inside this run's config.json
        self.accuracy_factory = accuracy_factory
        self.log = log if is_main() else _silent
        self.progress = progress and is_main()
        if not exists(cfg_file):  # every input is checked before anything is written
            self.sn.require_memory()
            line = require_feasible(self.sn.deploy_space, latency, self.constraints(self.sn.deploy_space))
            self.sn.data()
            if line:
                self.log(f"latency band{'s' if self.more else ''} {self.bands_text()}: {line}")
            write_on_main(lambda: atomic_write_json(cfg_file, {"run": run.to_dict(), "search": asdict(search)}))

    # --- helpers ----------------------------------------------------------------------------------

    def stage_dir(self, k: int) -> Path:
        """Stage k's folder, made when missing (what the steps write into)."""
        d = self.folder.stage(k).dir
        d.mkdir(parents=True, exist_ok=True)
        return d

    def predictor(self, space: SearchSpace):
        """The latency objective on `space` (a pruned one, in later stages)."""
        return self.latency.for_space(space)

    def constraints(self, space: SearchSpace) -> Constraints:
        """The search's constraints on `space`: its band and caps, and every other table's band priced on `space`."""
        s = self.search
        names = [self.name, *(name for name, _ in self.more)]
        others = [model.for_space(space) for _, model in self.more]
        return Constraints.of_tables(names, s.bands(), others, s.max_macs, s.max_params)

    def bands_text(self) -> str:
        """`[7.00, 9.00] ms`, or for a fleet `[7.00, 9.00] ms on A, [-, 5.00] ms on B`: the bands as lines quote."""
        if not self.more:
            return f"{self.search.band} ms"
        names = [self.name, *(n for n, _ in self.more)]
        bands = self.search.bands()
        return ", ".join(f"{b} ms on {n}" for b, n in zip(bands, names, strict=True))

    # --- steps ------------------------------------------------------------------------------------

    def _train(self, k: int, supernet: Supernet, space: SearchSpace) -> None:
        d = self.stage_dir(k)
        if exists(d / "trained.json"):
            return
        base = self.sn.config.train
        lr, lr_end = self.search.stage_lr(k)
        cfg = TrainConfig(
            **{
                **asdict(base),
                "epochs": self.search.epochs[k - 1],
                "lr": lr,
                # a warm-up starts a supernet from scratch; later stages fine-tune what stage 1 trained
                "warmup_epochs": max(0, min(base.warmup_epochs, self.search.epochs[0] - 1)) if k == 1 else 0,
            }
        )
        self.log(
            f"stage {k}: training the supernet on {space.size():.3g} architectures for {cfg.epochs} epochs "
            f"(lr {cfg.lr:g} -> {lr_end:g})" + (", weights inherited" if k > 1 else "")
        )
        from hnas.train import PathSampler

        sampler = PathSampler(supernet.space, cfg.seed + k)
        fixed = _fixed_archs(space, self.sn.config.proxy.val_archs)

        def on_epoch(stats):
            if not fixed:
                return None
            return float(np.mean(shared(self.sn.evaluator(supernet, tag=f"s{k}e{stats.epoch}"))(fixed)))

        with bars() if self.progress else contextlib.nullcontext() as factory:
            history = train(
                supernet,
                self.sn.data().train,
                cfg,
                d / "checkpoint.pt",
                sampler,
                factory,
                on_epoch,
                extra_state=lambda: {"deploy_space": space.to_dict()},
                lr_end=lr_end,
            )
        write_on_main(lambda: atomic_write_json(d / "trained.json", [asdict(h) for h in history]))
        hint = chance_hint(history, self.sn.data().num_classes, cfg, self.options, first=k == 1)
        if hint:
            self.log(hint)

    def _search(self, k: int, trained_stage: int) -> dict:
        """CES on the supernet trained in `trained_stage`; cached in stage k's search.json."""
        d = self.stage_dir(k)
        out = d / "search.json"
        if exists(out):
            return read_json(out, SEARCH_SCHEMA, "search record")
        space = self.folder.space_of(trained_stage)
        evals_file = d / "evals.json"
        acc_fn = shared(self.folder.accuracy_source(k, trained_stage, self.accuracy_factory))
        cache = None if self.accuracy_factory is not None else acc_fn.cache
        pred = self.predictor(space)
        s = self.search
        self.log(
            f"stage {k}: CES over {space.size():.3g} architectures, population {s.population}, "
            f"{s.generations} generations, latency {self.bands_text()}"
        )
        with phase(standalone if self.progress else None, f"stage {k} search", s.generations) as advance:

            def on_generation(gen, ledger):
                if cache is not None and is_main():  # no one reads it before the next run: no barrier
                    atomic_write_json(evals_file, {a: v for (_, a), v in cache.items()})
                advance()

            result = ces(
                space,
                acc_fn,
                pred,
                self.constraints(space),
                s.population,
                s.generations,
                s.seed + k,
                on_generation,
                prescreen=s.prescreen,
            )
        self.log(f"stage {k}: {result.note}")
        archive = result.archive
        selected = select_by_rank(np.array(archive.vectors), archive.ranks, s.max_rank)
        dist = estimate(space, selected)
        pruned = prune(dist, s.p_th, name=f"{space.name.split('@')[0]}@stage{k}")
        record = {
            "stage": k,
            "searched_space": space.to_dict(),
            "searched_size": str(space.size()),
            "archive": archive.to_json(space),
            "evaluated": len(archive),
            "accuracy_calls": result.accuracy_calls,
            "budget": result.budget,
            "exhausted": result.exhausted,
            "selected": int(len(selected)),
            "distribution": dist.to_json(),
            "pruned_space": pruned.to_dict(),
            "pruned_size": str(pruned.size()),
        }
        write_on_main(lambda: atomic_write_json(out, record))
        return record

    def run(self) -> dict:
        """Run (or resume) every stage; returns the results (also written to RUN/results.json)."""
        self.sn.require_memory()  # a run resumed on another machine is checked against that one
        M = self.search.stages
        # stage 1
        d1 = self.stage_dir(1)
        if not exists(d1 / "trained.json"):
            s1 = self.folder.space_of(1)
            with torch.random.fork_rng():  # the initial weights follow --seed, whatever process draws them
                torch.manual_seed(self.sn.config.train.seed)
                net = Supernet(self.sn.proxy(s1))
            if not exists(d1 / "checkpoint.pt"):
                zero_init_residuals(net)
            self._train(1, net.to(default_device()), s1)
        # stages 2..M-1
        for k in range(2, M):
            self._search(k, trained_stage=k - 1)
            pruned = self.folder.space_of(k)
            if not exists(self.stage_dir(k) / "trained.json"):
                if exists(self.stage_dir(k) / "checkpoint.pt"):
                    net = Supernet(self.sn.proxy(pruned)).to(default_device())  # train() loads the checkpoint
                else:
                    net = self.folder.supernet_after(k - 1)
                    net.prune(self.sn.proxy(pruned))
                self._train(k, net, pruned)
        final = self._search(M, trained_stage=M - 1)
        return self._results(final)

    def _results(self, final: dict) -> dict:
        M = self.search.stages
        rows = final["archive"]
        best = sorted(rows, key=lambda r: -r["accuracy"])[: self.search.top]
        pareto = sorted([r for r in rows if r["rank"] == 1], key=lambda r: r["latency_ms"])
        stages = []
        for k in range(1, M + 1):
            stage = self.folder.stage(k)
            self.stage_dir(k)
            entry = {"stage": k}
            hist = stage.trained()
            if hist is not None:
                entry["space_size"] = str(self.folder.space_of(k).size())
                entry["supernet_val_acc"] = hist[-1]["val_acc"] if hist else None
                entry["epochs"] = len(hist)
            rec = stage.search()
            if rec is not None:
                srows = rec["archive"]
                top = max(srows, key=lambda r: r["accuracy"]) if srows else None
                entry.update(
                    {
                        "searched_size": rec["searched_size"],
                        "pruned_size": rec["pruned_size"],
                        "evaluated": rec["evaluated"],
                        "budget": rec.get("budget"),
                        "exhausted": rec.get("exhausted"),
                        "best_arch": top["arch"] if top else None,
                        "best_accuracy": top["accuracy"] if top else None,
                        "best_latency_ms": top["latency_ms"] if top else None,
                    }
                )
            stages.append(entry)
        results = {
            "stages": stages,
            "best": best,
            "pareto": pareto,
            "latency_band_ms": [self.search.band.lo, self.search.band.hi],
            "lut": self.sn.config.lut,
        }
        if self.more:  # a fleet: every table, the objective's first (each row's `latencies_ms` follows this order)
            luts = self.search.luts(self.sn.config.lut)
            bands = self.search.bands()
            models = [self.latency, *(m for _, m in self.more)]
            results["tables"] = [
                {"name": n, "lut": lut, "precision": str(getattr(m, "precision", None)), "band_ms": [b.lo, b.hi]}
                for n, lut, m, b in zip([self.name, *(n for n, _ in self.more)], luts, models, bands, strict=True)
            ]
        write_on_main(lambda: atomic_write_json(self.path / "results.json", results))
        return results


def _silent(_: str) -> None:
    """The log of ranks other than 0."""


def _fixed_archs(space: SearchSpace, n: int):
    from hnas.spec.arch import sample

    return sample(space, n, np.random.default_rng(FIXED_ARCHS_SEED)) if n else []
