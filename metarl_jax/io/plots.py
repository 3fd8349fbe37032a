"""PNG plots for run folders: learning curves and grids of results (heatmaps).

Figures are drawn with matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``)
rather than through ``pyplot``: no display is needed, nothing global changes (importing this
module does not switch a notebook's backend), and no figure is left open between calls.
In a multi-process run only process 0 writes a figure (the others return its path unwritten),
as it alone writes the run folder's other files.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from metarl_jax.io.progress import format_number


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    if jax.process_index() != 0:  # one writer per run folder (metarl_jax.scale.is_primary)
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_curves(
    path: str | os.PathLike,
    curves: Mapping[str, tuple],
    xlabel: str,
    ylabel: str,
    title: str,
    *,
    logx: bool = False,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Line plot of one or more curves, written as a PNG.

    Args:
        path: the ``.png`` file to write.
        curves: label -> ``(x, y)`` or ``(x, y, y_std)``; x, y: [K] each. With ``y_std`` a band
            ``y ± y_std`` is shaded (e.g. across seeds).
        xlabel, ylabel, title: axis labels and figure title.
        logx: logarithmic x axis.
        styles: label -> extra ``Axes.plot`` keywords for that curve (e.g. ``{"color": "C0",
            "linestyle": "--"}`` to pair a curve with another one's colour).

    With more than four curves the legend goes outside the axes, on the right, so that it
    hides no line.

    Returns:
        ``path``.
    """
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for label, curve in curves.items():
        if len(curve) not in (2, 3):
            raise ValueError(
                f"curve '{label}' must be (x, y) or (x, y, y_std), got {len(curve)} items")
        x, y = np.asarray(curve[0], float), np.asarray(curve[1], float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(
                f"curve '{label}': x {x.shape} and y {y.shape} must be equal 1-D shapes")
        kwargs = {"marker": "o" if len(x) < 12 else None, **(styles or {}).get(label, {})}
        (line,) = ax.plot(x, y, label=label, **kwargs)
        if len(curve) == 3:
            s = np.asarray(curve[2], float)
            ax.fill_between(x, y - s, y + s, color=line.get_color(), alpha=0.2, linewidth=0)
    if logx:
        ax.set_xscale("log")
    elif all(np.all(np.mod(np.asarray(c[0], float), 1) == 0) for c in curves.values()):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no 1.5 meta-iterations
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if len(curves) > 4:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    elif len(curves) > 1:
        ax.legend()
    return _save(fig, path)


def plot_heatmaps(
    path: str | os.PathLike,
    grids: Mapping[str, np.ndarray],
    x_values: Sequence,
    y_values: Sequence,
    xlabel: str,
    ylabel: str,
    title: str,
    *,
    cmap: str = "viridis",
    colorbar_label: str | None = None,
) -> Path:
    """Side-by-side heatmaps sharing one colour scale, each cell annotated with its value.

    Typical use: return of each method over a grid of physics parameters (mass x friction).

    Args:
        path: the ``.png`` file to write.
        grids: panel title -> array [len(y_values), len(x_values)] (rows are y). NaN cells are
            left blank.
        x_values, y_values: the parameter values along columns / rows (tick labels).
        xlabel, ylabel, title: axis labels and figure title.
        cmap: matplotlib colour map name.
        colorbar_label: label of the shared colour bar.

    Returns:
        ``path``.
    """
    fig = heatmap_figure(grids, x_values, y_values, xlabel, ylabel, title, cmap=cmap,
                         colorbar_label=colorbar_label)
    return _save(fig, path)


def tick_label(value: Any) -> str:
    """A compact tick label: ``0.5``, ``2.4``, ``10``, ``1e-05`` (``f"{v:g}"``), so that the
    labels of one axis never mix widths like ``0.5000`` and ``2.400``; non-numbers as ``str``."""
    if hasattr(value, "item") and getattr(value, "shape", None) == ():
        value = value.item()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def heatmap_figure(
    grids: Mapping[str, np.ndarray],
    x_values: Sequence,
    y_values: Sequence,
    xlabel: str,
    ylabel: str,
    title: str,
    *,
    cmap: str = "viridis",
    colorbar_label: str | None = None,
) -> Figure:
    """The ``Figure`` that ``plot_heatmaps`` saves (same arguments, without ``path``).

    The panels share their y axis (tick labels on the left panel only) and one colour bar;
    ``constrained`` layout keeps the suptitle, panel titles and labels from overlapping.
    """
    if not grids:
        raise ValueError("plot_heatmaps needs at least one grid")
    arrays = {}
    for name, grid in grids.items():
        a = np.asarray(grid, dtype=float)
        if a.shape != (len(y_values), len(x_values)):
            raise ValueError(
                f"grid '{name}' has shape {a.shape}; expected (len(y_values), len(x_values)) = "
                f"({len(y_values)}, {len(x_values)})"
            )
        arrays[name] = a
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays.values()])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5

    n = len(arrays)
    panel_w = max(2.4, 0.8 * len(x_values))
    panel_h = max(2.0, 0.55 * len(y_values))
    fig = Figure(figsize=(1.0 + panel_w * n + 1.0, 1.2 + panel_h), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False, sharey=True)[0]
    image = None
    for ax, (name, a) in zip(axes, arrays.items()):
        image = ax.imshow(np.ma.masked_invalid(a), origin="lower", cmap=cmap, vmin=vmin,
                          vmax=vmax, aspect="auto")
        ax.set_xticks(range(len(x_values)), [tick_label(v) for v in x_values])
        ax.set_yticks(range(len(y_values)), [tick_label(v) for v in y_values])
        ax.set_xlabel(xlabel)
        ax.set_title(name)
        for (i, j), v in np.ndenumerate(a):
            if np.isfinite(v):
                # Dark text on the bright end of the colour map, light text on the dark end.
                bright = (v - vmin) / (vmax - vmin) > 0.6
                ax.text(j, i, format_number(v), ha="center", va="center", fontsize=8,
                        color="black" if bright else "white")
    for ax in axes[1:]:
        ax.tick_params(labelleft=False)
    axes[0].set_ylabel(ylabel)
    bar = fig.colorbar(image, ax=list(axes), shrink=0.9)
    if colorbar_label:
        bar.set_label(colorbar_label)
    fig.suptitle(title)
    return fig
