"""``AutoReset.step_batch`` (the batch-level step ``rollout`` uses) against an oracle: a copy of
the per-env ``AutoReset.step`` that every published number was measured with, ``vmap``-ed.

The fast path must give the same bits: the same observations, rewards, dones and the same
episode params, on every branch (no env to redraw, a gathered subset, all envs) and under an
outer ``vmap`` over seeds (its ``custom_vmap`` rule), with a shared or a per-seed space.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.cartpole import CartPole
from envs.pendulum import Pendulum
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import (
    ActionDelay,
    AutoReset,
    EpisodeStats,
    ObservationNoise,
    redraw_capacities,
)
from metarl_jax.randomization.distributions import int_uniform, uniform
from metarl_jax.randomization.param_space import make_param_space


def _where(pred, a, b):
    return jax.tree.map(lambda x, y: jnp.where(pred, x, y), a, b)


def oracle_step(env: AutoReset, key, state, action, space):
    """The per-env ``AutoReset.step`` as it was before ``step_batch`` existed (the reference)."""
    step_key, param_key, reset_key = jax.random.split(key, 3)
    inner, obs, reward, done, info = env.env.step(step_key, state.inner, action, state.params)
    info = dict(info, final_obs=obs)
    since = state.steps_since_resample + 1
    resample = done
    if env.resample_every is not None:
        resample = resample | (since >= env.resample_every)
    params = _where(resample, space.sample(param_key), state.params)
    reset_inner, reset_obs = env.env.reset(reset_key, params)
    inner = _where(done, reset_inner, inner)
    obs = jnp.where(done, reset_obs, obs)
    since = jnp.where(resample, 0, since).astype(jnp.int32)
    return type(state)(inner, params, since), obs, reward, done, info


NUM_ENVS, NUM_STEPS = 64, 40


def _cartpole():
    env = AutoReset(ObservationNoise(ActionDelay(CartPole(), max_delay=2)), resample_every=9)
    space = make_param_space(env.env, {"masscart": uniform(0.5, 2.0, relative=True),
                                       "length": uniform(0.7, 1.3, relative=True),
                                       "action_delay": int_uniform(0, 2),
                                       "obs_noise_std": uniform(0.0, 0.05)})
    return env, space


def _steps(env, space, key, fast):
    """``[T, N]`` trajectory of one seed: random actions, the fast or the oracle step."""
    reset_key, key = jax.random.split(key)
    state, _ = reset_batch(env, reset_key, space, NUM_ENVS)

    def body(state, key):
        action_key, env_key = jax.random.split(key)
        action = jax.random.randint(action_key, (NUM_ENVS,), 0, 2)
        keys = jax.random.split(env_key, NUM_ENVS)
        if fast:  # one key for the batch (as rollout passes it): env i's is keys[i]
            out = env.step_batch(env_key, state, action, space)
        else:
            out = jax.vmap(lambda k, s, a: oracle_step(env, k, s, a, space))(keys, state, action)
        state, obs, reward, done, info = out
        return state, (obs, reward, done, info["final_obs"], state.params, state.inner)

    return jax.lax.scan(body, state, jax.random.split(key, NUM_STEPS))[1]


def _assert_bitwise_equal(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def seed_runs():
    """Three seeds ``vmap``-ed (the custom_vmap rule), fast and oracle, one program each."""
    env, space = _cartpole()
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    fast = jax.jit(jax.vmap(lambda k: _steps(env, space, k, True)))(keys)
    slow = jax.jit(jax.vmap(lambda k: _steps(env, space, k, False)))(keys)
    return fast, slow


def test_step_batch_equals_the_per_env_step_bitwise_on_every_branch(seed_runs):
    fast, slow = seed_runs
    _assert_bitwise_equal(fast, slow)
    # The run exercises all three branches: steps where no env is redrawn, a few are (the
    # gathered subset), and more than the subset holds (resample_every=9 redraws the envs whose
    # episode did not end in the last 9 steps). A redraw changes an env's params (a.s.).
    params = np.asarray(slow[4].masscart)  # [S, T, N]
    redrawn = (params[:, 1:] != params[:, :-1]).sum(-1)
    capacity = max(redraw_capacities(NUM_ENVS))
    assert (redrawn == 0).any()
    assert ((redrawn > 0) & (redrawn <= capacity)).any()
    assert (redrawn > capacity).any()
    assert redraw_capacities(NUM_ENVS) == (1, 4, 16) and redraw_capacities(1) == (1,)


def test_step_batch_with_a_per_seed_space():
    """A space batched over seeds (as ADR keeps one per seed): repeated per env in the rule.
    (Without an outer vmap: the rollout test below.)"""
    env, space = _cartpole()
    key = jax.random.PRNGKey(1)
    spaces = jax.tree.map(lambda x: jnp.stack([x, x * 1.5 if jnp.issubdtype(x.dtype, jnp.floating)
                                               else x]), space)
    keys = jax.random.split(key, 2)
    run = lambda fast: jax.jit(jax.vmap(lambda k, sp: _steps(env, sp, k, fast)))(keys, spaces)
    _assert_bitwise_equal(run(True), run(False))


def test_rollout_through_episode_stats_matches_the_oracle():
    """``rollout`` over ``EpisodeStats(AutoReset(Pendulum))`` (equal-length episodes: the
    no-redraw branch on most steps) equals a scan of the oracle step."""
    env = EpisodeStats(AutoReset(Pendulum(max_steps=7)))
    space = make_param_space(env.unwrapped.default_params(),
                             {"m": uniform(0.5, 2.0, relative=True), "g": uniform(9.0, 11.0)})
    state, obs = reset_batch(env, jax.random.PRNGKey(2), space, 8)
    policy = lambda k, o: (jax.random.uniform(k, (o.shape[0], 1), minval=-2, maxval=2), {})
    key = jax.random.PRNGKey(3)
    _, traj = jax.jit(lambda s, o: rollout(policy, env, key, s, o, space, 20,
                                           info_keys=("episode_return",)))(state, obs)

    def oracle(carry, _):  # rollout's key schedule, the oracle step under EpisodeStats
        key, st, o = carry
        key, policy_key, env_key = jax.random.split(key, 3)
        action, _ = policy(policy_key, o)
        keys = jax.random.split(env_key, 8)
        inner, o2, reward, done, info = jax.vmap(
            lambda k, s, a: oracle_step(env.env, k, s, a, space))(keys, st.inner, action)
        ret = st.episode_return + reward
        st = st.replace(inner=inner, episode_return=jnp.where(done, 0.0, ret),
                        episode_length=jnp.where(done, 0, st.episode_length + 1))
        return (key, st, o2), (o, reward, done, info["final_obs"], ret)

    _, ref = jax.jit(lambda s, o: jax.lax.scan(oracle, (key, s, o), None, length=20))(state, obs)
    _assert_bitwise_equal((traj.obs, traj.reward, traj.done, traj.final_obs,
                           traj.info["episode_return"]), ref)
    assert np.asarray(traj.done).sum() == 2 * 8  # episodes of 7 steps: ended at steps 7 and 14


def test_batched_draws_opt_in_keeps_per_episode_semantics():
    """``batched_draws=True`` (other streams): an env's params change exactly when its episode
    ends, to values from the space, different across envs and seeds; draws have the right mean."""
    base = CartPole()
    env = AutoReset(base, batched_draws=True)
    space = make_param_space(base.default_params(), {"masscart": uniform(0.5, 2.0,
                                                                         relative=True)})

    def run(key):
        reset_key, key = jax.random.split(key)
        state, _ = reset_batch(env, reset_key, space, NUM_ENVS)

        def body(state, key):
            action_key, env_key = jax.random.split(key)
            action = jax.random.randint(action_key, (NUM_ENVS,), 0, 2)
            state, _, _, done, _ = env.step_batch(jax.random.split(env_key, NUM_ENVS), state,
                                                  action, space)
            return state, (done, state.params.masscart)

        return jax.lax.scan(body, state, jax.random.split(key, NUM_STEPS))[1]

    done, mass = jax.device_get(jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(4),
                                                                        2)))
    changed = mass[:, 1:] != mass[:, :-1]  # [S, T-1, N]
    np.testing.assert_array_equal(changed, done[:, 1:])  # fresh params at every episode end
    fresh = mass[:, 1:][done[:, 1:]]
    assert fresh.size > 100 and fresh.min() >= 0.5 and fresh.max() <= 2.0
    assert abs(fresh.mean() - 1.25) < 0.1  # U[0.5, 2.0]: mean 1.25, std error ~0.03
    assert np.unique(fresh).size == fresh.size  # independent across envs, steps and seeds


def test_first_true_indices_equals_nonzero():
    from metarl_jax.core.wrappers import first_true_indices

    rng = np.random.default_rng(0)
    masks = [rng.random(n) < p for n in (1, 5, 64, 1000) for p in (0.0, 0.05, 0.5, 1.0)]
    for mask in masks:
        for size in sorted({1, max(1, mask.size // 4), mask.size}):
            want = np.nonzero(mask)[0][:size]
            want = np.concatenate([want, np.full(size - want.size, mask.size)])
            got = first_true_indices(jnp.asarray(mask), size, mask.size)
            np.testing.assert_array_equal(np.asarray(got), want)
