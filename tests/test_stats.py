"""metarl_jax.stats against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax import stats


def test_mean_stderr_by_hand():
    # values 1, 2, 3, 6: mean 3; squared deviations 4 + 1 + 0 + 9 = 14; s^2 = 14 / 3;
    # stderr = sqrt(14 / 3) / sqrt(4) = sqrt(14 / 12) = 1.0801234...
    mean, se = stats.mean_stderr([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0
    assert se == pytest.approx(np.sqrt(14.0 / 12.0), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2"):
        stats.mean_stderr([1.0])


def test_ci95_is_student_t():
    # n = 2: t_{0.975, 1} = 12.7062; values 0, 2: s = sqrt(2), half-width = t * s / sqrt(2) = t
    assert stats.ci95([0.0, 2.0]) == pytest.approx(12.706204736, rel=1e-9)
    # n = 4 (values above): t_{0.975, 3} = 3.182446305 times the stderr
    mean, half = stats.mean_ci95([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0
    assert half == pytest.approx(3.182446305 * np.sqrt(14.0 / 12.0), rel=1e-9)
    # t tends to the normal quantile for large n
    assert stats.t_quantile(10_000) == pytest.approx(1.96, abs=1e-3)
    # along an axis: [n=3, 2]; column 0 = 1, 2, 3 (s = 1), column 1 constant (0)
    half = stats.ci95(np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]]), axis=0)
    np.testing.assert_allclose(half, [4.302652730 / np.sqrt(3), 0.0], rtol=1e-9)
    with pytest.raises(ValueError, match="n >= 2"):
        stats.ci95([1.0])


@pytest.mark.parametrize("fraction, n, k", [
    (0.1, 30, 3),
    (0.3, 50, 15),   # 15.000001 in float32: still 15
    (0.55, 100, 55),  # 55.00000000000001 in float64: 55
    (0.1, 60, 6),
    (0.1, 32, 4),    # 3.2 -> 4
    (0.1, 4, 1),     # 0.4 -> 1
    (0.1, 5, 1),     # 0.5 -> 1
    (0.11, 30, 4),   # 3.3 -> 4
    (0.7, 10, 7),
    (0.01, 10, 1),   # at least one value
    (1.0, 7, 7),     # all of them
    (0.25, 12, 3),
])
def test_cvar_count_one_rule_static_and_traced(fraction, n, k):
    assert stats.cvar_count(fraction, n) == k
    assert isinstance(stats.cvar_count(fraction, n), int)
    traced = jax.jit(lambda f: stats.cvar_count(f, n))(jnp.float32(fraction))
    assert int(traced) == k


def test_cvar_by_hand_numpy_and_jax():
    values = [5.0, -1.0, 3.0, -4.0, 0.0, 2.0, 7.0, 1.0, -2.0, 6.0]  # sorted: -4 -2 -1 0 1 ...
    assert stats.cvar(values, 0.1) == -4.0           # k = 1
    assert stats.cvar(values, 0.3) == pytest.approx(-7.0 / 3.0, rel=1e-12)  # (-4 - 2 - 1) / 3
    assert stats.cvar(values, 0.25) == pytest.approx(-7.0 / 3.0, rel=1e-12)  # ceil(2.5) = 3
    assert stats.cvar(values, 1.0) == pytest.approx(1.7, rel=1e-12)  # 17 / 10
    assert isinstance(stats.cvar(np.array(values), 0.3), float)
    in_graph = jax.jit(lambda v: stats.cvar(v, 0.3))(jnp.asarray(values, jnp.float32))
    assert float(in_graph) == pytest.approx(-7.0 / 3.0, rel=1e-6)
    # 30 cells, values 0..29: the worst 10% are 0, 1, 2 (mean 1), not 0..3
    assert stats.cvar(np.arange(30.0)[::-1], 0.1) == 1.0


def test_seed_summary_is_mean_t_interval_and_values():
    from metarl_jax.stats import ci95, seed_summary

    summary = seed_summary(np.array([1.0, 2.0, 3.0], np.float32))
    assert summary["mean"] == 2.0 and summary["per_seed"] == [1.0, 2.0, 3.0]
    assert summary["ci95"] == pytest.approx(float(ci95(np.array([1.0, 2.0, 3.0]))))
    assert seed_summary([4.0]) == {"mean": 4.0, "ci95": None, "per_seed": [4.0]}


def test_ci_verdict_is_a_tie_whenever_the_intervals_overlap():
    from metarl_jax.stats import ci_verdict

    assert ci_verdict(10.0, 1.0, 7.0, 1.0) == "better"
    assert ci_verdict(7.0, 1.0, 10.0, 1.0) == "worse"
    assert ci_verdict(10.0, 1.0, 8.5, 1.0) == "tie"  # 9 < 9.5: the intervals overlap
    assert ci_verdict(10.0, 0.0, 10.0, 0.0) == "tie"
    # A NaN side (a diverged run) gets no verdict, not a silent "tie".
    assert ci_verdict(float("nan"), 1.0, 7.0, 1.0) == "undefined"
    assert ci_verdict(10.0, 1.0, 7.0, float("inf")) == "undefined"


def test_paired_comparison_pairs_seeds_and_gives_both_verdicts():
    # a is ahead of b by 1 on every seed but the seeds spread widely: the paired CI clears 0,
    # the two methods' own CIs overlap.
    b = np.array([0.0, 10.0, 20.0])
    out = stats.paired_comparison(b + 1.0, b)
    assert out["per_seed"] == [1.0, 1.0, 1.0] and out["mean"] == 1.0 and out["ci95"] == 0.0
    assert (out["paired_verdict"], out["ci_verdict"]) == ("better", "tie")
    one = stats.paired_comparison([0.0], [1.0])
    assert one["mean"] == -1.0 and one["paired_verdict"] is one["ci_verdict"] is None
    with pytest.raises(ValueError, match="one value per seed"):
        stats.paired_comparison([1.0, 2.0], [1.0])
