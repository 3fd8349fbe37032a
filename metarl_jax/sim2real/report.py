"""Sim-to-real reports: per-axis sweep curves from a one-at-a-time grid, and their PNG.

``sweep_curves(cells, per_cell)`` turns the flat cell list of ``deploy.sweep_grid`` back into one
curve per perturbation axis (the nominal cell is every curve's nominal point);
``plot_sweeps`` draws one panel per axis with a line per policy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metarl_jax.sim2real.deploy import Perturbation


def sweep_curves(cells: Sequence[Perturbation], per_cell: Sequence[float]
                 ) -> Dict[str, Tuple[list, list]]:
    """``{axis: (values [K], returns [K])}`` sorted by value, for every axis some cell changes.

    ``per_cell``: ``[C]`` mean return of each cell; cells changing more than one axis are skipped.
    """
    nominal_return = [r for c, r in zip(cells, per_cell) if not c.changed()]
    curves: Dict[str, Dict[float, float]] = {}
    for cell, ret in zip(cells, per_cell):
        changed = cell.changed()
        if len(changed) == 1:
            (axis, value), = changed.items()
            curves.setdefault(axis, {})[float(value)] = float(ret)
    out = {}
    for axis, points in curves.items():
        if nominal_return:
            points.setdefault(float(getattr(Perturbation(), axis)), float(nominal_return[0]))
        values = sorted(points)
        out[axis] = (values, [points[v] for v in values])
    return out


def plot_sweeps(path: str | os.PathLike, cells: Sequence[Perturbation],
                per_cell_by_policy: Mapping[str, Sequence[float]], title: str) -> Path:
    """One PNG: a panel per perturbation axis, return vs the axis value, a line per policy."""
    curves = {name: sweep_curves(cells, r) for name, r in per_cell_by_policy.items()}
    axes_names = sorted({a for c in curves.values() for a in c})
    cols = min(3, max(1, len(axes_names)))
    rows = int(np.ceil(len(axes_names) / cols))
    fig = Figure(figsize=(4.2 * cols, 3.4 * rows))
    for i, axis in enumerate(axes_names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for name, by_axis in curves.items():
            if axis in by_axis:
                ax.plot(*by_axis[axis], marker="o", label=name)
        ax.axvline(float(getattr(Perturbation(), axis)), color="grey", lw=0.8, ls=":")
        ax.set_xlabel(axis)
        ax.set_ylabel("return (real engine)")
        ax.grid(True, alpha=0.3)
        if i == 0:
            ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=100)
    return path
