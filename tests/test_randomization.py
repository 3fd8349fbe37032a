import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.pendulum import Pendulum
from envs.point_nav import PointNav2D
from metarl_jax.randomization.distributions import (
    SpecError,
    categorical,
    fixed,
    int_uniform,
    log_uniform,
    normal,
    truncated_normal,
    uniform,
)
from metarl_jax.randomization.param_space import fixed_space, make_param_space

KEY = jax.random.PRNGKey(0)
NOMINAL = Pendulum().default_params()


def test_uniform_relative_and_absolute_ranges_and_moments():
    space = make_param_space(NOMINAL, {
        "m": uniform(0.5, 2.0, relative=True),
        "g": uniform(8.0, 12.0),
    })
    p = space.sample(KEY, (20000,))
    assert p.m.shape == (20000,) and p.g.shape == (20000,)
    m, g = np.asarray(p.m), np.asarray(p.g)
    assert m.min() >= 0.5 and m.max() <= 2.0
    assert g.min() >= 8.0 and g.max() <= 12.0
    assert abs(m.mean() - 1.25) < 0.02 and abs(g.mean() - 10.0) < 0.05
    # Un-randomized fields are the nominal values, broadcast.
    np.testing.assert_array_equal(np.asarray(p.l), np.ones(20000, np.float32))


def test_relative_scales_a_non_unit_nominal():
    nominal = NOMINAL.replace(l=jnp.float32(2.0))
    p = make_param_space(nominal, {"l": uniform(0.5, 1.0, relative=True)}).sample(KEY, (5000,))
    assert float(p.l.min()) >= 1.0 and float(p.l.max()) <= 2.0


def test_log_uniform_is_uniform_in_log_space():
    p = make_param_space(NOMINAL, {"m": log_uniform(0.1, 10.0)}).sample(KEY, (20000,))
    logm = np.log10(np.asarray(p.m))
    assert logm.min() >= -1 - 1e-6 and logm.max() <= 1 + 1e-6
    assert abs(logm.mean()) < 0.03 and abs(np.median(logm)) < 0.05


def test_normal_and_truncated_normal_moments_and_support():
    p = make_param_space(NOMINAL, {
        "m": normal(1.0, 0.1),
        "l": truncated_normal(1.0, 0.5, 0.8, 1.1),
    }).sample(KEY, (20000,))
    assert abs(float(p.m.mean()) - 1.0) < 0.005 and abs(float(p.m.std()) - 0.1) < 0.005
    assert float(p.l.min()) >= 0.8 and float(p.l.max()) <= 1.1
    # Truncating N(1, 0.5) to [0.8, 1.1] is nearly flat but skewed toward the mean (1.0):
    # the exact truncated mean is 0.9694 (computed from the normal pdf/cdf).
    from math import erf, exp, pi, sqrt
    a, b = (0.8 - 1.0) / 0.5, (1.1 - 1.0) / 0.5
    pdf = lambda x: exp(-x * x / 2) / sqrt(2 * pi)
    cdf = lambda x: 0.5 * (1 + erf(x / sqrt(2)))
    exact = 1.0 + 0.5 * (pdf(a) - pdf(b)) / (cdf(b) - cdf(a))
    assert abs(float(p.l.mean()) - exact) < 0.003


def test_categorical_int_uniform_and_fixed():
    space = make_param_space(NOMINAL, {
        "action_delay": int_uniform(0, 3),
        "dt": categorical([0.02, 0.05], [0.25, 0.75]),
        "max_torque": fixed(3.0),
    })
    p = space.sample(KEY, (20000,))
    assert p.action_delay.dtype == jnp.int32
    counts = np.bincount(np.asarray(p.action_delay), minlength=4)
    assert counts.shape == (4,) and np.all(np.abs(counts / 20000 - 0.25) < 0.02)
    assert abs(float((p.dt == jnp.float32(0.02)).mean()) - 0.25) < 0.02
    np.testing.assert_array_equal(np.asarray(p.max_torque), 3.0)


def test_vector_field_shapes_and_unbatched_sample():
    nominal = PointNav2D().default_params()
    space = make_param_space(nominal, {"goal": uniform([-0.5, -0.5], [0.5, 0.5])})
    assert space.sample(KEY, (7,)).goal.shape == (7, 2)
    single = space.sample(KEY)
    assert single.goal.shape == (2,) and single.max_speed.shape == ()


def test_fields_have_independent_keys():
    a = make_param_space(NOMINAL, {"m": uniform(0.5, 2.0)}).sample(KEY, (10,))
    b = make_param_space(NOMINAL, {"m": uniform(0.5, 2.0), "l": uniform(0.5, 2.0)}).sample(
        KEY, (10,))
    np.testing.assert_array_equal(np.asarray(a.m), np.asarray(b.m))
    assert not np.allclose(np.asarray(b.m), np.asarray(b.l))


def test_space_is_data_jit_takes_new_bounds_without_recompiling():
    sample = jax.jit(chex.assert_max_traces(lambda space, key: space.sample(key, (1000,)), n=1))
    lo = sample(make_param_space(NOMINAL, {"m": uniform(0.5, 1.0)}), KEY)
    hi = sample(make_param_space(NOMINAL, {"m": uniform(3.0, 4.0)}), KEY)
    assert float(lo.m.max()) <= 1.0 and float(hi.m.min()) >= 3.0  # a retrace would raise


def test_fixed_space_is_nominal():
    p = fixed_space(NOMINAL).sample(KEY, (3,))
    np.testing.assert_array_equal(np.asarray(p.m), np.ones(3))


def test_support_in_value_space():
    space = make_param_space(NOMINAL.replace(m=jnp.float32(2.0)),
                             {"m": uniform(0.5, 1.5, relative=True)})
    low, high = space.support()["m"]
    assert float(low) == 1.0 and float(high) == 3.0


@pytest.mark.parametrize("build, message", [
    (lambda: uniform(2.0, 1.0), "low must be <= high"),
    (lambda: uniform(float("nan"), 1.0), "finite"),
    (lambda: uniform(0.0, float("inf")), "finite"),
    (lambda: log_uniform(0.0, 1.0), "low > 0"),
    (lambda: log_uniform(-1.0, 1.0), "low > 0"),
    (lambda: normal(1.0, -0.1), "std must be >= 0"),
    (lambda: truncated_normal(1.0, 0.0, 0.0, 2.0), "std must be > 0"),
    (lambda: truncated_normal(1.0, 0.1, 2.0, 1.0), "low < high"),
    (lambda: categorical([1.0, 2.0], [0.5, 0.6]), "sum to 1"),
    (lambda: categorical([1.0, 2.0], [1.5, -0.5]), ">= 0"),
    (lambda: categorical([], None), "non-empty"),
    (lambda: int_uniform(0.5, 2), "integers"),
    (lambda: int_uniform(3, 1), "low must be <= high"),
])
def test_invalid_distributions_raise_clear_errors(build, message):
    with pytest.raises(SpecError, match=message):
        build()


def test_invalid_spaces_raise_clear_errors():
    with pytest.raises(SpecError, match=r"unknown field 'mass'.*Did you mean 'max_speed'"
                                        r"|unknown field 'mass'"):
        make_param_space(NOMINAL, {"mass": uniform(0.5, 2.0)})
    with pytest.raises(SpecError, match="integer"):
        make_param_space(NOMINAL, {"action_delay": uniform(0.0, 3.0)})
    with pytest.raises(SpecError, match="does not broadcast"):
        make_param_space(NOMINAL, {"m": uniform([0.5, 0.6], [1.0, 1.1])})
    goal_nominal = PointNav2D().default_params()
    with pytest.raises(SpecError, match="does not broadcast"):
        make_param_space(goal_nominal, {"goal": uniform([0.0, 0.0, 0.0], [1.0, 1.0, 1.0])})
    with pytest.raises(SpecError, match="expected a distribution"):
        make_param_space(NOMINAL, {"m": (0.5, 2.0)})


# ------------------------------------------------------------------------------ unrolled keys
def _draws(keys):
    """The hash's uses, from [n] keys in one program: split, fold_in, 32-bit (uniform; normal
    and the rest transform the same bits), 8-bit and two-draw (randint) bits."""
    def one(k):
        return {"split": jax.random.key_data(jax.random.split(k, (2, 3))),
                "fold_in": jax.random.key_data(jax.random.fold_in(k, 0x7FFF1234)),
                "uniform": jax.random.uniform(k, (5, 3), minval=-2.0, maxval=3.0),
                "randint": jax.random.randint(k, (9,), 0, 7),
                "bits8": jax.random.bits(k, (9,), jnp.uint8)}
    return jax.vmap(one)(keys)


def test_unrolled_keys_give_bit_identical_draws_without_a_loop():
    from metarl_jax.randomization.keys import unrolled

    keys = jax.random.split(jax.random.key(42), 5)
    fast = unrolled(keys)
    assert str(jax.random.key_impl(fast)) != str(jax.random.key_impl(keys))
    draws = jax.jit(_draws)
    chex.assert_trees_all_equal(draws(keys), draws(fast))
    # The point of it: no rolled hash loop in the compiled draws (JAX's CPU lowering has one).
    assert "while" not in draws.lower(fast).as_text()
    # Other keys pass through unchanged: already unrolled, another implementation, raw uint32.
    assert unrolled(fast) is fast
    rbg = jax.random.key(0, impl="rbg")
    assert unrolled(rbg) is rbg
    raw = jax.random.PRNGKey(0)
    assert unrolled(raw) is raw


def test_env_keys_checks_the_count():
    """``EnvKeys.take`` equals the split bitwise: ``test_autoreset_batch`` checks it through
    ``AutoReset.step_batch`` (one key, seeds merged with envs) against the per-env oracle."""
    from metarl_jax.randomization.keys import env_keys

    keys = jax.random.split(jax.random.PRNGKey(7), 3)  # raw uint32 keys become typed keys
    assert env_keys(keys, 3).per is None and env_keys(keys[0], 10).per == 10
    with pytest.raises(ValueError, match="3 env keys for a batch of 10"):
        env_keys(keys, 10)
