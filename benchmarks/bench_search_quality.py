"""Search quality against ground truth: CES, SPOS-EA and uniform random sampling at equal accuracy-evaluation
budgets, on truths the project computes itself.

Truths:
- `proxy`: the `basic` space with stage 2 searchable (its four layers at 112x112x16 -> 56x56x24: 6 x 7^3 =
  2,058 architectures) and every other layer fixed to the demo's MobileNetV2-like reference. Every
  architecture's accuracy is its one-shot top-1 on a supernet of exactly that space, trained briefly on the
  embedded mnist5k (60 images per class, 6 epochs: short enough that architectures differ by more than a few
  images) and measured on all 1,800 held-out images; its latency is the shipped host LUT's prediction. The
  supernet and the 2,058 accuracies are computed once and cached outside the repository (`--cache`, default
  ~/.cache/hnas/search-quality); an interrupted build resumes.
- `synthetic`: the tests' table-driven truth (sums of random per-(layer, op) figures) on their enumerable space.

For each truth, three latency bands (tight, middle, loose: the 45-55th, 35-65th and 20-80th percentiles of
the space's latencies), budgets population x generations in (8 x 10, 16 x 10, 32 x 10), and 30 seeds, it prints
per method the hypervolume ratio against the true in-band front (median and 10th percentile), the share of
seeds that evaluated a true best in-band architecture, the accuracy evaluations spent (median and minimum) and
the search overhead (time outside accuracy evaluation). CES runs as `hnas search` runs it (offspring
pre-screened, `--prescreen 8`) and as the paper's plain CES (`CES-plain`, every bred offspring evaluated).
Then the paper's Fig. 7 claim on the same truths: the mean per-op variance over seeds of the estimated
operation distribution (CES: archive ranks < R; SPOS-EA: its final top-k) and how many ops fall under P_th;
and CES's overhead at the paper's 64 x 40 on `basic`.

    .venv/bin/python benchmarks/bench_search_quality.py [--seeds 30] [--truth proxy synthetic] [--cache DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hnas.ces import Constraints, ces  # noqa: E402
from hnas.core.band import Band  # noqa: E402
from hnas.core.io import atomic_write_json  # noqa: E402
from hnas.prune import estimate, select_by_rank  # noqa: E402
from hnas.quality import GroundTruth, synthetic_truth  # noqa: E402
from hnas.spec.arch import parse_arch  # noqa: E402
from hnas.spec.space import SearchSpace, basic  # noqa: E402
from hnas.spec.vectors import ArchCodec  # noqa: E402
from hnas.spos_ea import random_search, spos_ea  # noqa: E402

REFERENCE = "K3E1|K3E6-K3E6-ID-ID|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-K3E6|K3E6-K3E6-K3E6-ID|K3E6-K3E6-K3E6-ID|K3E6"
FREE_STAGE = 2
PROXY = {
    "data": "mnist5k",
    "per_class": 60,
    "resolution": 32,
    "width": 0.5,
    "epochs": 6,
    "warmup_epochs": 2,
    "lr": 0.05,
    "batch_size": 32,
    "label_smoothing": 0.1,
    "bn_images": 256,
    "eval_batch": 512,
}
BANDS = {"tight": (45, 55), "middle": (35, 65), "loose": (20, 80)}
BUDGETS = ((8, 10), (16, 10), (32, 10))


def truth_space() -> SearchSpace:
    """`basic` with one stage searchable and every other layer fixed to the reference's op."""
    sp = basic()
    ref = parse_arch(REFERENCE, sp)
    cands = [c if L.stage == FREE_STAGE else (op,) for L, c, op in zip(sp.layers, sp.candidates, ref.ops)]
    return sp.with_candidates(cands, name=f"basic-stage{FREE_STAGE}")


def proxy_truth(cache: Path, lut: Path) -> GroundTruth:
    """Train (or reuse) the proxy supernet of `truth_space()` and read every architecture's one-shot top-1."""
    from hnas.runs import SupernetRun
    from hnas.settings import ProxySettings, RunConfig, TrainConfig
    from latency.lut import Lut
    from latency.predict import LatencyPredictor

    space = truth_space()
    digest = hashlib.sha256(json.dumps({"space": space.to_dict(), **PROXY}, sort_keys=True).encode()).hexdigest()
    folder = cache / f"proxy-{digest[:12]}"
    p = PROXY
    cfg = RunConfig(
        space=space.to_dict(),
        data=p["data"],
        proxy=ProxySettings(
            resolution=p["resolution"], width=p["width"], per_class=p["per_class"], bn_images=p["bn_images"]
        ),
        train=TrainConfig(
            epochs=p["epochs"],
            lr=p["lr"],
            batch_size=p["batch_size"],
            label_smoothing=p["label_smoothing"],
            warmup_epochs=p["warmup_epochs"],
        ),
    )
    run = SupernetRun.open(folder, cfg)
    if not (folder / "history.json").is_file():
        print(f"training the proxy supernet of {space.size()} architectures in {folder} ...", flush=True)
        run.train(progress=False)
    vecs = ArchCodec(space).enumerate()
    acc_file = folder / "accuracy.json"
    acc = json.loads(acc_file.read_text()) if acc_file.is_file() else []
    if len(acc) < len(vecs):
        from torch.utils.data import ConcatDataset

        from hnas.evaluate import OneShotEvaluator
        from hnas.spec.arch import from_vector

        (supernet, _), data = run.latest(), run.data()
        # every held-out image (val and test, 1,800) counts, so that accuracies are finely resolved
        ev = OneShotEvaluator(supernet, ConcatDataset([data.val, data.test]), data.train, p["bn_images"], 512)
        t0, start = time.perf_counter(), len(acc)
        print(f"one-shot top-1 of {len(vecs) - len(acc)} architectures ...", flush=True)
        for i in range(len(acc), len(vecs)):
            acc.append(ev.accuracy(from_vector(supernet.space, vecs[i])))
            if (i + 1) % 100 == 0 or i + 1 == len(vecs):
                atomic_write_json(acc_file, acc, indent=None)
                rate = (i + 1 - start) / max(1e-9, time.perf_counter() - t0)
                print(f"  {i + 1}/{len(vecs)} ({rate:.1f} per s)", flush=True)
    lat = LatencyPredictor(Lut.load(lut), space, str(lut)).predict(vecs)
    return GroundTruth(space, np.array(acc), lat)


class Timed:
    """An accuracy source that measures the time spent in it (to subtract from a search's wall time)."""

    def __init__(self, truth: GroundTruth):
        self.truth, self.seconds = truth, 0.0

    def __call__(self, archs):
        t0 = time.perf_counter()
        out = self.truth.accuracy_of(archs)
        self.seconds += time.perf_counter() - t0
        return out


def run_method(method: str, truth: GroundTruth, band: Constraints, pop: int, gens: int, seed: int) -> dict:
    """One search; its score, evaluations spent, overhead and estimated operation distribution."""
    acc = Timed(truth)
    t0 = time.perf_counter()
    if method.startswith("CES"):
        prescreen = 1 if method == "CES-plain" else 8
        res = ces(truth.space, acc, truth.predict, band, pop, gens, seed=seed, prescreen=prescreen)
        sel = select_by_rank(np.array(res.archive.vectors), res.archive.ranks, 10)
    elif method == "SPOS-EA":
        res = spos_ea(truth.space, acc, truth.predict, band, pop, gens, seed=seed)
        sel = res.population
    else:
        res = random_search(truth.space, acc, truth.predict, band, pop * gens, seed=seed)
        sel = res.population
    overhead = time.perf_counter() - t0 - acc.seconds
    score = truth.score(np.array(res.archive.vectors), band.band)
    return {**score, "spent": res.accuracy_calls, "overhead_s": overhead, "p": estimate(truth.space, sel).p}


def fig7(rows: list[dict], space: SearchSpace, p_th: float = 0.01) -> tuple[float, float]:
    """Mean per-op variance over seeds of the estimated distribution, and ops under P_th per run."""
    free = [j for j, c in enumerate(space.candidates) if len(c) > 1]
    var = np.mean([np.var([r["p"][j][i] for r in rows]) for j in free for i in range(len(space.candidates[j]))])
    under = np.mean([sum(int((r["p"][j] < p_th).sum()) for j in free) for r in rows])
    return float(var), float(under)


def overhead_basic(lut: Path, seeds: int = 3) -> list[float]:
    """CES's own time (everything but accuracy evaluation) for the paper's 64 x 40 on `basic` with the LUT."""
    from latency.lut import Lut
    from latency.predict import LatencyPredictor

    space = basic()
    pred = LatencyPredictor(Lut.load(lut), space, str(lut))
    rng = np.random.default_rng(0)
    table = rng.normal(0, 0.01, (space.num_layers, max(len(c) for c in space.candidates)))
    rows = np.arange(space.num_layers)
    lat = pred.predict(ArchCodec(space).sample(rng, 20000))
    band = Constraints(Band(*np.percentile(lat, [45, 65])))
    out = []
    for seed in range(seeds):
        t = {"s": 0.0}

        def acc(archs, t=t):
            t0 = time.perf_counter()
            v = 0.7 + np.array([table[rows, a.to_vector()].sum() for a in archs])
            t["s"] += time.perf_counter() - t0
            return v

        t0 = time.perf_counter()
        ces(space, acc, pred.predict, band, 64, 40, seed=seed)
        out.append(time.perf_counter() - t0 - t["s"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=30)
    ap.add_argument("--truth", nargs="+", default=["proxy", "synthetic"], choices=["proxy", "synthetic"])
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "hnas" / "search-quality"))
    ap.add_argument("--lut", default=str(ROOT / "lut" / "local-amd-epyc.json"))
    a = ap.parse_args()
    truths = {}
    for name in a.truth:
        if name == "proxy":
            truths[name] = proxy_truth(Path(a.cache), Path(a.lut))
        else:
            sys.path.insert(0, str(ROOT))
            from tests.harness import enumerable_space

            truths[name] = synthetic_truth(enumerable_space(), 0)
    methods = ("CES", "CES-plain", "SPOS-EA", "random")
    for name, truth in truths.items():
        acc = truth.accuracy
        print(
            f"\n== truth {name}: {truth.space.size()} architectures, accuracy {acc.min():.3f}-{acc.max():.3f} "
            f"({len(np.unique(acc))} distinct), latency {truth.latency.min():.2f}-{truth.latency.max():.2f} ms"
        )
        fig_rows: dict[str, list] = {m: [] for m in methods[:3]}  # per method: one list of rows per band
        for bname, (plo, phi) in BANDS.items():
            band = Constraints(truth.band_percentiles(plo, phi))
            rows = truth.in_band(band.band)
            n_in, n_best = len(rows), int((truth.accuracy[rows] == truth.accuracy[rows].max()).sum())
            print(f"\n{bname} band {band.band} ms: {n_in} architectures inside, {n_best} tied at the best accuracy")
            print(
                f"  {'budget':8s} {'method':9s} {'HV ratio median':>15s} {'p10':>7s} {'best found':>10s} "
                f"{'spent (min)':>12s} {'overhead s':>10s}"
            )
            for pop, gens in BUDGETS:
                for m in methods:
                    rows = [run_method(m, truth, band, pop, gens, seed) for seed in range(a.seeds)]
                    if m in fig_rows and (pop, gens) == (16, 10):
                        fig_rows[m].append(rows)
                    hv = [r["hv_ratio"] for r in rows]
                    spent = [r["spent"] for r in rows]
                    print(
                        f"  {f'{pop}x{gens}':8s} {m:9s} {statistics.median(hv):15.4f} {np.percentile(hv, 10):7.4f} "
                        f"{sum(r['found_best'] for r in rows) / len(rows) * 100:9.0f}% "
                        f"{statistics.median(spent):7.0f} ({min(spent)}) "
                        f"{statistics.median(r['overhead_s'] for r in rows):10.3f}",
                        flush=True,
                    )
        print(f"\nFig. 7 on truth {name} (16 x 10, {a.seeds} seeds per band, averaged over the bands):")
        for m, per_band in fig_rows.items():
            var, under = np.mean([fig7(rows, truth.space) for rows in per_band], axis=0)
            print(f"  {m:9s} mean per-op variance {var:.5f}; ops under P_th = 1 % per run {under:.1f}")
    ov = overhead_basic(Path(a.lut))
    print(
        f"\nCES overhead without accuracy evaluation, basic, 64 x 40 on {Path(a.lut).name}: median "
        f"{statistics.median(ov):.2f} s of {[round(x, 2) for x in ov]} (target <= 2 s)"
    )


if __name__ == "__main__":
    main()
