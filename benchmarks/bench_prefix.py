"""One-shot evaluations per minute of a generation evaluated together over a prefix tree (`hnas.evaluate.PrefixTree`)
against one architecture at a time (`OneShotEvaluator(together=False)`), and against one at a time as before this
wave ("before": every KxK tap run, contiguous tensors), at the demo's proxy settings. Together is timed two ways:
"narrow", every branch of the tree run alone, and "together" (the default, `wide`), the branches that share a module
run as one larger batch; the first saves module runs, the second calls (a GPU's or a small map's fixed cost).

(a) random: the demo's population size of architectures drawn uniformly (a first generation, nothing shared but
    the stem and the first layer's few candidates).
(b) converged: mutants of a few parents (`ArchCodec.mutate`, each child with `--strength` layers moved), and a
    sweep over the strength: how the saving grows with convergence. `shared` is the share of module runs the
    tree saves over one at a time (1 - tree runs / one-at-a-time runs, counted, not timed).
(d) demo: with `--run RUNS/demo` (a finished `hnas demo`), the populations its CES stages really evaluated
    (each stage's `search.json`: its searched space, pruned by the stages before, and the architectures of its
    first and last generations), on a fresh proxy supernet of that space.
(c) search: a CES run at the demo's population (`--generations` generations, MACs as the cheap objective, open
    band) with each generation evaluated together, then one at a time: wall time, evaluations per minute and
    whether the archives are identical.

Both ways run round robin on the same supernet and images (decoded once, shared), so a change in the machine's
load hits both alike; each ratio is measured in this run; the load average is printed. Accuracies are checked
identical on every population.

    .venv/bin/python benchmarks/bench_prefix.py [--quick] [--data digits] [--space basic] [--repeats 3] [--run DIR]
        [--device cuda [--amp]]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_eval import machine  # noqa: E402

from hnas.ces import Constraints, CostTable, ces  # noqa: E402
from hnas.core.errors import HnasError  # noqa: E402
from hnas.data import load_data  # noqa: E402
from hnas.evalimages import EvalFormat, EvalImages  # noqa: E402
from hnas.evaluate import OneShotEvaluator, PrefixTree  # noqa: E402
from hnas.searchrun import SearchRun  # noqa: E402
from hnas.spec.arch import from_vector  # noqa: E402
from hnas.spec.modules import SameConv2d, zero_init_residuals  # noqa: E402
from hnas.spec.space import SearchSpace, load_space  # noqa: E402
from hnas.spec.vectors import ArchCodec  # noqa: E402
from hnas.supernet import Supernet, proxy_space  # noqa: E402
from hnas.workflows.demo import DEMO_PROXY, demo_settings  # noqa: E402


def mutants(codec: ArchCodec, parents: int, n: int, strength: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct vectors: `parents` random ones and mutants of them with `strength` layers moved."""
    base = codec.sample(rng, parents)
    out, seen = list(base), {v.tobytes() for v in base}
    for _ in range(100 * n):  # a small space may hold fewer mutants
        if len(out) >= n:
            break
        child = codec.mutate(rng, base[rng.integers(parents)][None, :], strength)[0]
        if child.tobytes() not in seen:
            seen.add(child.tobytes())
            out.append(child)
    return np.array(out)


@contextlib.contextmanager
def whole_kernels(on: bool):
    """Inside: every KxK convolution runs all its taps, as before `SameConv2d` skipped those meeting only
    padding (with contiguous tensors: the baseline of the per-architecture saving)."""
    if not on:
        yield
        return
    own = SameConv2d.__dict__["_conv_forward"]
    SameConv2d._conv_forward = torch.nn.Conv2d._conv_forward
    try:
        yield
    finally:
        SameConv2d._conv_forward = own


class Bench:
    """The demo's proxy supernet and evaluation images, and the two ways to evaluate a population."""

    def __init__(self, a, space: SearchSpace | None = None):
        p = DEMO_PROXY
        self.device = torch.device(a.device)
        data = load_data(a.data, p.resolution, 0, p.per_class)
        torch.manual_seed(0)
        space = proxy_space(space or load_space(a.space), p.resolution, p.width, data.num_classes)
        self.net = zero_init_residuals(Supernet(space)).to(self.device)
        self.data = data
        self.images = EvalImages(
            data.train, data.val, p.bn_images, p.eval_batch, EvalFormat.for_device(self.device, a.amp)
        )
        before = EvalFormat(self.device, self.images.fmt.dtype, memory_format=torch.contiguous_format)  # as before
        self.images_before = EvalImages(data.train, data.val, p.bn_images, p.eval_batch, before)
        self.codec = ArchCodec(space)
        warm = [from_vector(space, v) for v in self.codec.sample(np.random.default_rng(99), 4)]
        for together, before, wide in self.WAYS.values():  # set up the kernels: untimed
            with whole_kernels(before):
                self.evaluator(together, before, wide)(warm)
        print(
            f"proxy: {a.data}, {space.name} space at {p.resolution} px, width {p.width}, {self.images.calib_size} BN "
            f"images, {self.images.val_size} val images, eval batch {p.eval_batch}"
        )

    def evaluator(self, together: bool, before: bool = False, wide: bool = True) -> OneShotEvaluator:
        """One at a time or together (`wide`: branches sharing a module in one batch); `before`: on contiguous
        images and supernet (the evaluator puts the supernet in its images' layout), the path before this wave with
        `whole_kernels`."""
        p = DEMO_PROXY
        images = self.images_before if before else self.images
        return OneShotEvaluator(
            self.net,
            self.data.val,
            self.data.train,
            p.bn_images,
            p.eval_batch,
            images=images,
            together=together,
            wide=wide,
        )

    def shared(self, vecs: np.ndarray) -> float:
        """Share of module runs the tree saves on `vecs` (counted on the cheap side: no image is run)."""
        archs = [from_vector(self.net.space, v) for v in vecs]
        tree = PrefixTree(self.net, archs, 2**62, self.images.calib_size + self.images.val_size)
        alone = sum(len(self.net.path_modules(x)) for x in archs)
        return 1.0 - tree.planned_runs() / alone

    WAYS = {  # name: (together, before, wide)
        "before": (False, True, True),
        "alone": (False, False, True),
        "narrow": (True, False, False),
        "together": (True, False, True),
    }

    def compare(self, name: str, vecs: np.ndarray, repeats: int) -> float:
        """Print evaluations per minute on `vecs` four ways: one at a time as before this wave (whole kernels in
        torch's default layout), one at a time, over the prefix tree one branch at a time ("narrow") and with the
        branches sharing a module in one batch ("together", the default); return together / one at a time."""
        archs = [from_vector(self.net.space, v) for v in vecs]
        seconds = {way: [] for way in self.WAYS}
        accs = {}
        for _ in range(repeats):
            for way, (together, before, wide) in self.WAYS.items():
                ev = self.evaluator(together, before, wide)
                with whole_kernels(before):
                    t0 = time.perf_counter()
                    accs[way] = ev(archs)
                    seconds[way].append(time.perf_counter() - t0)
        rate = {way: 60.0 * len(archs) / statistics.median(s) for way, s in seconds.items()}
        same = np.array_equal(accs["together"], accs["alone"]) and np.array_equal(accs["narrow"], accs["alone"])
        close = float(np.abs(accs["before"] - accs["alone"]).max())
        print(
            f"    {name:22s} {len(archs):3d} archs, shared {self.shared(vecs):5.1%}: before {rate['before']:6.0f}/min, "
            f"one at a time {rate['alone']:6.0f}/min, tree narrow {rate['narrow']:6.0f}/min, together "
            f"{rate['together']:6.0f}/min; together / one at a time {rate['together'] / rate['alone']:5.2f}x "
            f"(narrow {rate['narrow'] / rate['alone']:4.2f}x), / before {rate['together'] / rate['before']:5.2f}x; "
            f"accuracies identical: {same} (before: max difference {close:.4f})"
        )
        return rate["together"] / rate["alone"]

    def search(self, population: int, generations: int) -> None:
        """(c): a CES run evaluated together, then one at a time."""
        costs = CostTable(self.net.space)
        res = {}
        for together in (True, False):
            ev = self.evaluator(together)
            t0 = time.perf_counter()
            out = ces(self.net.space, ev, lambda v: costs(v)[0] / 1e6, Constraints(), population, generations, seed=0)
            wall = time.perf_counter() - t0
            res[together] = (out.archive.to_json(self.net.space), wall, ev.evaluated)
        (arch_t, wall_t, n), (arch_s, wall_s, _) = res[True], res[False]
        print(
            f"(c) CES, population {population} x {generations} generations ({n} evaluations): one at a time "
            f"{wall_s:.1f} s ({60 * n / wall_s:.0f}/min), together {wall_t:.1f} s ({60 * n / wall_t:.0f}/min), "
            f"ratio {wall_s / wall_t:.2f}x; archives identical: {arch_t == arch_s}"
        )


def demo_records(run: Path) -> list[dict]:
    """The search records (checked) of the CES stages of the finished HNAS run in `run`; one line when it is none."""
    found = SearchRun.read(run)
    records = [found.stage(k).search() for k in range(2, found.stages + 1)] if found is not None else []
    if not records or None in records:
        raise HnasError(
            f"--run {run} is not a finished HNAS run (no search record of every stage): give a `hnas demo` folder"
        )
    return records


def demo_stages(a, records: list[dict], repeats: int) -> None:
    """(d): the first and last generation of every CES stage of the demo run `a.run`."""
    for k, record in enumerate(records, start=2):
        space = SearchSpace.from_dict(record["searched_space"], f"{a.run}/stage{k}/search.json: searched_space")
        bench = Bench(a, space)
        rows = record["archive"]
        last = max(r["generation"] for r in rows)
        print(f"(d) demo stage{k}: {space.name}, {float(record['searched_size']):.3g} architectures")
        for gen in (0, last):
            vecs = np.array([r["vector"] for r in rows if r["generation"] == gen])
            bench.compare(f"generation {gen}", vecs, repeats)


def synthetic(a, repeats: int) -> None:
    """(a), (b) and (c) on the deployment space `a.space`, as `a.parts` asks."""
    bench = Bench(a)
    n = demo_settings().population
    rng = np.random.default_rng(0)
    if "a" in a.parts:
        print(f"(a) random population ({n}, the demo's), median of {repeats}")
        bench.compare("random", bench.codec.sample(rng, n), repeats)
    if "b" in a.parts:
        print(f"(b) converged: mutants of {a.parents} parents, median of {repeats}")
        for strength in sorted({a.strength, *((4, 2) if a.quick else (12, 8, 4, 2))}):
            bench.compare(f"{strength} layers moved", mutants(bench.codec, a.parents, n, strength, rng), repeats)
    if "c" in a.parts:
        bench.search(n, 2 if a.quick else a.generations)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="two repeats, a shorter sweep and search")
    p.add_argument("--data", default="digits", help="digits (the demo's) or mnist5k")
    p.add_argument("--space", default="basic")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--parents", type=int, default=3, help="parents of a converged population")
    p.add_argument("--strength", type=int, default=1, help="layers moved in a converged population's mutants")
    p.add_argument("--generations", type=int, default=4, help="CES generations in (c)")
    p.add_argument("--run", type=Path, default=None, help="a finished `hnas demo` run folder for (d)")
    p.add_argument("--parts", default="abc", help="which of (a), (b), (c) to run, e.g. 'b' ((d) runs with --run)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="benchmarks/gpu_check.sh runs it on cuda")
    p.add_argument("--amp", action="store_true", help="on cuda: float16 images under autocast, as `--amp` searches")
    a = p.parse_args(argv)
    repeats = 2 if a.quick else a.repeats
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.exit(1, "bench_prefix: torch sees no CUDA device: run it on a GPU machine, or leave out --device\n")
    try:  # a bad run folder is one line before anything is timed
        records = demo_records(a.run) if a.run is not None else []
    except HnasError as e:
        p.exit(2, f"bench_prefix: {e}\n")
    print(machine(device))
    if "a" in a.parts or "b" in a.parts or "c" in a.parts:
        synthetic(a, repeats)
    if records:
        demo_stages(a, records, repeats)
    print(machine(device))


if __name__ == "__main__":
    main()
