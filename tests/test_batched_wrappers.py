"""Batch-level steps of the wrappers that sit inside ``AutoReset`` (issue #13 item 1).

``ActionDelay.step_batch`` equals ``vmap(step)`` bit for bit (it hands one batch key through
unhashed). ``ObservationNoise(batched_draws=True)`` and ``AutoReset(batched_draws=True)`` draw
from one key per step for the batch: other streams than the per-env step, the same semantics
(noise of the right scale, independent across envs and steps; fresh params at every episode).
"""

import jax
import jax.numpy as jnp
import numpy as np

from envs.cartpole import CartPole
from metarl_jax.core.rollout import reset_batch
from metarl_jax.core.wrappers import ActionDelay, AutoReset, ObservationNoise
from metarl_jax.randomization.distributions import int_uniform, uniform
from metarl_jax.randomization.param_space import make_param_space

N, T = 64, 40


def _actions(key):
    return jax.random.randint(key, (T, N), 0, 2)


def test_action_delay_step_batch_equals_vmap_step_bitwise():
    """Per-env delays (params batched on axis 0) and one key for the batch."""
    env = ActionDelay(ObservationNoise(CartPole()), max_delay=3)
    params = env.default_params()
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (N,) + jnp.shape(x)), params)
    params = params.replace(action_delay=jnp.arange(N, dtype=jnp.int32) % 4,
                            obs_noise_std=jnp.full((N,), 0.1, jnp.float32))
    state, _ = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), N), params)

    @jax.jit
    def both(state, key):
        def body(carry, xs):
            a, b = carry
            k, action = xs
            a, *out_a = env.step_batch(k, a, action, params, 0)
            b, *out_b = jax.vmap(env.step)(jax.random.split(k, N), b, action, params)
            return (a, b), (out_a, out_b)

        keys = jax.random.split(key, T)
        return jax.lax.scan(body, (state, state), (keys, _actions(key)))

    (a, b), (out_a, out_b) = both(state, jax.random.PRNGKey(1))
    for x, y in zip(jax.tree.leaves((a, out_a)), jax.tree.leaves((b, out_b)), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(out_a[2]).any()  # some episodes ended: the delays mattered


def test_batched_observation_noise_has_the_right_scale_and_independent_draws():
    """Noisy obs minus the noiseless env's obs (same actions; CartPole ignores its key) is
    N(0, std^2) per env: std 0 gives exact obs, other stds are matched, draws independent."""
    clean, noisy = CartPole(), ObservationNoise(CartPole(), batched_draws=True)
    std = jnp.where(jnp.arange(N) < 8, 0.0, 0.05 + 0.01 * (jnp.arange(N) % 5)).astype(jnp.float32)
    params = jax.tree.map(lambda x: jnp.broadcast_to(x, (N,) + jnp.shape(x)),
                          clean.default_params()).replace(obs_noise_std=std)
    state, _ = jax.vmap(clean.reset)(jax.random.split(jax.random.PRNGKey(2), N), params)

    @jax.jit
    def run(key):
        def body(carry, xs):
            a, b = carry
            k, action = xs
            a, obs_a, *_ = noisy.step_batch(k, a, action, params, 0)
            b, obs_b, *_ = jax.vmap(clean.step, in_axes=(None, 0, 0, 0))(k, b, action, params)
            return (a, b), obs_a - obs_b

        return jax.lax.scan(body, (state, state), (jax.random.split(key, T), _actions(key)))[1]

    noise = np.asarray(run(jax.random.PRNGKey(3)))  # [T, N, 4]
    assert np.all(noise[:, :8] == 0)
    z = noise[:, 8:] / np.asarray(std)[None, 8:, None]
    assert abs(z.mean()) < 0.05 and abs(z.std() - 1) < 0.05  # 3360 draws: s.e. ~0.017, ~0.012
    # Independent across steps and envs: no lag-1 correlation (s.e. ~0.018), no repeats beyond
    # float32 coincidences of the differences.
    assert abs(np.corrcoef(z[1:].ravel(), z[:-1].ravel())[0, 1]) < 0.08
    assert abs(np.corrcoef(z[:, 1:].ravel(), z[:, :-1].ravel())[0, 1]) < 0.08
    assert np.unique(z).size > 0.999 * z.size


def test_batched_autoreset_over_batched_wrappers_keeps_per_episode_semantics():
    """The whole stack on one key per step, seeds vmapped: params change exactly at episode
    ends, within the space, independent across envs and seeds."""
    env = AutoReset(ObservationNoise(ActionDelay(CartPole(), max_delay=2), batched_draws=True),
                    batched_draws=True)
    space = make_param_space(env.env, {"masscart": uniform(0.5, 2.0, relative=True),
                                       "action_delay": int_uniform(0, 2),
                                       "obs_noise_std": uniform(0.0, 0.05)})

    def run(key):
        reset_key, key = jax.random.split(key)
        state, _ = reset_batch(env, reset_key, space, N)

        def body(state, xs):
            k, action = xs
            state, obs, _, done, _ = env.step_batch(k, state, action, space)
            return state, (done, state.params.masscart, obs)

        return jax.lax.scan(body, state, (jax.random.split(key, T), _actions(key)))[1]

    done, mass, obs = jax.device_get(jax.jit(jax.vmap(run))(
        jax.random.split(jax.random.PRNGKey(4), 2)))
    np.testing.assert_array_equal(mass[:, 1:] != mass[:, :-1], done[:, 1:])
    fresh = mass[:, 1:][done[:, 1:]]
    assert fresh.size > 50 and fresh.min() >= 0.5 and fresh.max() <= 2.0
    assert np.unique(fresh).size == fresh.size
    assert np.isfinite(obs).all() and not np.array_equal(obs[0], obs[1])  # seeds differ


def test_batched_trial_draws_a_fresh_task_exactly_when_a_trial_ends():
    """``Trial(batched_draws=True)`` under the seeds' vmap, trials out of phase: an env's task
    changes exactly on the steps its trial ends, and fresh tasks differ across envs and seeds."""
    from envs.tabular_mdp import TabularMDP, tabular_mdp_task_space
    from metarl_jax.core.trial import Trial

    seeds, envs, steps = 2, 6, 14  # trials of 2 episodes x 3 steps
    trial = Trial(TabularMDP(num_states=4, num_actions=2, max_steps=3), 2, batched_draws=True)
    space = tabular_mdp_task_space(4, 2)
    keys = jax.random.split(jax.random.PRNGKey(5), seeds * envs).reshape(seeds, envs, -1)
    state, _ = jax.vmap(jax.vmap(trial.reset, in_axes=(0, None)), in_axes=(0, None))(keys, space)
    state = state.replace(episode=jnp.tile(jnp.arange(envs, dtype=jnp.int32) % 2, (seeds, 1)))

    def run(key, state):
        def body(state, k):
            action = jnp.ones((envs,), jnp.int32)
            state, obs, _, done, _ = trial.step_batch(k, state, action, space)
            return state, (done, state.params, obs)

        return jax.lax.scan(body, state, jax.random.split(key, steps))[1]

    done, params, obs = jax.device_get(jax.jit(jax.vmap(run))(
        jax.random.split(jax.random.PRNGKey(6), seeds), state))
    leaf = np.asarray(params.transitions).reshape(seeds, steps, envs, -1)  # the drawn task
    changed = (leaf[:, 1:] != leaf[:, :-1]).any(-1)
    np.testing.assert_array_equal(changed, done[:, 1:])
    assert 0 < done.sum() < done.size  # some trials ended, not all at once
    fresh = leaf[:, 1:][done[:, 1:]]
    assert np.unique(fresh, axis=0).shape[0] == fresh.shape[0]
    assert np.isfinite(np.asarray(obs, np.float64)).all()
