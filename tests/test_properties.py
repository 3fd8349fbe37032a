"""Property-based tests (hypothesis): sampled params stay in their declared support, and the
envs never produce NaN/inf for params inside the supports we randomize over."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from envs.cartpole import CartPole, CartPoleContinuous
from envs.pendulum import Pendulum
from envs.point_nav import PointNav2D
from metarl_jax.randomization.distributions import (
    SpecError,
    categorical,
    int_uniform,
    log_uniform,
    truncated_normal,
    uniform,
)
from metarl_jax.randomization.param_space import make_param_space

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
positive = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)
NOMINAL = Pendulum().default_params()


@st.composite
def ordered_pair(draw, elements):
    a, b = draw(elements), draw(elements)
    return (min(a, b), max(a, b))


@SETTINGS
@given(bounds=ordered_pair(finite), relative=st.booleans(), seed=st.integers(0, 2**31 - 1))
def test_uniform_samples_stay_in_support(bounds, relative, seed):
    space = make_param_space(NOMINAL, {"m": uniform(*bounds, relative=relative)})
    m = np.asarray(space.sample(jax.random.PRNGKey(seed), (256,)).m)
    low, high = (np.asarray(v) for v in space.support()["m"])
    tol = 1e-6 * max(1.0, abs(bounds[0]), abs(bounds[1]))
    assert np.all(np.isfinite(m)) and np.all(m >= low - tol) and np.all(m <= high + tol)


@SETTINGS
@given(bounds=ordered_pair(positive), seed=st.integers(0, 2**31 - 1))
def test_log_uniform_samples_stay_in_support(bounds, seed):
    m = np.asarray(make_param_space(NOMINAL, {"m": log_uniform(*bounds)})
                   .sample(jax.random.PRNGKey(seed), (256,)).m)
    assert np.all(m >= bounds[0] * (1 - 1e-5)) and np.all(m <= bounds[1] * (1 + 1e-5))


@SETTINGS
@given(mean=finite, std=positive, bounds=ordered_pair(finite), seed=st.integers(0, 2**31 - 1))
def test_truncated_normal_samples_stay_in_support_or_the_spec_is_rejected(mean, std, bounds, seed):
    try:
        dist = truncated_normal(mean, std, *bounds)
    except SpecError:
        assert bounds[0] >= bounds[1]
        return
    m = np.asarray(
        make_param_space(NOMINAL, {"m": dist}).sample(jax.random.PRNGKey(seed), (256,)).m)
    assert np.all(np.isfinite(m)) and np.all(m >= bounds[0]) and np.all(m <= bounds[1])


@SETTINGS
@given(low=st.integers(-5, 5), span=st.integers(0, 5), seed=st.integers(0, 2**31 - 1))
def test_int_uniform_samples_are_integers_in_range(low, span, seed):
    d = np.asarray(make_param_space(NOMINAL, {"action_delay": int_uniform(low, low + span)})
                   .sample(jax.random.PRNGKey(seed), (256,)).action_delay)
    assert d.dtype == np.int32 and d.min() >= low and d.max() <= low + span


@SETTINGS
@given(values=st.lists(finite, min_size=1, max_size=5), seed=st.integers(0, 2**31 - 1))
def test_categorical_samples_are_among_the_values(values, seed):
    dt = np.asarray(make_param_space(NOMINAL, {"dt": categorical(values)})
                    .sample(jax.random.PRNGKey(seed), (64,)).dt)
    assert set(np.unique(dt)).issubset(set(np.float32(values)))


@SETTINGS
@given(bad=st.sampled_from([math.nan, math.inf, -math.inf]), other=finite)
def test_non_finite_bounds_are_rejected(bad, other):
    for build in (lambda: uniform(bad, other), lambda: uniform(other, bad),
                  lambda: truncated_normal(other, 1.0, bad, other)):
        try:
            build()
        except SpecError as e:
            assert "finite" in str(e) or "low" in str(e)
        else:
            raise AssertionError("a non-finite bound was accepted")


# ---- envs never produce NaN/inf inside their physical supports --------------------------------

@functools.lru_cache(maxsize=None)
def _episode_program(env_type, max_steps):
    """One compiled rollout per env type (params, actions and the reset key are arguments):
    hypothesis's examples then cost one compile, not one each."""
    env = env_type(max_steps=max_steps)

    @jax.jit
    def run(key, params, actions):
        state, obs = env.reset(key, params)

        def step(state, action):
            state, obs, reward, done, _ = env.step(jax.random.PRNGKey(0), state, action, params)
            return state, (obs, reward, done)

        return jax.lax.scan(step, state, actions)[1]

    return run


def _rollout_finite(env, params, actions, seed):
    """Every observation and reward of the episode is finite, up to and including the step
    that ends it (after that a learner resets the env: an unterminated CartPole with a light,
    short pole and a strong push does spin up to overflow, e.g. masscart 0.25, masspole 0.1,
    length 0.0625, force 40, as the classic equations do in gymnasium too). ``env`` is rebuilt
    as ``type(env)(max_steps=env.max_steps)``."""
    obs, reward, done = _episode_program(type(env), env.max_steps)(
        jax.random.PRNGKey(seed), params, actions)
    ended_before = jnp.cumsum(done) - done > 0  # [T]: an earlier step ended the episode
    in_episode = ~ended_before
    return bool(jnp.all(jnp.isfinite(obs) | ~in_episode[:, None])
                and jnp.all(jnp.isfinite(reward) | ~in_episode))


scale = st.floats(0.1, 10.0, allow_nan=False)


@SETTINGS
@given(m=scale, length=scale, g=scale, torque=scale, dt=st.floats(0.005, 0.2),
       seed=st.integers(0, 2**31 - 1))
def test_pendulum_is_finite_for_params_in_support(m, length, g, torque, dt, seed):
    env = Pendulum()
    params = env.default_params().replace(m=jnp.float32(m), l=jnp.float32(length),
                                          g=jnp.float32(10 * g),
                                          max_torque=jnp.float32(2 * torque), dt=jnp.float32(dt))
    actions = jax.random.uniform(jax.random.PRNGKey(seed), (200, 1), minval=-50, maxval=50)
    assert _rollout_finite(env, params, actions, seed)


@SETTINGS
@given(masscart=scale, masspole=scale, length=scale, force=scale, seed=st.integers(0, 2**31 - 1),
       continuous=st.booleans())
def test_cartpole_is_finite_for_params_in_support(masscart, masspole, length, force, seed,
                                                  continuous):
    env = CartPoleContinuous(max_steps=300) if continuous else CartPole(max_steps=300)
    params = env.default_params().replace(
        masscart=jnp.float32(masscart), masspole=jnp.float32(0.1 * masspole),
        length=jnp.float32(0.5 * length), force_mag=jnp.float32(10 * force))
    key = jax.random.PRNGKey(seed)
    actions = (jax.random.uniform(key, (300, 1), minval=-1, maxval=1) if continuous
               else jax.random.randint(key, (300,), 0, 2))
    assert _rollout_finite(env, params, actions, seed)


@SETTINGS
@given(goal=st.tuples(finite, finite), speed=st.floats(1e-3, 10.0),
       seed=st.integers(0, 2**31 - 1))
def test_point_nav_is_finite_for_params_in_support(goal, speed, seed):
    env = PointNav2D()
    params = env.default_params().replace(goal=jnp.asarray(goal, jnp.float32),
                                          max_speed=jnp.float32(speed))
    actions = jax.random.normal(jax.random.PRNGKey(seed), (100, 2)) * 100
    assert _rollout_finite(env, params, actions, seed)
