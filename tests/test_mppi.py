"""MPPI against the known optimum of quadratic costs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.algos.mppi import MPPIConfig, mppi

CONFIG = MPPIConfig(num_samples=2048, num_iters=30, noise_std=0.3, temperature=0.05)


def quadratic(target, scales):
    """``c(x) = 0.5 sum scales (x - target)^2``, minimized at ``target`` (cost 0)."""
    return lambda x: 0.5 * jnp.sum(scales * (x - target) ** 2)


def test_finds_the_minimizer_of_a_quadratic():
    target = jax.random.uniform(jax.random.PRNGKey(1), (3, 2), minval=-0.8, maxval=0.8)
    scales = jnp.array([[1.0, 4.0], [0.5, 2.0], [3.0, 1.0]])
    traces = []

    @jax.jit
    def run(key, target):
        traces.append(1)
        return mppi(key, quadratic(target, scales), jnp.zeros((3, 2)), CONFIG)

    plan, info = run(jax.random.PRNGKey(0), target)
    # Monte-Carlo error of the weighted mean is ~0.01 here; the start is ~0.5 away.
    np.testing.assert_allclose(np.asarray(plan), np.asarray(target), atol=0.05)
    start_cost = float(quadratic(target, scales)(jnp.zeros((3, 2))))
    assert float(quadratic(target, scales)(plan)) < 1e-3 * start_cost
    cost = np.asarray(info["cost"])  # of the samples: floored by their spread, but it falls
    assert cost.shape == (CONFIG.num_iters,) and cost[-1] < cost[0]
    assert float(info["best_cost"]) <= float(cost.min()) + 1e-6
    plan2, _ = run(jax.random.PRNGKey(5), -target)  # same shapes: no retrace
    np.testing.assert_allclose(np.asarray(plan2), -np.asarray(target), atol=0.05)
    assert len(traces) == 1


def test_box_constraint_gives_the_clipped_optimum():
    target = jnp.array([[2.0, -0.3]])  # outside the box [-1, 1] in x
    plan, _ = mppi(jax.random.PRNGKey(2), quadratic(target, jnp.ones((1, 2))),
                   jnp.zeros((1, 2)), CONFIG, low=-1.0, high=1.0)
    assert np.all(np.abs(np.asarray(plan)) <= 1.0)
    np.testing.assert_allclose(np.asarray(plan), [[1.0, -0.3]], atol=0.06)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="temperature"):
        MPPIConfig(temperature=0.0).validate()
    with pytest.raises(ValueError, match="num_samples"):
        MPPIConfig(num_samples=1).validate()
