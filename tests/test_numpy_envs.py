"""``benchmarks.numpy_envs``: the batched numpy peers of env_throughput step like the JAX envs
and redraw physics per episode, only for the envs whose episode ended."""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.numpy_envs import NumpyCartPole, NumpyPendulum
from envs import CartPole, Pendulum


def _jax_step(env, params, state_fields, state_cls, action):
    state = state_cls(**{k: jnp.asarray(v) for k, v in state_fields.items()},
                      time=jnp.zeros(len(action), jnp.int32))
    n = len(action)  # every Params field is a scalar: broadcast to [N]
    params = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n,)), params)
    step = jax.vmap(env.step, in_axes=(None, 0, 0, 0))
    return step(jax.random.PRNGKey(0), state, jnp.asarray(action), params)


def test_pendulum_step_matches_the_jax_env():
    rng = np.random.default_rng(0)
    twin = NumpyPendulum(16, {"m": (0.5, 2.0), "l": (0.7, 1.3), "g": (0.8, 1.2)}, rng)
    env = Pendulum()
    params = env.default_params().replace(**{k: twin.params[k] for k in ("m", "l", "g")})
    start = {"theta": twin.theta.copy(), "theta_dot": twin.theta_dot.copy()}
    action = rng.uniform(-3, 3, 16).astype(np.float32)  # some beyond max_torque: clipped
    _, obs, reward, _, _ = _jax_step(env, params, start, type(env.reset(
        jax.random.PRNGKey(0), env.default_params())[0]), action[:, None])
    twin_obs, twin_reward, done = twin.step(action)
    assert not done.any()
    np.testing.assert_allclose(twin_obs, obs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(twin_reward, reward, rtol=1e-5, atol=1e-5)


def test_cartpole_step_matches_the_jax_env_and_redraws_only_finished_episodes():
    rng = np.random.default_rng(1)
    twin = NumpyCartPole(32, {"masscart": (0.5, 2.0), "length": (0.7, 1.3)}, rng)
    env = CartPole()
    nominal = env.default_params()
    params = nominal.replace(masscart=twin.params["masscart"].copy(),
                             length=twin.params["length"].copy())
    x, x_dot, theta, theta_dot = twin.state.copy()
    action = rng.integers(0, 2, 32)
    state_cls = type(env.reset(jax.random.PRNGKey(0), nominal)[0])
    _, obs, _, _, _ = _jax_step(env, params, dict(x=x, x_dot=x_dot, theta=theta,
                                                  theta_dot=theta_dot), state_cls, action)
    twin_obs, _, done = twin.step(action)
    assert not done.any()
    np.testing.assert_allclose(twin_obs, obs, rtol=1e-5, atol=1e-6)

    # Push until some episodes end: exactly those envs get new physics and a fresh start.
    for _ in range(200):
        before = twin.params["masscart"].copy()
        _, _, done = twin.step(np.ones(32, int))
        if done.any():
            break
    assert done.any()
    changed = twin.params["masscart"] != before
    np.testing.assert_array_equal(changed, done)
    assert (np.abs(twin.state[:, done]) <= 0.05).all() and (twin.time[done] == 0).all()
