"""Tests for metarl_jax.io.plots: PNG curves and heatmaps."""

from __future__ import annotations

import numpy as np
import pytest

from metarl_jax.io import plot_curves, plot_heatmaps

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
    x = np.linspace(0, 1e5, 20)
    curves = {"ppo": (x, np.sin(x / 1e4)), "dr": (x, np.cos(x / 1e4), 0.1 * np.ones(20))}
    p1 = plot_curves(tmp_path / "curves.png", curves, "env steps", "return", "learning curves")
    grids = {"ppo": np.arange(6.0).reshape(2, 3), "dr": np.array([[1.0, np.nan, 2], [3, 4, 5]])}
    p2 = plot_heatmaps(tmp_path / "sub" / "grid.png", grids, [0.5, 1.0, 1.5], [0.1, 0.9],
                       "mass scale", "friction", "return over physics")
    for p in (p1, p2):
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    with pytest.raises(ValueError, match=r"grid 'bad' has shape \(3, 2\)"):
        plot_heatmaps(tmp_path / "x.png", {"bad": np.zeros((3, 2))}, [1, 2, 3], [1, 2],
                      "x", "y", "t")


def test_heatmap_tick_labels_are_compact_and_panels_share_y():
    from metarl_jax.io.plots import heatmap_figure

    grids = {"nominal": np.arange(6.0).reshape(3, 2), "dr": np.ones((3, 2))}
    fig = heatmap_figure(grids, [0.6, 1.4], [0.5, 1.5, 2.4], "length", "mass", "title")
    left, right = fig.axes[:2]
    assert [t.get_text() for t in left.get_xticklabels()] == ["0.6", "1.4"]
    assert [t.get_text() for t in left.get_yticklabels()] == ["0.5", "1.5", "2.4"]
    assert left.get_shared_y_axes().joined(left, right)
    assert not any(t.label1.get_visible() for t in right.yaxis.get_major_ticks())
    assert fig.get_layout_engine() is not None  # constrained: titles and labels do not overlap
