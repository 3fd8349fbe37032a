"""Oracle tests for the classic-control envs (gymnasium stepped side by side) and PointNav2D.

Gymnasium integrates in float64. Long trajectories are compared with the JAX env running in
float64 too (``jax.enable_x64``), because a chaotic pendulum amplifies float32 rounding; float32 is
checked teacher-forced: one JAX step from every gymnasium state.
"""

from __future__ import annotations

import dataclasses

import chex
import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.cartpole import CartPole, CartPoleContinuous, CartPoleParams, CartPoleState
from envs.pendulum import Pendulum, PendulumParams, PendulumState
from envs.point_nav import PointNav2D, PointNavParams, PointNavState

KEY = jax.random.PRNGKey(0)
# Observations are float32 in both implementations: float64 states that agree to 1e-10 can still
# round to adjacent float32 values, so float64 runs compare obs to one float32 ulp.
F32_ULP = float(np.finfo(np.float32).eps)

PENDULUM_NON_DEFAULT = dict(m=1.3, l=0.8, g=9.81, max_torque=3.0, dt=0.03, max_speed=6.0)
CARTPOLE_NON_DEFAULT = dict(
    gravity=11.0, masscart=1.7, masspole=0.25, length=0.8, force_mag=13.0, tau=0.015,
    x_threshold=1.0, theta_threshold_radians=0.15,
)


def _params64(cls, overrides):
    """``cls(**overrides)`` with its float fields as float64 arrays, built from the Python values
    (not through float32: float32(0.05) != 0.05). Only meaningful inside ``jax.enable_x64``."""
    params = cls(**overrides)
    return params.replace(
        **{
            f.name: jnp.asarray(getattr(params, f.name),
                                jnp.int32 if f.name == "action_delay" else jnp.float64)
            for f in dataclasses.fields(params)
        }
    )


def _with(params, overrides):
    return params.replace(**{k: jnp.asarray(v, jnp.float32) for k, v in overrides.items()})


def _stack(params_list):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params_list)


# --------------------------------------------------------------------------------------------
# Pendulum vs gymnasium Pendulum-v1


def _gym_pendulum(overrides, seed):
    genv = gym.make("Pendulum-v1").unwrapped  # unwrapped: no TimeLimit(200), no checker
    genv.reset(seed=seed)
    for name, value in overrides.items():
        setattr(genv, name, value)
    return genv


def _pendulum_gym_rollout(overrides, seed, n_steps, action_dtype):
    """Gymnasium trajectory from a chosen initial state under random actions, 1.5x beyond the
    torque bound so that clipping is exercised. Returns initial state, actions, states, obs,
    rewards."""
    rng = np.random.default_rng(seed)
    genv = _gym_pendulum(overrides, seed)
    max_torque = overrides.get("max_torque", 2.0)
    state0 = rng.uniform([-np.pi, -1.0], [np.pi, 1.0])
    actions = rng.uniform(-1.5 * max_torque, 1.5 * max_torque,
                          size=(n_steps, 1)).astype(action_dtype)
    genv.state = state0.copy()
    states, obs, rewards = [], [], []
    for a in actions:
        o, r, terminated, truncated, _ = genv.step(a)
        assert not terminated and not truncated
        states.append(np.array(genv.state))
        obs.append(o)
        rewards.append(r)
    return state0, actions, np.array(states), np.array(obs), np.array(rewards)


@pytest.mark.parametrize("overrides", [{}, PENDULUM_NON_DEFAULT], ids=["default", "non_default"])
def test_pendulum_matches_gymnasium_float64_trajectory(overrides):
    n_steps = 300
    # float64 actions on the gym side: with a float32 action gymnasium computes the torque term
    # 3 / (m l^2) * u in float32 (numpy scalar promotion), which a float64 run would not match.
    state0, actions, states, obs, rewards = _pendulum_gym_rollout(overrides, 1, n_steps, np.float64)
    max_speed = overrides.get("max_speed", 8.0)
    max_torque = overrides.get("max_torque", 2.0)
    assert np.any(np.abs(states[:, 1]) == max_speed), "trajectory should hit the speed clip"
    assert np.any(np.abs(actions) > max_torque), "actions should exercise the torque clip"

    env = Pendulum(max_steps=10_000)
    with jax.enable_x64(True):
        params = _params64(PendulumParams, overrides)
        state = PendulumState(theta=jnp.float64(state0[0]), theta_dot=jnp.float64(state0[1]),
                              time=jnp.int32(0))

        def body(s, a):
            s, o, r, done, info = env.step(KEY, s, a, params)
            return s, (jnp.stack([s.theta, s.theta_dot]), o, r, done)

        _, (j_states, j_obs, j_rewards, j_done) = jax.jit(lambda s, a: jax.lax.scan(body, s, a))(
            state, jnp.asarray(actions)
        )
        j_states, j_obs, j_rewards, j_done = map(np.asarray, (j_states, j_obs, j_rewards, j_done))

    assert j_obs.dtype == np.float32 and j_rewards.dtype == np.float64
    np.testing.assert_allclose(j_states, states, rtol=0, atol=1e-8)
    np.testing.assert_allclose(j_obs, obs, rtol=F32_ULP, atol=1e-8)
    np.testing.assert_allclose(j_rewards, rewards, rtol=0, atol=1e-8)
    assert not j_done.any()


@pytest.mark.parametrize("overrides", [{}, PENDULUM_NON_DEFAULT], ids=["default", "non_default"])
def test_pendulum_matches_gymnasium_float32_one_step(overrides):
    n_steps = 300
    state0, actions, states, obs, rewards = _pendulum_gym_rollout(overrides, 2, n_steps, np.float32)
    before = np.concatenate([state0[None], states[:-1]]).astype(np.float32)
    env = Pendulum()
    params = _with(env.default_params(), overrides)
    state = PendulumState(
        theta=jnp.asarray(before[:, 0]), theta_dot=jnp.asarray(before[:, 1]),
        time=jnp.zeros(n_steps, jnp.int32),
    )
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))
    _, j_obs, j_rewards, _, _ = step(KEY, state, jnp.asarray(actions), params)
    assert j_obs.dtype == jnp.float32 and j_rewards.dtype == jnp.float32
    # theta is unwrapped (|theta| reaches tens of radians), so float32 rounding of the angle
    # alone is a few 1e-6; the tolerance is relative on top of 1e-5 absolute.
    np.testing.assert_allclose(j_obs, obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(j_rewards, rewards, rtol=1e-5, atol=1e-5)


def test_pendulum_reset_truncation_and_spaces():
    env = Pendulum()
    params = env.default_params()
    states, obs = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, 4000), params)
    th, thdot = np.asarray(states.theta), np.asarray(states.theta_dot)
    assert th.min() >= -np.pi and th.max() <= np.pi and thdot.min() >= -1 and thdot.max() <= 1
    # uniform: spread over the whole interval, mean near 0 (std of the mean ~0.03 and ~0.01)
    assert th.min() < -3.0 and th.max() > 3.0 and thdot.min() < -0.99 and thdot.max() > 0.99
    assert abs(th.mean()) < 0.15 and abs(thdot.mean()) < 0.05
    assert obs.shape == (4000, 3) and obs.dtype == jnp.float32
    np.testing.assert_allclose(obs[:, 0], np.cos(th), atol=1e-6)
    assert states.time.dtype == jnp.int32 and not states.time.any()
    assert env.observation_space.contains(obs[0]) and env.action_space.shape == (1,)
    assert env.max_steps == 200

    state, _ = env.reset(KEY, params)

    def body(s, _):
        s, _, r, done, info = env.step(KEY, s, jnp.ones(1, jnp.float32), params)
        return s, (done, info["truncated"], info["terminated"], r)

    final, (done, truncated, terminated, r) = jax.lax.scan(body, state, None, length=200)
    assert r.dtype == jnp.float32 and done.dtype == jnp.bool_
    assert int(final.time) == 200
    assert not done[:199].any() and done[199] and truncated[199] and not truncated[:199].any()
    assert not terminated.any()


# --------------------------------------------------------------------------------------------
# CartPole vs gymnasium CartPole-v1


def _gym_cartpole_episodes(overrides, seed, n_episodes, max_len=500):
    """Run gymnasium episodes under an epsilon-greedy balancing policy (so lengths vary from a
    dozen steps to the full ``max_len``). Returns per-episode initial states, padded actions,
    and the gym states / obs / rewards / terminated flags and lengths."""
    genv = gym.make("CartPole-v1").unwrapped
    for name, value in overrides.items():
        setattr(genv, name, value)
    genv.total_mass = genv.masspole + genv.masscart  # derived attributes are not recomputed by gym
    genv.polemass_length = genv.masspole * genv.length
    rng = np.random.default_rng(seed)
    out = dict(state0=[], actions=[], states=[], obs=[], rewards=[], terminated=[], length=[])
    for episode in range(n_episodes):
        genv.reset(seed=seed * 1000 + episode)
        out["state0"].append(np.array(genv.state))
        eps = rng.choice([0.1, 0.5, 1.0])
        actions = np.zeros(max_len, np.int32)
        states, obs, rewards, terms = (np.zeros((max_len, 4)), np.zeros((max_len, 4), np.float32),
                                       np.zeros(max_len), np.zeros(max_len, bool))
        for t in range(max_len):
            x, x_dot, theta, theta_dot = genv.state
            greedy = int(theta + 0.3 * theta_dot + 0.01 * x + 0.05 * x_dot > 0)
            actions[t] = rng.integers(2) if rng.random() < eps else greedy
            o, r, term, _, _ = genv.step(int(actions[t]))
            states[t], obs[t], rewards[t], terms[t] = genv.state, o, r, term
            if term:
                break
        for k, v in zip(["actions", "states", "obs", "rewards", "terminated"],
                        [actions, states, obs, rewards, terms]):
            out[k].append(v)
        out["length"].append(t + 1)
    return {k: np.array(v) for k, v in out.items()}


def _cartpole_state(batch, dtype):
    s = jnp.asarray(batch, dtype)
    return CartPoleState(x=s[..., 0], x_dot=s[..., 1], theta=s[..., 2], theta_dot=s[..., 3],
                         time=jnp.zeros(s.shape[:-1], jnp.int32))


@pytest.mark.parametrize("overrides", [{}, CARTPOLE_NON_DEFAULT], ids=["default", "non_default"])
def test_cartpole_matches_gymnasium_float64_episodes(overrides):
    # Episodes are cut at 200 steps: open loop, the upright pole is unstable, and the 1-ulp
    # differences of XLA's fused multiply-adds grow past 1e-8 after ~250 steps (the per-step
    # agreement over full 500-step episodes is checked teacher-forced below).
    data = _gym_cartpole_episodes(overrides, seed=3, n_episodes=30, max_len=200)
    lengths = data["length"]
    assert lengths.min() < 50 and lengths.max() == 200, (
        "episodes should both fail early and survive")
    env = CartPole(max_steps=10_000)
    with jax.enable_x64(True):
        params = _params64(CartPoleParams, overrides)
        state0 = _cartpole_state(data["state0"], jnp.float64)

        def episode(s, actions):
            def body(s, a):
                s, o, r, done, info = env.step(KEY, s, a, params)
                return s, (jnp.stack([s.x, s.x_dot, s.theta, s.theta_dot]), o, r,
                           info["terminated"])

            return jax.lax.scan(body, s, actions)[1]

        out = jax.jit(jax.vmap(episode))(state0, jnp.asarray(data["actions"]))
        j_states, j_obs, j_rewards, j_term = map(np.asarray, out)

    for i, n in enumerate(lengths):
        np.testing.assert_allclose(j_states[i, :n], data["states"][i, :n], rtol=0, atol=1e-8)
        np.testing.assert_allclose(j_obs[i, :n], data["obs"][i, :n], rtol=F32_ULP, atol=1e-8)
        np.testing.assert_array_equal(j_rewards[i, :n], data["rewards"][i, :n])
        np.testing.assert_array_equal(j_term[i, :n], data["terminated"][i, :n])
    assert data["terminated"].any() and (j_rewards[:, 0] == 1.0).all()


@pytest.mark.parametrize("overrides", [{}, CARTPOLE_NON_DEFAULT], ids=["default", "non_default"])
@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_cartpole_matches_gymnasium_one_step(overrides, precision):
    """Teacher-forced: one JAX step from every gymnasium state of 500-step-capped episodes."""
    data = _gym_cartpole_episodes(overrides, seed=4, n_episodes=10)
    assert data["length"].max() == 500
    before, actions, after_obs, after_states, term = [], [], [], [], []
    for i, n in enumerate(data["length"]):
        before.append(np.concatenate([data["state0"][i][None], data["states"][i, : n - 1]]))
        actions.append(data["actions"][i, :n])
        after_obs.append(data["obs"][i, :n])
        after_states.append(data["states"][i, :n])
        term.append(data["terminated"][i, :n])
    before, actions, after_obs, after_states, term = map(
        np.concatenate, (before, actions, after_obs, after_states, term))
    env = CartPole()
    step = jax.jit(jax.vmap(env.step, in_axes=(None, 0, 0, None)))
    with jax.enable_x64(precision == "float64"):
        if precision == "float64":
            params = _params64(CartPoleParams, overrides)
            state, tol = _cartpole_state(before, jnp.float64), 1e-12
        else:
            params = _with(env.default_params(), overrides)
            state, tol = _cartpole_state(before, jnp.float32), 1e-5
        new_state, j_obs, j_rewards, j_done, info = step(KEY, state, jnp.asarray(actions), params)
        j_states = np.stack([new_state.x, new_state.x_dot, new_state.theta, new_state.theta_dot],
                            axis=-1)
    assert j_obs.dtype == jnp.float32 and j_rewards.dtype == jnp.float32
    np.testing.assert_allclose(j_states, after_states, rtol=tol, atol=tol)
    obs_tol = (dict(rtol=1e-5, atol=1e-5) if precision == "float32"
               else dict(rtol=F32_ULP, atol=1e-8))
    np.testing.assert_allclose(j_obs, after_obs, **obs_tol)
    np.testing.assert_array_equal(j_rewards, 1.0)
    np.testing.assert_array_equal(info["terminated"], term)
    np.testing.assert_array_equal(j_done, term)


def test_cartpole_continuous_equals_discrete_at_plus_minus_one():
    discrete, continuous = CartPole(), CartPoleContinuous()
    params = _with(discrete.default_params(), CARTPOLE_NON_DEFAULT)
    state0, _ = discrete.reset(KEY, params)
    bits = jax.random.bernoulli(jax.random.PRNGKey(1), 0.5, (60,)).astype(jnp.int32)

    def rollout(env, actions):
        def body(s, a):
            s, o, r, done, info = env.step(KEY, s, a, params)
            return s, (o, r, done, info["terminated"])

        return jax.lax.scan(body, state0, actions)[1]

    d = jax.jit(lambda a: rollout(discrete, a))(bits)
    c = jax.jit(lambda a: rollout(continuous, a))((2.0 * bits - 1.0)[:, None].astype(jnp.float32))
    for x, y in zip(d, c):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-6)
    # beyond +-1 the push saturates
    s_big = continuous.step(KEY, state0, jnp.array([5.0]), params)[0]
    s_one = continuous.step(KEY, state0, jnp.array([1.0]), params)[0]
    chex.assert_trees_all_close(s_big, s_one)


def test_cartpole_reset_truncation_and_spaces():
    env = CartPole()
    params = env.default_params()
    states, obs = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, 1000), params)
    assert obs.shape == (1000, 4) and obs.dtype == jnp.float32
    assert np.abs(obs).max() <= 0.05 and np.abs(obs).max() > 0.049
    assert env.action_space.n == 2 and env.max_steps == 500 and env.observation_space.shape == (4,)
    assert CartPoleContinuous().action_space.shape == (1,)
    # the horizon: a balanced state at time 498 is not done after one step and truncated after two
    state = CartPoleState(x=0.0, x_dot=0.0, theta=0.0, theta_dot=0.0, time=jnp.int32(498))
    state, _, _, done, info = env.step(KEY, state, jnp.int32(1), params)
    assert not done and not info["truncated"]
    state, _, r, done, info = env.step(KEY, state, jnp.int32(0), params)
    assert (done and info["truncated"] and not info["terminated"] and int(state.time) == 500
            and r == 1.0)
    # termination beyond the thresholds, reward 1.0 on the terminating step
    fallen = CartPoleState(x=0.0, x_dot=0.0, theta=0.2, theta_dot=1.0, time=jnp.int32(0))
    _, _, r, done, info = env.step(KEY, fallen, jnp.int32(1), params)
    assert (done and info["terminated"] and not info["truncated"] and r == 1.0
            and r.dtype == jnp.float32)


# --------------------------------------------------------------------------------------------
# PointNav2D


def test_point_nav_clipping_reward_and_truncation():
    env = PointNav2D()
    params = env.default_params()
    np.testing.assert_allclose(params.goal, [0.3, -0.2])
    state, obs = env.reset(KEY, params)
    np.testing.assert_array_equal(obs, [0.0, 0.0])

    # x is clipped to +0.1, y (0.05) is within bounds
    state, obs, r, done, info = env.step(KEY, state, jnp.array([0.7, 0.05], jnp.float32), params)
    np.testing.assert_allclose(obs, [0.1, 0.05], atol=1e-7)
    # reward by hand: -|(0.1, 0.05) - (0.3, -0.2)| = -sqrt(0.2^2 + 0.25^2) = -sqrt(0.1025)
    np.testing.assert_allclose(r, -np.sqrt(0.1025), rtol=1e-6)
    assert r.dtype == jnp.float32 and not done and not info["terminated"]
    state, obs, r, _, _ = env.step(KEY, state, jnp.array([-3.0, -0.2], jnp.float32), params)
    np.testing.assert_allclose(obs, [0.0, -0.05], atol=1e-7)
    np.testing.assert_allclose(r, -np.hypot(0.3, 0.15), rtol=1e-6)

    def body(s, _):
        s, _, _, done, info = env.step(KEY, s, jnp.zeros(2), params)
        return s, (done, info["truncated"], info["terminated"])

    final, (done, truncated, terminated) = jax.lax.scan(body, env.reset(KEY, params)[0], None,
                                                        length=100)
    assert int(final.time) == 100 and done[99] and truncated[99]
    assert not done[:99].any() and not terminated.any()

    # A NaN action (a diverged policy) gives a NaN reward, compiled too -- never the 0 of a
    # reached goal, which once made NaN policies look like the best learners.
    _, _, r, _, _ = jax.jit(env.step)(KEY, env.reset(KEY, params)[0],
                                      jnp.array([jnp.nan, 0.0]), params)
    assert np.isnan(float(r))
    at_goal = env.reset(KEY, params)[0].replace(position=params.goal - jnp.array([0.05, 0.0]))
    grad = jax.grad(lambda a: env.step(KEY, at_goal, a, params)[2])(jnp.array([0.05, 0.0]))
    assert float(env.step(KEY, at_goal, jnp.array([0.05, 0.0]), params)[2]) == 0.0
    np.testing.assert_array_equal(np.asarray(grad), [0.0, 0.0])  # finite at the goal

    with_goal = PointNav2D(goal_in_obs=True)
    _, obs = with_goal.reset(KEY, params)
    np.testing.assert_allclose(obs, [0.0, 0.0, 0.3, -0.2])
    assert with_goal.observation_space.shape == (4,) and env.observation_space.shape == (2,)


# --------------------------------------------------------------------------------------------
# Batched params, single compilation, gradients


def _batched_params(env):
    if isinstance(env, Pendulum):
        overrides = [dict(g=g, m=m) for g, m in [(10.0, 1.0), (9.81, 1.5), (3.7, 0.5)]]
    elif isinstance(env, PointNav2D):
        overrides = [dict(goal=(0.3, -0.2), max_speed=0.1), dict(goal=(-0.5, 0.5), max_speed=0.05),
                     dict(goal=(0.0, 0.9), max_speed=0.2)]
    else:
        overrides = [dict(gravity=g, masspole=mp)
                     for g, mp in [(9.8, 0.1), (3.7, 0.5), (24.8, 0.2)]]
    return _stack([_with(env.default_params(), o) for o in overrides])


ENVS = {
    "Pendulum": (Pendulum(), jnp.array([1.5], jnp.float32)),
    "CartPole": (CartPole(), jnp.int32(1)),
    "CartPoleContinuous": (CartPoleContinuous(), jnp.array([0.5], jnp.float32)),
    "PointNav2D": (PointNav2D(), jnp.array([0.5, 0.02], jnp.float32)),
}


@pytest.mark.parametrize("name", list(ENVS))
def test_vmap_over_params_and_single_compile(name):
    env, action = ENVS[name]
    params = _batched_params(env)
    leaves = jax.tree.leaves(params)
    assert all(leaf.shape[:1] == (3,) for leaf in leaves)
    assert params.action_delay.dtype == jnp.int32 and params.obs_noise_std.dtype == jnp.float32
    assert all(leaf.dtype in (jnp.float32, jnp.int32) for leaf in leaves)
    keys = jax.random.split(KEY, 3)
    # a pendulum/cart-pole state away from rest so gravity acts on the first step
    states, _ = jax.vmap(env.reset)(keys, params)
    actions = jnp.stack([action] * 3)
    chex.clear_trace_counter()  # the counter is keyed by the function's code, shared across params

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(keys, states, actions, params):
        return jax.vmap(env.step)(keys, states, actions, params)

    next_states, obs, reward, done, info = step(keys, states, actions, params)
    obs = np.asarray(obs)
    assert obs.shape == (3, env.observation_size) and obs.dtype == np.float32
    assert reward.shape == (3,) and reward.dtype == jnp.float32
    assert done.dtype == jnp.bool_ and info["truncated"].dtype == jnp.bool_
    if name == "PointNav2D":
        # identical starts; different speed limits and goals -> different positions and rewards
        assert len({tuple(o) for o in obs}) == 3 and len(set(np.asarray(reward).tolist())) == 3
    else:
        # identical start states so that only the params differ
        same = jax.tree.map(lambda x: jnp.broadcast_to(x[0], x.shape), states)
        next_same = step(keys, same, actions, params)[1]
        assert len({tuple(o) for o in np.asarray(next_same)}) == 3
    # new values of the params (and of the state) reuse the compiled step: no retrace
    params2 = jax.tree.map(lambda x: x * 2 if jnp.issubdtype(x.dtype, jnp.floating) else x, params)
    step(keys, next_states, actions, params2)
    step(jax.random.split(jax.random.PRNGKey(5), 3), next_states, actions, params)


def _grad_check(env, param_name, state, action, objective):
    """d objective / d action and d objective / d params.<param_name>: finite, and not all zero."""
    params = env.default_params()

    def f(action, value):
        return objective(env, state, action, params.replace(**{param_name: value}))

    g_action, g_param = jax.grad(f, argnums=(0, 1))(action, getattr(params, param_name))
    assert np.isfinite(g_action).all() and np.isfinite(g_param).all()
    return np.asarray(g_action), np.asarray(g_param)


def _two_step_return(env, state, action, params):
    state, _, r1, _, _ = env.step(KEY, state, action, params)
    _, _, r2, _, _ = env.step(KEY, state, action, params)
    return r1 + r2


def test_gradients_through_step_are_finite():
    env = Pendulum()
    state = PendulumState(theta=jnp.float32(0.7), theta_dot=jnp.float32(-0.3), time=jnp.int32(0))
    g_a, g_p = _grad_check(env, "g", state, jnp.array([0.8]), _two_step_return)
    assert np.abs(g_a).sum() > 0 and np.abs(g_p) > 0
    g_a, g_p = _grad_check(env, "m", state, jnp.array([0.8]),
                           lambda e, s, a, p: e.step(KEY, s, a, p)[2])
    assert np.abs(g_a).sum() > 0  # d r / d u = -0.002 u; the one-step reward does not depend on m

    env = CartPoleContinuous()
    state = CartPoleState(x=0.1, x_dot=0.0, theta=0.05, theta_dot=0.2, time=jnp.int32(0))
    _grad_check(env, "masspole", state, jnp.array([0.3]),
                lambda e, s, a, p: e.step(KEY, s, a, p)[2])
    g_a, g_p = _grad_check(env, "masspole", state, jnp.array([0.3]),
                           lambda e, s, a, p: e.step(KEY, s, a, p)[0].theta_dot)
    assert np.abs(g_a).sum() > 0 and np.abs(g_p) > 0

    env = PointNav2D()
    state = PointNavState(position=jnp.array([0.1, 0.1]), time=jnp.int32(0))
    g_a, g_p = _grad_check(env, "goal", state, jnp.array([0.05, -0.02]),
                           lambda e, s, a, p: e.step(KEY, s, a, p)[2])
    assert np.abs(g_a).sum() > 0 and np.abs(g_p).sum() > 0
    # exactly at the goal the distance is not differentiable; the gradient is 0, not NaN
    at_goal = PointNavState(position=jnp.array([0.3, -0.2]), time=jnp.int32(0))
    g_a, _ = _grad_check(env, "max_speed", at_goal, jnp.zeros(2),
                         lambda e, s, a, p: e.step(KEY, s, a, p)[2])
    np.testing.assert_array_equal(g_a, 0.0)


# --------------------------------------------------------------------------------------------
# Registry


def test_registry():
    assert {"Pendulum", "CartPole", "CartPoleContinuous", "PointNav2D"} <= set(envs.registered())
    env = envs.make("Pendulum", max_steps=50)
    assert isinstance(env, Pendulum) and env.max_steps == 50
    assert isinstance(envs.make("PointNav2D", goal_in_obs=True), PointNav2D)
    assert isinstance(envs.make("CartPoleContinuous"), CartPoleContinuous)
    from envs.bandits import BernoulliBandit
    from envs.tabular_mdp import TabularMDP

    assert isinstance(envs.make("BernoulliBandit"), BernoulliBandit)
    assert isinstance(envs.make("TabularMDP"), TabularMDP)
    with pytest.raises(ValueError, match="Did you mean 'Pendulum'") as excinfo:
        envs.make("Pendulm")
    assert "CartPoleContinuous" in str(excinfo.value)  # the known names are listed
    with pytest.raises(ValueError, match="already registered"):
        envs.register("Pendulum", Pendulum)
    envs.register("_TestShortPendulum", lambda: Pendulum(max_steps=7))
    try:
        assert envs.make("_TestShortPendulum").max_steps == 7
        assert "_TestShortPendulum" in envs.registered()
    finally:
        envs._REGISTRY.pop("_TestShortPendulum")


def test_params_are_arrays_with_dataclass_defaults():
    for env, cls in [(Pendulum(), PendulumParams), (CartPole(), CartPoleParams),
                     (PointNav2D(), PointNavParams)]:
        params = env.default_params()
        defaults = cls()
        default_leaves = jax.tree.leaves(defaults, is_leaf=lambda x: isinstance(x, tuple))
        for leaf, default in zip(jax.tree.leaves(params), default_leaves):
            assert isinstance(leaf, jax.Array)
            np.testing.assert_allclose(leaf, np.asarray(default, np.float64), rtol=1e-7)
