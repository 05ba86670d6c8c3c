"""Rank statistics of the ranking study: Kendall's tau-b and Spearman's rho over many resamples at once, seeded
bootstrap 95 % intervals over architectures, and the noise ceiling.

The data of one ranked set of K architectures: `one_shot` [K] (the supernet's top-1), stand-alone `top1` and
`loss` [K, S] (S seeds each). The figures (`FIGURES`):

    kendall_tau, spearman_rho              one-shot against the mean stand-alone top-1 over the S seeds
    kendall_tau_loss, spearman_rho_loss    one-shot against the mean stand-alone test loss (lower is better)
    kendall_tau_seed, spearman_rho_seed    one-shot against one seed's top-1, averaged over the S seeds
    ceiling_tau, ceiling_rho               one seed's top-1 against another's, averaged over the seed pairs:
                                           how well one stand-alone training ranks like another (S >= 2)
                                           (averages skip a seed or pair whose values all tie)
    ceiling_tau_loss, ceiling_rho_loss     the same on the test loss

`*_seed` and `ceiling_*` are the like-for-like pair: both score a ranking against a single stand-alone training,
so a supernet whose `kendall_tau_seed` reaches `ceiling_tau` ranks as well as training again does. Against the
mean of S seeds (`kendall_tau`) a perfect predictor may reach somewhat more than the ceiling, as the mean is less
noisy than one training.

Intervals: B resamples of the K architectures with replacement (one index set shared by every figure, drawn
from `seed`), the 2.5th and 97.5th percentiles of each figure over the resamples in which it is defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from itertools import combinations

import numpy as np

_CHUNK = 256  # resamples per block: the pairwise sign arrays are [chunk, K, K]


def kendall_tau(x, y) -> np.ndarray:
    """Kendall's tau-b of each row of `x` against the same row of `y` (ties counted as scipy counts them);
    nan for a row that is constant on either side. 1-D inputs give a 0-d array."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    flat = x.ndim == 1
    x, y = np.atleast_2d(x), np.atleast_2d(y)
    out = np.empty(len(x))
    for i in range(0, len(x), _CHUNK):
        a, b = x[i : i + _CHUNK], y[i : i + _CHUNK]
        sa = np.sign(a[:, :, None] - a[:, None, :])
        sb = np.sign(b[:, :, None] - b[:, None, :])
        den = np.sqrt((sa * sa).sum((1, 2)) * (sb * sb).sum((1, 2)))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i : i + _CHUNK] = np.where(den > 0, (sa * sb).sum((1, 2)) / den, np.nan)
    return out[0] if flat else out


def spearman_rho(x, y) -> np.ndarray:
    """Spearman's rho (Pearson's r of average ranks) of each row of `x` against the same row of `y`; nan for a
    constant row. 1-D inputs give a 0-d array."""
    from scipy.stats import rankdata

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    flat = x.ndim == 1
    rx = rankdata(np.atleast_2d(x), axis=1)
    ry = rankdata(np.atleast_2d(y), axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 1e-12, (rx * ry).sum(1) / den, np.nan)
    return out[0] if flat else out


def _mean_defined(values: list) -> np.ndarray:
    """The mean over the defined values (a seed whose architectures all tie ranks nothing); nan if none is."""
    stack = np.array(values, dtype=float)
    defined = np.isfinite(stack)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(defined.any(0), np.where(defined, stack, 0).sum(0) / defined.sum(0), np.nan)


def _per_seed(stat: Callable, one_shot: np.ndarray, per_seed: np.ndarray) -> np.ndarray:
    return _mean_defined([stat(one_shot, per_seed[..., s]) for s in range(per_seed.shape[-1])])


def _pairs(stat: Callable, per_seed: np.ndarray) -> np.ndarray:
    pairs = list(combinations(range(per_seed.shape[-1]), 2))
    if not pairs:
        return np.full(per_seed.shape[:-2], np.nan)
    return _mean_defined([stat(per_seed[..., i], per_seed[..., j]) for i, j in pairs])


# each figure: (one-shot o [..., K], top-1 t [..., K, S], loss ls [..., K, S]) -> value [...]
FIGURES: dict[str, Callable] = {
    "kendall_tau": lambda o, t, ls: kendall_tau(o, t.mean(-1)),
    "spearman_rho": lambda o, t, ls: spearman_rho(o, t.mean(-1)),
    "kendall_tau_loss": lambda o, t, ls: kendall_tau(o, -ls.mean(-1)),
    "spearman_rho_loss": lambda o, t, ls: spearman_rho(o, -ls.mean(-1)),
    "kendall_tau_seed": lambda o, t, ls: _per_seed(kendall_tau, o, t),
    "spearman_rho_seed": lambda o, t, ls: _per_seed(spearman_rho, o, t),
    "ceiling_tau": lambda o, t, ls: _pairs(kendall_tau, t),
    "ceiling_rho": lambda o, t, ls: _pairs(spearman_rho, t),
    "ceiling_tau_loss": lambda o, t, ls: _pairs(kendall_tau, -ls),
    "ceiling_rho_loss": lambda o, t, ls: _pairs(spearman_rho, -ls),
}


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n] indices of n items drawn with replacement (seeded)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _number(v) -> float | None:
    v = float(v)
    return None if math.isnan(v) else v


def ranking_stats(one_shot, top1, loss, resamples: int = 2000, seed: int = 0) -> dict:
    """Every figure of `FIGURES` for K architectures (`one_shot` [K], stand-alone `top1` and `loss` [K, S]),
    each with its bootstrap 95 % interval (`<name>_ci`: [lo, hi]); None where a figure is undefined (fewer than
    two architectures, one seed for a ceiling, or every value tied)."""
    o = np.asarray(one_shot, dtype=float)
    t = np.asarray(top1, dtype=float).reshape(len(o), -1)
    lo = np.asarray(loss, dtype=float).reshape(len(o), -1)
    out: dict = {"n": len(o), "seeds": t.shape[1], "resamples": resamples, "bootstrap_seed": seed}
    idx = resample_indices(len(o), resamples, seed) if len(o) >= 2 else None
    for name, figure in FIGURES.items():
        value = figure(o, t, lo) if len(o) >= 2 else np.nan
        out[name] = _number(value)
        ci = [None, None]
        if idx is not None:
            boot = figure(o[idx], t[idx], lo[idx])
            if np.isfinite(boot).any():
                ci = [_number(q) for q in np.nanpercentile(boot, [2.5, 97.5])]
        out[name + "_ci"] = ci
    return out
