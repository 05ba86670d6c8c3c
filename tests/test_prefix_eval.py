"""A generation evaluated together over a prefix tree: the same accuracies (and the same BatchNorm statistics left
in the supernet) as one architecture at a time, for random and for converged populations, within any memory
budget; a search keeps the same archive."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from hnas.evaluate import OneShotEvaluator, PrefixTree
from hnas.spec.arch import Architecture, sample
from hnas.spec.vectors import ArchCodec
from hnas.supernet import Supernet
from tests.harness import enumerable_space
from tests.tiny import tiny_space


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g))


def _supernet(space=None) -> Supernet:
    torch.manual_seed(0)
    net = Supernet(space or enumerable_space().with_skeleton(resolution=16))
    with torch.no_grad():  # BN statistics that matter: perturb the affine weights
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net


def _converged(space, parents: int, n: int, seed: int) -> list[Architecture]:
    """Mutations of a few parents: one layer changed at a time, deep layers more often (a converged generation)."""
    rng = np.random.default_rng(seed)
    base = sample(space, parents, rng)
    out = list(base)
    while len(out) < n:
        ops = list(base[rng.integers(parents)].ops)
        j = int(rng.integers(space.num_layers // 2, space.num_layers))
        ops[j] = space.candidates[j][rng.integers(len(space.candidates[j]))]
        arch = Architecture(space, tuple(ops))
        if str(arch) not in {str(a) for a in out}:
            out.append(arch)
    return out


def _both(net, archs, train_set, val_set, bn_images=32, **kw):
    """(accuracies together, state after; accuracies one at a time, state after), from the same start."""
    start = {k: v.clone() for k, v in net.state_dict().items()}
    together = OneShotEvaluator(net, val_set, train_set, bn_images=bn_images, batch_size=16, **kw)
    a = together(archs)
    state_a = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(start)
    alone = OneShotEvaluator(net, val_set, train_set, bn_images=bn_images, batch_size=16, together=False)
    b = alone(archs)
    return a, state_a, b, net.state_dict(), together.evaluated, alone.evaluated


@pytest.mark.parametrize(
    ("population", "wide", "bn_images"),
    # calibration in two batches (the last shares a call with validation), and in one (the demo's case)
    [
        ("random", True, 32),
        ("converged", True, 32),
        ("random", False, 32),
        ("converged", False, 32),
        ("converged", True, 16),
    ],
)
def test_together_equals_one_at_a_time_bit_for_bit(population, wide, bn_images):
    net = _supernet()
    space = net.space
    archs = sample(space, 12, np.random.default_rng(3)) if population == "random" else _converged(space, 2, 10, 4)
    archs = archs + archs[:2]  # a repeated architecture is paid for once
    a, state_a, b, state_b, n_a, n_b = _both(net, archs, _data(96, 1), _data(64, 2), bn_images, wide=wide)
    assert a.tolist() == b.tolist() and len(set(a.tolist())) > 1
    assert n_a == n_b == len(archs) - 2
    assert state_a.keys() == state_b.keys() and all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not net.training  # left in eval mode, as one at a time leaves it


@pytest.mark.parametrize("budget", [0, 3 * 16 * 16 * 4 * 96 + 1, 10**5 * 4 * 96])
def test_a_small_memory_budget_shares_fewer_layers_with_the_same_figures(budget):
    net = _supernet()
    archs = _converged(net.space, 2, 8, 5)
    a, state_a, b, state_b, *_ = _both(net, archs, _data(96, 1), _data(64, 2), tree_bytes=budget, wide=True)
    assert a.tolist() == b.tolist()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    tree = PrefixTree(net, archs, budget, images=32 + 64)
    assert tree.depth == {0: -1, 3 * 16 * 16 * 4 * 96 + 1: 0}.get(budget, len(net.space.slots) - 1)


def _batches():
    g = torch.Generator().manual_seed(7)
    calib = [torch.randn(16, 3, 16, 16, generator=g) for _ in range(2)]
    return calib, [(torch.randn(16, 3, 16, 16, generator=g), torch.randint(0, 10, (16,), generator=g))]


def test_a_converged_generation_runs_fewer_modules_and_wide_in_fewer_calls():
    net = _supernet()
    archs = _converged(net.space, 2, 10, 6)
    alone = sum(len(net.path_modules(a)) for a in archs)
    trees = {wide: PrefixTree(net, archs, 2**30, images=48, wide=wide) for wide in (False, True)}
    for tree in trees.values():
        planned = tree.planned_runs()
        tree.evaluate(*_batches(), torch.device("cpu"))
        assert tree.runs == planned < alone
        assert tree.depth == len(net.space.slots) - 1
    narrow, wide = trees[False], trees[True]
    assert narrow.calls == narrow.runs and narrow.scores == wide.scores
    # wide: one call per (position, module) among the shared positions (a skip, without weights, one per prefix),
    # then the last position per architecture
    modules = {id(m): m for path in narrow.paths for m in path}
    prefixes = {tuple(map(id, path[: d + 1])) for path in narrow.paths for d in range(wide.depth)}
    weighted = {p for p in prefixes if list(modules[p[-1]].parameters())}
    expected = len({(len(p), p[-1]) for p in weighted}) + len(prefixes - weighted)
    assert wide.calls == expected + len(archs) * (len(narrow.paths[0]) - wide.depth)
    assert wide.calls < narrow.calls


def test_a_budget_for_few_nodes_runs_a_position_in_chunks_with_the_same_figures():
    net = _supernet()
    archs = sample(net.space, 12, np.random.default_rng(8))
    calib, val = _batches()
    full = PrefixTree(net, archs, 2**30, images=48)
    budget = full.alive + full.below[0] + 2 * max(full.bytes)  # one chain and two more nodes at any position
    small = PrefixTree(net, archs, budget, images=48)
    assert small.depth == full.depth
    start = {k: v.clone() for k, v in net.state_dict().items()}
    scores = full.evaluate(calib, val, torch.device("cpu"))
    after = {k: v.clone() for k, v in net.state_dict().items()}
    net.load_state_dict(start)
    assert small.evaluate(calib, val, torch.device("cpu")) == scores
    assert all(torch.equal(after[k], v) for k, v in net.state_dict().items())
    assert small.runs == full.runs and small.calls > full.calls  # the same nodes, in more and smaller calls


def test_a_search_keeps_the_same_archive_together_and_one_at_a_time():
    from hnas.ces import Constraints, ces
    from hnas.core.band import Band
    from tests.harness import Table

    train_set, val_set = _data(96, 1), _data(64, 2)
    runs = []
    for together in (True, False):
        net = _supernet()
        ev = OneShotEvaluator(net, val_set, train_set, bn_images=32, batch_size=16, together=together)
        t = Table(net.space)
        res = ces(net.space, ev, t.latency, Constraints(Band(3.0, 9.0)), pop_size=8, generations=3, seed=0)
        runs.append((res.archive.to_json(net.space), ev.evaluated))
    (together, n_t), (alone, n_a) = runs
    assert together == alone and n_t == n_a == len(together) > 8
    assert len({r["accuracy"] for r in together}) > 1


def test_bench_prefix_at_tiny_settings(tmp_path, capsys):
    import sys

    from tests.harness import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_prefix

    space_file = tmp_path / "enum.json"
    enumerable_space().save(space_file)
    bench_prefix.main(["--space", str(space_file), "--parts", "a", "--repeats", "1"])
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "together / one at a time" in line]
    assert len(lines) == 1 and "accuracies identical: True" in lines[0] and "load average" in out
    (before,) = re.findall(r"\(before: max difference ([\d.]+)\)", lines[0])  # the old path, other kernels: ties
    assert float(before) < 0.05
    with pytest.raises(SystemExit) as e:  # a folder that is no finished run: one line, before anything is timed
        bench_prefix.main(["--run", str(tmp_path), "--parts", ""])
    err = capsys.readouterr()
    assert e.value.code == 2 and "load average" not in err.out
    assert (
        err.err == f"bench_prefix: --run {tmp_path} is not a finished HNAS run (no search record of every stage): "
        "give a `hnas demo` folder\n"
    )
    codec = ArchCodec(tiny_space())  # 18 architectures: asking for more mutants gives those there are
    vecs = bench_prefix.mutants(codec, 2, 40, 1, np.random.default_rng(0))
    assert len({v.tobytes() for v in vecs}) == len(vecs) <= codec.size


def test_bench_kernels_at_tiny_settings(capsys):
    """The whole-kernel baseline runs every tap and is undone after; both ways give the same outputs."""
    import sys

    from hnas.spec.modules import SameConv2d
    from tests.harness import ROOT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_kernels

    bench_kernels.main(["--archs", "1", "--steps", "1", "--batch", "4", "--sizes", "16"])
    out = capsys.readouterr().out
    assert len(re.findall(r"16 px, (train|eval) .*whole .*cropped .*channels_last +[\d.]+ ms \([\d.]+x\)", out)) == 2
    worst = re.findall(r"([\d.e+-]+) \((cropped|channels_last)\)", out)
    assert [w for _, w in worst] == ["cropped", "channels_last"] and all(float(v) < 1e-4 for v, _ in worst)
    assert out.count("load average") == 2
    assert SameConv2d._conv_forward is not torch.nn.Conv2d._conv_forward  # the baseline undone


def test_a_batchnorm_gets_its_own_forward_back_even_when_the_call_fails():
    from hnas.evaluate import _branch_norms, _Statistics

    bn = torch.nn.BatchNorm2d(4)
    with pytest.raises(RuntimeError):
        with _branch_norms([bn], [[(_Statistics(bn), True)]], [2]):
            assert "forward" in bn.__dict__
            raise RuntimeError("a failing module")
    assert "forward" not in bn.__dict__ and bn(torch.randn(2, 4, 3, 3)).shape == (2, 4, 3, 3)


def test_a_wide_call_runs_as_many_nodes_as_its_working_memory_leaves_room_for():
    from hnas.evaluate import _Node

    net = _supernet()
    archs = sample(net.space, 6, np.random.default_rng(9))
    tree = PrefixTree(net, archs, 2**40, images=48)
    d = next(d for d in range(1, tree.depth) if list(tree.paths[0][d].parameters()))
    module, shape = tree.paths[0][d], net.space.slots[d].shape
    g = torch.Generator().manual_seed(3)
    parent = _Node(list(range(len(archs))), None)
    parent.calib = [torch.randn(16, shape.in_ch, shape.in_size, shape.in_size, generator=g) for _ in range(2)]
    parent.val = [torch.randn(16, shape.in_ch, shape.in_size, shape.in_size, generator=g)]
    kids = [_Node([i], parent, module) for i in range(5)]
    widest = max(m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    per_node = (16 + 16) * shape.in_ch * shape.in_size**2 * 4 * (2 + 3 * widest / shape.in_ch)
    tree.budget = tree.alive + tree.below[d + 1] + 5 * tree.bytes[d] + 2 * per_node + 1  # two nodes' working memory
    tree.device = torch.device("cpu")
    tree._run(d, kids)
    assert tree.calls == 3 and tree.runs == 5  # calls of 2, 2 and 1 nodes
    with torch.no_grad():  # every node had the same input: the outputs of one alone (batch statistics)
        alone = [module.train()(x) for x in parent.calib]
    assert all(len(k.calib) == 2 and len(k.val) == 1 for k in kids)
    assert all(torch.equal(k.calib[i], alone[i]) for k in kids for i in range(2))
