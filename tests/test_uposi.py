"""UP-OSI: the context wrappers, and OSI recovering a parameter with a closed-form relation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from envs.pendulum import Pendulum
from metarl_jax.algos.uposi import OSIConfig, OSILearner, deployment_trace
from metarl_jax.core.context_wrappers import (
    ContextLayout,
    ParamObservation,
    TransitionHistory,
    denormalize_params,
    normalize_params,
)
from metarl_jax.core.env import Box, Env, time_limit
from metarl_jax.core.wrappers import AutoReset
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import fixed_space, make_param_space


@struct.dataclass
class LinearParams:
    theta: jax.Array = 1.0


@struct.dataclass
class LinearState:
    x: jax.Array
    time: jax.Array


class LinearSystem(Env):
    """``x' = x + theta * a``: theta = (x' - x) / a exactly, from any one transition with a != 0."""

    max_steps = 20

    def default_params(self):
        return LinearParams(jnp.float32(1.0))

    def reset(self, key, params):
        x = jax.random.uniform(key, (), minval=-1.0, maxval=1.0)
        return LinearState(x, jnp.int32(0)), x[None]

    def step(self, key, state, action, params):
        x = state.x + params.theta * action[0]
        time = state.time + 1
        truncated = time_limit(time, self.max_steps)
        info = {"truncated": truncated, "terminated": jnp.bool_(False)}
        return LinearState(x, time), x[None], -x ** 2, truncated, info

    @property
    def observation_space(self):
        return Box(-jnp.inf * jnp.ones(1), jnp.inf * jnp.ones(1), (1,))

    @property
    def action_space(self):
        return Box(-jnp.ones(1), jnp.ones(1), (1,))


def _probe_act(up, key, obs, deterministic):
    """A stand-in universal policy: random torques of magnitude in [0.5, 1] (informative)."""
    k1, k2 = jax.random.split(key)
    magnitude = jax.random.uniform(k1, obs.shape[:-1] + (1,), minval=0.5, maxval=1.0)
    return jnp.where(jax.random.bernoulli(k2, 0.5, magnitude.shape), magnitude, -magnitude)


def test_transition_history_records_s_a_delta_and_validity():
    env = TransitionHistory(LinearSystem(), history=3)
    params = LinearParams(jnp.float32(2.0))
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    x0 = float(obs[0])
    assert obs.shape == (1 + 3 * 4,) and np.all(np.asarray(obs[1:]) == 0)
    state, obs, *_ = env.step(jax.random.PRNGKey(1), state, jnp.array([0.5]), params)
    state, obs, *_ = env.step(jax.random.PRNGKey(2), state, jnp.array([-0.75]), params)
    window = np.asarray(obs[1:]).reshape(3, 4)
    np.testing.assert_array_equal(window[0], 0)  # still padding
    np.testing.assert_allclose(window[1], [x0, 0.5, 1.0, 1.0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(window[2], [x0 + 1.0, -0.75, -1.5, 1.0], rtol=1e-5, atol=1e-6)
    # Under AutoReset the history restarts with each episode.
    auto = AutoReset(env)
    space = fixed_space(params)
    state, obs = auto.reset(jax.random.PRNGKey(0), space)
    for t in range(LinearSystem.max_steps):
        state, obs, _, done, _ = auto.step(jax.random.PRNGKey(t), state, jnp.array([0.1]), space)
    assert bool(done) and np.all(np.asarray(obs[1:]) == 0)


def test_param_observation_normalizes_and_inverts():
    params = Pendulum().default_params().replace(m=jnp.float32(2.0), l=jnp.float32(0.6))
    z = normalize_params(params, ("m", "l"), (0.5, 0.6), (2.0, 1.5))
    np.testing.assert_allclose(np.asarray(z), [1.0, -1.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(denormalize_params(z, (0.5, 0.6), (2.0, 1.5))),
                               [2.0, 0.6], rtol=1e-6)
    env = ParamObservation(TransitionHistory(Pendulum(), 2), ("m", "l"), (0.5, 0.6), (2.0, 1.5))
    _, obs = env.reset(jax.random.PRNGKey(0), params)
    layout = ContextLayout.of(env)
    raw, history, true = layout.split(obs)
    assert (raw.shape, history.shape, true.shape) == ((3,), (2 * 8,), (2,))
    np.testing.assert_allclose(np.asarray(true), [1.0, -1.0], rtol=1e-6)
    assert env.observation_space.shape == obs.shape


@pytest.fixture(scope="module")
def linear_osi():
    env = ParamObservation(TransitionHistory(LinearSystem(), 2), ("theta",), (0.5,), (2.0,))
    space = make_param_space(LinearSystem().default_params(), {"theta": uniform(0.5, 2.0)})
    osi = OSILearner(env, _probe_act)
    config = OSIConfig(num_envs=32, num_steps=20, num_updates=4, buffer_collections=4,
                       fit_steps=600, batch_size=128, hidden_sizes=(64, 64), learning_rate=3e-3)
    state = osi.init(jax.random.PRNGKey(0), config, space)
    state, _ = osi.train_chunk(state, config, 2, None)
    state, metrics = osi.train_chunk(state, config, 2, None)
    return osi, config, space, state, metrics


def test_osi_recovers_theta_of_a_linear_system(linear_osi):
    osi, config, space, state, metrics = linear_osi
    assert osi.traces["train_chunk"] == 1  # both chunks ran the same compiled program
    params = space.sample(jax.random.PRNGKey(7), (64,))
    trace = jax.vmap(lambda p, k: deployment_trace(osi, None, state.params, state.in_stats,
                                                   config, p, k, 20))
    mu_hat, mu_true, _ = trace(params, jax.random.split(jax.random.PRNGKey(8), 64))
    theta_hat = np.asarray(denormalize_params(mu_hat, (0.5,), (2.0,)))[:, 2:, 0]  # full window
    theta = np.asarray(params.theta)[:, None]
    rmse = float(np.sqrt(np.mean((theta_hat - theta) ** 2)))
    prior_std = 1.5 / np.sqrt(12.0)
    # The exact answer is (x' - x) / a; a 64-unit MLP gets within a tenth of the prior's spread.
    assert rmse < 0.1 * prior_std, rmse
    # With no transition yet, nothing is identifiable: the estimate sits near the prior mean.
    theta_0 = np.asarray(denormalize_params(mu_hat, (0.5,), (2.0,)))[:, 0, 0]
    assert np.all(np.abs(theta_0 - 1.25) < 0.3)


def test_deployed_policy_never_reads_the_true_params(linear_osi):
    osi, config, _, state, _ = linear_osi
    # A universal policy that uses all of its input (raw obs and the params slot).
    up_act = lambda up, key, o, deterministic: jnp.tanh(o.sum(-1, keepdims=True))
    deployed = OSILearner(osi.env, up_act)
    obs = jnp.concatenate([jnp.array([0.3]), jnp.linspace(-1, 1, osi.layout.history),
                           jnp.array([0.2])])
    act = lambda o: np.asarray(deployed.act(None, state.params, state.in_stats, config,
                                            jax.random.PRNGKey(0), o))
    np.testing.assert_array_equal(act(obs), act(obs.at[-1].set(-0.9)))  # true params: ignored
    assert not np.allclose(act(obs), act(obs.at[1:-1].multiply(-1.0)))  # the history: read
