import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.pendulum import Pendulum
from envs.point_nav import PointNav2D
from metarl_jax.core import normalization
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import ActionDelay, AutoReset, EpisodeStats, ObservationNoise
from metarl_jax.randomization.distributions import SpecError, int_uniform, uniform
from metarl_jax.randomization.param_space import fixed_space, make_param_space

KEY = jax.random.PRNGKey(3)


def _zero_policy(action_shape):
    def policy(key, obs):
        return jnp.zeros((obs.shape[0],) + action_shape), {}
    return policy


def test_autoreset_draws_fresh_params_per_episode_inside_jit():
    env = EpisodeStats(AutoReset(Pendulum(max_steps=5)))
    space = make_param_space(env.unwrapped.default_params(), {"m": uniform(0.5, 2.0)})
    state, obs = reset_batch(env, KEY, space, 4)

    @jax.jit
    def run(state, obs):
        def step(carry, key):
            state, obs = carry
            keys = jax.random.split(key, 4)
            state, obs, reward, done, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                keys, state, jnp.zeros((4, 1)), space)
            return (state, obs), (state.inner.params.m, done, info["episode_return"], reward)
        return jax.lax.scan(step, (state, obs), jax.random.split(KEY, 20))

    _, (masses, done, ep_return, reward) = run(state, obs)
    masses, done = np.asarray(masses), np.asarray(done)
    initial = np.asarray(state.inner.params.m)
    prev = np.concatenate([initial[None], masses[:-1]])
    # The mass changes exactly at episode ends and stays fixed within an episode.
    np.testing.assert_array_equal(masses != prev, done)
    assert done[4].all() and done.sum() == 4 * 4
    # Four envs, four episodes each: all sixteen masses differ.
    episode_masses = np.concatenate([initial[None], masses[done.any(1)]])
    assert len(np.unique(episode_masses)) == episode_masses.size
    # Episode returns are sums of the episode's rewards.
    reward = np.asarray(reward)
    np.testing.assert_allclose(np.asarray(ep_return)[4], reward[:5].sum(0), rtol=1e-5)


def test_autoreset_resample_every_n_steps_mid_episode():
    env = AutoReset(Pendulum(max_steps=100), resample_every=3)
    space = make_param_space(env.unwrapped.default_params(), {"m": uniform(0.5, 2.0)})
    state, _ = env.reset(KEY, space)
    initial = float(state.params.m)
    masses, times = [], []
    for i in range(9):
        state, *_ = env.step(jax.random.PRNGKey(i), state, jnp.zeros(1), space)
        masses.append(float(state.params.m))
        times.append(int(state.inner.time))
    previous = [initial] + masses[:-1]
    changed = [m != p for m, p in zip(masses, previous)]
    assert changed == [False, False, True, False, False, True, False, False, True]
    assert times == list(range(1, 10))  # no reset happened: only the params changed


def test_autoreset_reports_final_obs_and_restarts():
    env = AutoReset(PointNav2D(max_steps=3))
    space = fixed_space(env.unwrapped.default_params())
    state, obs = env.reset(KEY, space)
    action = jnp.array([0.1, 0.1])
    for i in range(3):
        state, obs, _, done, info = env.step(jax.random.PRNGKey(i), state, action, space)
    assert bool(done) and bool(info["truncated"])
    np.testing.assert_allclose(np.asarray(info["final_obs"]), [0.3, 0.3], atol=1e-6)
    np.testing.assert_allclose(np.asarray(obs), [0.0, 0.0])  # start of the next episode
    assert int(state.inner.time) == 0


@pytest.mark.parametrize("delay", [0, 1, 3])
def test_action_delay_applies_the_action_from_d_steps_ago(delay):
    env = ActionDelay(PointNav2D(max_steps=50), max_delay=3)
    params = env.default_params().replace(action_delay=jnp.int32(delay),
                                          max_speed=jnp.float32(10.0))
    state, obs = env.reset(KEY, params)
    actions = [jnp.array([float(i + 1), 0.0]) for i in range(6)]
    moves = []
    for a in actions:
        state, new_obs, *_ = env.step(KEY, state, a, params)
        moves.append(float(new_obs[0] - obs[0]))
        obs = new_obs
    expected = [0.0] * delay + [float(i + 1) for i in range(6 - delay)]
    np.testing.assert_allclose(moves, expected, atol=1e-5)


def test_action_delay_is_a_randomizable_param_per_env():
    env = ActionDelay(PointNav2D(), max_delay=2)
    params = jax.tree.map(lambda x: jnp.stack([x, x]), env.default_params())
    params = params.replace(action_delay=jnp.array([0, 2], jnp.int32))
    state, _ = jax.vmap(env.reset)(jax.random.split(KEY, 2), params)
    a = jnp.full((2, 2), 0.05)
    state, obs, *_ = jax.vmap(env.step)(jax.random.split(KEY, 2), state, a, params)
    np.testing.assert_allclose(np.asarray(obs), [[0.05, 0.05], [0.0, 0.0]], atol=1e-6)


def test_observation_noise_has_the_requested_std():
    env = ObservationNoise(PointNav2D())
    params = env.default_params()
    _, clean = env.reset(KEY, params)
    keys = jax.random.split(KEY, 20000)
    noisy = jax.vmap(env.reset, in_axes=(0, None))(
        keys, params.replace(obs_noise_std=jnp.float32(0.3)))[1]
    assert abs(float(jnp.std(noisy)) - 0.3) < 0.01
    np.testing.assert_array_equal(np.asarray(clean), np.zeros(2))


def test_rollout_shapes_and_params_batched_per_env():
    env = EpisodeStats(AutoReset(Pendulum(max_steps=200)))
    nominal = env.unwrapped.default_params()
    spaces = jax.vmap(lambda m: fixed_space(nominal.replace(m=m)))(jnp.array([0.5, 1.0, 2.0]))
    state, obs = reset_batch(env, KEY, spaces, 3, params_axis=0)
    carry, traj = rollout(_zero_policy((1,)), env, KEY, state, obs, spaces, 7, params_axis=0,
                          info_keys=("episode_return",))
    assert traj.obs.shape == (7, 3, 3) and traj.action.shape == (7, 3, 1)
    assert traj.reward.shape == (7, 3) and traj.info["episode_return"].shape == (7, 3)
    np.testing.assert_allclose(np.asarray(carry.env_state.inner.params.m), [0.5, 1.0, 2.0])


def test_running_stats_match_numpy_over_batches():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 4)).astype(np.float32) for n in (10, 200, 37)]
    stats = normalization.init(4)
    for b in batches:
        stats = normalization.update(stats, jnp.asarray(b))
    allx = np.concatenate(batches)
    np.testing.assert_allclose(np.asarray(stats.mean), allx.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.asarray(stats.var), allx.var(0), rtol=1e-3)
    z = normalization.normalize(stats, jnp.asarray(allx))
    np.testing.assert_allclose(np.asarray(z.mean(0)), 0.0, atol=1e-3)


@pytest.mark.parametrize("env, dists, message", [
    (Pendulum(), {"action_delay": int_uniform(0, 2)}, "not wrapped in ActionDelay"),
    (Pendulum(), {"obs_noise_std": uniform(0.0, 0.1)}, "not wrapped in ObservationNoise"),
    (ActionDelay(Pendulum(), 3), {"action_delay": int_uniform(0, 5)}, "max_delay=3"),
    (ObservationNoise(Pendulum()), {"obs_noise_std": uniform(-0.1, 0.1)}, "negative stds"),
])
def test_space_the_env_cannot_use_raises_spec_error(env, dists, message):
    """Randomizing a field only a missing wrapper reads, or beyond the wrapper's range."""
    with pytest.raises(SpecError, match=message):
        make_param_space(env, dists)
    space = make_param_space(env.default_params(), dists)
    with pytest.raises(SpecError, match=message):  # AutoReset checks eagerly too
        AutoReset(env).reset(KEY, space)


def test_autoreset_under_jit_refuses_a_field_no_wrapper_reads():
    space = make_param_space(Pendulum().default_params(), {"action_delay": int_uniform(0, 2)})
    with pytest.raises(SpecError, match="not wrapped in ActionDelay"):
        jax.jit(AutoReset(Pendulum()).reset)(KEY, space)
    fine = ObservationNoise(ActionDelay(Pendulum(), 2))
    space = make_param_space(fine, {"action_delay": int_uniform(0, 2),
                                     "obs_noise_std": uniform(0.0, 0.1)})
    jax.jit(AutoReset(fine).reset)(KEY, space)
