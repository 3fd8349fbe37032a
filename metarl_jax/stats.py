"""The statistics every report uses: mean +- standard error, 95% confidence interval, CVaR.

One rule per quantity, so two experiments' numbers mean the same thing:

* **standard error** of a mean over ``n`` independent values (seeds, tasks, cells):
  ``s / sqrt(n)`` with ``s`` the sample standard deviation (``ddof=1``); needs ``n >= 2``.
* **95% confidence interval** of that mean: ``mean +- t_{0.975, n-1} * s / sqrt(n)``, Student's t
  with ``n - 1`` degrees of freedom, at every ``n`` (``t`` is 12.71 at ``n = 2``, 2.26 at 10, 2.01
  at 50 and tends to the normal 1.96: the t rule is the right one for the 2-8 seeds of a
  comparison and costs nothing at large ``n``).
* **CVaR_eps** (the mean of the worst ``eps``-fraction, lower = worse): the mean of the
  ``k = cvar_count(eps, N)`` lowest of ``N`` values, ``k = ceil(eps * N)`` clipped to ``[1, N]``,
  with ``eps * N`` computed in float32 and lowered by ``1e-4`` before the ceiling, so float
  rounding cannot add a value (``0.3 * 50`` is 15.000001 in float32, ``0.55 * 100`` is
  55.00000000000001 in float64; both must give 15 and 55);
  a product that exceeds an integer by at most 1e-4 counts as that integer. The same count is
  the in-graph selection rule of ``algos/epopt.py`` (``epsilon`` may be traced there).

This module sits at the package root (not in ``transfer/``) because every layer uses it: the
in-graph CVaR metric of ``randomization/robust.py``, EPOpt's selection in ``algos/``, the reports
of ``transfer/`` and the experiments; it imports numpy, scipy and JAX only.
"""

from __future__ import annotations

from typing import Tuple, Union

import jax
import jax.numpy as jnp
import numpy as np

CVAR_TOLERANCE = 1e-4  # eps * N within this above an integer counts as that integer
Count = Union[int, jax.Array]


def cvar_count(fraction, n: int) -> Count:
    """``ceil(fraction * n)`` clipped to ``[1, n]``: how many of ``n`` values CVaR averages.

    A Python ``fraction`` gives a Python ``int`` (a static slice size); a JAX one (traced, e.g.
    EPOpt's epsilon) gives an ``[] int32``. Both compute ``fraction * n - 1e-4`` in float32, so
    they agree bit for bit (module doc)."""
    if isinstance(fraction, (int, float, np.floating, np.integer)):
        product = np.float32(fraction) * np.float32(n) - np.float32(CVAR_TOLERANCE)
        return int(min(max(np.ceil(product), 1), n))
    k = jnp.ceil(jnp.asarray(fraction, jnp.float32) * n - CVAR_TOLERANCE)
    return jnp.clip(k, 1, n).astype(jnp.int32)


def cvar(values, fraction: float):
    """Mean of the ``cvar_count(fraction, N)`` lowest of ``values[N]`` (flattened).

    numpy in (or a list) -> Python float, computed in float64; a JAX array in (also inside
    ``jit``) -> ``[]`` JAX array in its dtype. ``fraction`` is static here."""
    if isinstance(values, jax.Array):
        values = values.reshape(-1)
        return jnp.sort(values)[: cvar_count(fraction, values.shape[0])].mean()
    values = np.asarray(values, np.float64).reshape(-1)
    return float(np.sort(values)[: cvar_count(fraction, values.size)].mean())


def mean_stderr(values) -> Tuple[float, float]:
    """``(mean, standard error)`` of ``values[n]`` (flattened, float64; ``n >= 2``)."""
    values = _sample(values)
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def t_quantile(n: int, level: float = 0.95) -> float:
    """The two-sided ``level`` Student-t factor for a mean of ``n`` values (``n - 1`` dof)."""
    if n < 2:
        raise ValueError(f"a confidence interval needs n >= 2 values, got {n}")
    from scipy import stats as scipy_stats  # on demand: scipy.stats takes a second to import

    return float(scipy_stats.t.ppf(0.5 + level / 2, n - 1))


def ci95(values, axis: int = 0) -> np.ndarray:
    """Half-width of the 95% confidence interval of the mean of ``values`` along ``axis``:
    ``t_{0.975, n-1} * s / sqrt(n)`` (module doc). Shape: ``values`` without ``axis``."""
    values = np.asarray(values, np.float64)
    n = values.shape[axis]
    return t_quantile(n) * values.std(axis, ddof=1) / np.sqrt(n)


def mean_ci95(values) -> Tuple[float, float]:
    """``(mean, 95% half-width)`` of ``values[n]`` (flattened, float64; ``n >= 2``)."""
    values = _sample(values)
    return float(values.mean()), float(ci95(values))


def seed_summary(values) -> dict:
    """``{"mean", "ci95" (None for one value), "per_seed"}`` of per-seed results ``values[S]``:
    the shape every experiment's ``summary.json`` uses for a number measured over seeds."""
    values = np.asarray(values, np.float64).reshape(-1)
    ci = float(ci95(values)) if values.size >= 2 else None
    return dict(mean=float(values.mean()), ci95=ci, per_seed=values.tolist())


def ci_verdict(mean_a: float, ci_a: float, mean_b: float, ci_b: float) -> str:
    """``a`` against ``b`` from their means and 95% half-widths: "better" / "worse" only when
    the two intervals do not overlap, else "tie" (the verdict every method comparison reports);
    "undefined" when a mean or half-width is NaN or infinite (e.g. a diverged adaptation), where
    every comparison would be False and a silent "tie" would be garbage."""
    if not np.all(np.isfinite([mean_a, ci_a, mean_b, ci_b])):
        return "undefined"
    if mean_a - ci_a > mean_b + ci_b:
        return "better"
    return "worse" if mean_a + ci_a < mean_b - ci_b else "tie"


def paired_comparison(a, b) -> dict:
    """Method ``a`` against ``b`` over paired seeds (seed i of both started from the same key),
    from per-seed results ``a[S]``, ``b[S]``: ``seed_summary`` of the difference ``a - b`` plus
    ``paired_verdict`` (the difference's 95% CI against 0) and ``ci_verdict`` (``a``'s and
    ``b``'s own 95% CIs, ``ci_verdict``); both verdicts None with one seed."""
    a, b = np.asarray(a, np.float64).reshape(-1), np.asarray(b, np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"paired_comparison needs one value per seed on both sides, got "
                         f"{a.size} and {b.size}")
    diff = seed_summary(a - b)
    paired = unpaired = None
    if diff["ci95"] is not None:
        mine, theirs = seed_summary(a), seed_summary(b)
        paired = ci_verdict(diff["mean"], diff["ci95"], 0.0, 0.0)
        unpaired = ci_verdict(mine["mean"], mine["ci95"], theirs["mean"], theirs["ci95"])
    return dict(diff, paired_verdict=paired, ci_verdict=unpaired)


def _sample(values) -> np.ndarray:
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size < 2:
        raise ValueError(f"need at least 2 values for a standard error, got {values.size}")
    return values
