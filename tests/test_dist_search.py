"""Distributed search on CPUs (gloo): each generation's evaluations are split across the ranks and gathered, the
search comes out as one process's, and rank 0 alone writes the run files."""

import json
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hnas.ces import Constraints, ces
from hnas.core.band import Band
from hnas.core.errors import HnasError
from hnas.data import load_data
from hnas.dist import SharedAccuracy, gather, is_main, shared, world_size
from hnas.evaluate import OneShotEvaluator
from hnas.supernet import Supernet, proxy_space
from tests.harness import TORCHRUN, Table, enumerable_space, kill_and_resume, kill_tree, run_cli
from tests.tiny import tiny_space

POPULATION, GENERATIONS = 9, 3  # 9 is odd: every generation leaves one architecture of imbalance


def _search(rank: int, world: int, tmp: str) -> None:
    """CES with one-shot accuracies of a real supernet, split over `world` gloo processes (1: no process group)."""
    if world > 1:
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
        dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=world)
    torch.set_num_threads(1)
    space = proxy_space(enumerable_space(), 16, 1.0, 10)
    torch.manual_seed(0)
    net = Supernet(space)
    data = load_data("digits", 16, 0, None)
    source = OneShotEvaluator(net, data.val, data.train, bn_images=64, batch_size=128, state_tag="t")
    acc = SharedAccuracy(source)
    table = Table(space)
    res = ces(space, acc, table.latency, Constraints(Band(4.0, 8.0)), POPULATION, GENERATIONS, seed=3)
    rows = {
        "world": world_size(),
        "evaluated": acc.evaluated,
        "source_evaluated": source.evaluated,
        "cache": len(acc.cache),
        "archive": [[v.tolist(), a] for v, a in zip(res.archive.vectors, res.archive.accuracy)],
        "ranks": res.archive.ranks.tolist(),
        "gathered": gather(rank),
    }
    with open(f"{tmp}/rank{rank}-of{world}.json", "w") as fh:
        json.dump(rows, fh)
    if world > 1:
        dist.destroy_process_group()


def test_two_gloo_ranks_split_each_generation_and_find_what_one_process_finds(tmp_path):
    mp.spawn(_search, args=(1, str(tmp_path)), nprocs=1, join=True)
    mp.spawn(_search, args=(2, str(tmp_path)), nprocs=2, join=True)
    one = json.loads((tmp_path / "rank0-of1.json").read_text())
    r0, r1 = (json.loads((tmp_path / f"rank{r}-of2.json").read_text()) for r in (0, 1))
    assert one["world"] == 1 and r0["world"] == r1["world"] == 2 and r1["gathered"] == [0, 1]
    assert one["evaluated"] == POPULATION * GENERATIONS == len(one["archive"])  # the budget, once each
    assert r0["archive"] == r1["archive"] == one["archive"]  # same architectures, same accuracies, same order
    assert r0["ranks"] == r1["ranks"] == one["ranks"]
    assert len({a for _, a in one["archive"]}) > 3  # the accuracies tell architectures apart
    # each rank evaluated its round-robin share: about half, at most one architecture more per generation
    assert r0["evaluated"] + r1["evaluated"] == one["evaluated"]
    assert 0 <= r0["evaluated"] - r1["evaluated"] <= GENERATIONS
    assert (r0["source_evaluated"], r1["source_evaluated"]) == (r0["evaluated"], r1["evaluated"])
    assert r0["cache"] == r1["cache"] == one["cache"] == one["evaluated"]  # every rank holds every result


def test_outside_torchrun_the_wrapper_is_the_source_itself():
    calls = []

    def source(archs):
        calls.append(len(archs))
        return np.arange(len(archs), dtype=float)

    assert world_size() == 1 and is_main() and shared(source) is source
    wrapped = SharedAccuracy(source)
    archs = ["a", "b", "a", "c"]
    assert wrapped(archs).tolist() == [0.0, 1.0, 0.0, 2.0]  # each distinct one once, in batch order
    assert wrapped(["c", "d"]).tolist() == [2.0, 0.0] and calls == [3, 1] and wrapped.evaluated == 4
    with pytest.raises(HnasError, match="gave 0 scores for 1 architectures"):
        SharedAccuracy(lambda archs: np.zeros(0))(["e"])


# --- the whole command under torchrun: killed, resumed, rank 0 the only writer ----------------------------------

# Records, per process, every file opened for writing and every rename under the folder named by HNAS_AUDIT_RUN,
# tagged with the torchrun rank (an audit hook: it sees what the process does, whoever does it).
AUDIT = """
import os, sys

_run = os.environ.get("HNAS_AUDIT_RUN")
if _run:
    _fd = os.open(os.path.join(os.environ["HNAS_AUDIT_LOG"], f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT, 0o644)
    _rank = os.environ.get("RANK", "-")
    _writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def _hook(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].startswith(_run):
            mode, flags = args[1], args[2]
            if (mode and any(c in mode for c in "wax+")) or (mode is None and flags & _writes):
                os.write(_fd, f"{_rank}\\topen\\t{args[0]}\\n".encode())
        elif event == "os.rename" and str(args[1]).startswith(_run):
            os.write(_fd, f"{_rank}\\trename\\t{args[1]}\\n".encode())

    sys.addaudithook(_hook)
"""


def test_torchrun_search_killed_and_resumed_matches_one_process_and_only_rank_0_writes(tiny_lut, tmp_path):
    space = tmp_path / "tiny.json"
    tiny_space().save(space)
    args = ["search", "--lut", str(tiny_lut), "--space", str(space), "--stages", "3", "--lat", "0:1000"]
    args += ["--epochs", "0,0", "--lr", "0.05,0.02", "--population", "8", "--generations", "3", "--batch-size", "64"]
    args += ["--resolution", "16", "--bn-images", "64", "--p-th", "0.2"]
    single = run_cli(*args, "--out", str(tmp_path / "single"), env={"OMP_NUM_THREADS": "1"})
    assert single.returncode == 0, single.stderr

    run = tmp_path / "ddp"
    hook, log = tmp_path / "hook", tmp_path / "audit"
    hook.mkdir(), log.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT)
    path = os.pathsep.join(p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    env.update(HNAS_AUDIT_RUN=str(run), HNAS_AUDIT_LOG=str(log))
    progress = run / "stage2" / "evals.json"
    unfinished = lambda: progress.is_file() and not (run / "results.json").is_file()  # noqa: E731
    r = kill_and_resume(
        [*args, "--out", str(run)], progress.is_file, unfinished, interrupt=kill_tree, launcher=TORCHRUN, env=env
    )
    out = r.again.stdout
    assert out.count("resuming") == 1 and out.count("stage 3: CES") == 1  # rank 0 prints, once
    assert json.loads((run / "results.json").read_text()) == json.loads((tmp_path / "single/results.json").read_text())
    for k in (2, 3):
        mine, theirs = (json.loads((d / f"stage{k}" / "search.json").read_text()) for d in (run, tmp_path / "single"))
        assert mine["archive"] == theirs["archive"] and mine["evaluated"] > 0
    writes = [line.split("\t") for f in sorted(log.iterdir()) for line in f.read_text().splitlines()]
    assert {r for r, _, _ in writes} == {"0"}, writes  # neither rank 1 nor the launcher wrote in the run folder
    opened = {p for _, e, p in writes if e == "open"}
    renamed = {p for _, e, p in writes if e == "rename"}
    assert all(os.path.basename(p).startswith(".") and p.endswith(".tmp") for p in opened)  # atomic: temp + rename
    files = {str(p) for p in run.rglob("*") if p.is_file() and not p.name.startswith(".")}
    assert files <= renamed and {str(run / "results.json"), str(run / "config.json")} <= files
