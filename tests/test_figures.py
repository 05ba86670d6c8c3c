"""Figures are checked by their data: where the lines are, how many points, what the bars and cells hold."""

import numpy as np
import pytest
from matplotlib.collections import PathCollection, PolyCollection

from hnas.core.band import Band
from hnas.report import heatmap_plot, latency_plot, pareto_plot, size_plot
from latency.validate import validation_plot


def _rows(lat, acc, rank):
    return [
        {"latency_ms": x, "accuracy": a, "rank": r, "arch": "-", "vector": [0], "macs": 1, "params": 1, "generation": 0}
        for x, a, r in zip(lat, acc, rank)
    ]


def _points(ax) -> list[np.ndarray]:
    return [c.get_offsets() for c in ax.collections if isinstance(c, PathCollection)]


def test_pareto_plot_draws_the_band_at_its_bounds_and_every_point():
    archive = _rows([7.6, 8.0, 8.4, 8.8, 9.2], [0.5, 0.7, 0.6, 0.9, 0.8], [3, 2, 12, 1, 1])
    fig = pareto_plot({2: {"archive": archive}, 3: {"archive": archive[:3]}}, Band(7.5, 9.0), max_rank=10)
    ax2, ax3 = fig.axes
    vertical = sorted(line.get_xdata()[0] for line in ax2.lines if len(set(line.get_xdata())) == 1)
    assert vertical == [7.5, 9.0]  # one dashed line per bound, at the bound (not one per character)
    evaluated, ranked = _points(ax2)
    assert len(evaluated) == 5 and len(ranked) == 4  # every evaluated point; those of rank < 10
    front = next(line for line in ax2.lines if len(set(line.get_xdata())) > 1)
    assert list(front.get_xdata()) == [8.8, 9.2] and list(front.get_ydata()) == [0.9, 0.8]
    assert len(_points(ax3)[0]) == 3
    open_band = pareto_plot({2: {"archive": archive}}, Band(hi=9.0), max_rank=2).axes[0]
    assert [line.get_xdata()[0] for line in open_band.lines if len(set(line.get_xdata())) == 1] == [9.0]
    assert len(_points(open_band)[1]) == 2  # rank < 2


def test_latency_plot_keeps_the_band_under_the_validation_points():
    validate = {"networks": [{"measured_ms": m, "predicted_calibrated_ms": m * 1.02} for m in (7.0, 8.0, 9.0)]}
    ax = latency_plot({"measured_ms": 8.2, "predicted_ms": 8.4}, validate).axes[0]
    band = next(c for c in ax.collections if isinstance(c, PolyCollection))
    points = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(p.get_offsets()) for p in points] == [3, 1]
    assert all(band.get_zorder() < p.get_zorder() for p in points)
    assert points[1].get_offsets().tolist() == [[8.2, 8.4]]
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(min(7.0, 8.2 * 0.9 * 0.95, 7.0 * 0.9 * 0.95), rel=0.2)


def test_validation_plot_shows_raw_and_calibrated_points_over_the_band():
    pred, meas = np.array([7.0, 8.0, 9.5]), np.array([7.2, 8.1, 9.0])
    ax = validation_plot(pred, meas, pred * 0.98, "t").axes[0]
    raw, cal = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert raw.get_offsets().tolist() == np.column_stack([meas, pred]).tolist()
    assert np.allclose(cal.get_offsets()[:, 1], pred * 0.98)
    band = next(c for c in ax.collections if isinstance(c, PolyCollection))
    assert band.get_zorder() < raw.get_zorder()


def test_heatmap_and_size_plots_hold_the_numbers():
    layers = [{"IBConv_K3_E3": 0.75, "Identity": 0.25}, {"IBConv_K3_E3": 1.0}]
    ax = heatmap_plot({2: {"distribution": {"layers": layers}}}).axes[0]
    cells = ax.images[0].get_array()
    assert cells.shape == (2, 2) and cells[0].tolist() == [0.75, 1.0]  # rows: K3_E3, then Identity last
    assert cells[1][0] == 0.25 and np.ma.is_masked(cells[1][1]) or np.isnan(cells[1][1])
    bars = size_plot([("stage 1", 10**17), ("stage 2", 10**11)]).axes[0].patches
    assert [b.get_height() for b in bars] == pytest.approx([17.0, 11.0])
