import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.cartpole import CartPole
from envs.pendulum import Pendulum
from metarl_jax.algos.advantages import gae
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.core.wrappers import ActionDelay
from metarl_jax.nets.policy_heads import Categorical, DiagGaussian
from metarl_jax.randomization.distributions import SpecError, int_uniform
from metarl_jax.randomization.param_space import fixed_space, make_param_space


def _gae_reference(reward, value, next_value, terminated, done, gamma, lam):
    T, N = reward.shape
    adv = np.zeros((T, N))
    running = np.zeros(N)
    for t in reversed(range(T)):
        delta = reward[t] + gamma * (1 - terminated[t]) * next_value[t] - value[t]
        running = delta + gamma * lam * (1 - done[t]) * running
        adv[t] = running
    return adv


def test_gae_matches_the_reference_loop_with_truncation_and_termination():
    rng = np.random.default_rng(0)
    T, N = 9, 3
    reward, value, next_value = (rng.normal(size=(T, N)) for _ in range(3))
    terminated = np.zeros((T, N))
    terminated[3, 0] = 1
    truncated = np.zeros((T, N))
    truncated[5, 1] = 1
    done = np.maximum(terminated, truncated)
    adv, targets = gae(*(jnp.asarray(x, jnp.float32) for x in (reward, value, next_value)),
                       jnp.asarray(terminated, bool), jnp.asarray(done, bool), 0.9, 0.8)
    ref = _gae_reference(reward, value, next_value, terminated, done, 0.9, 0.8)
    np.testing.assert_allclose(np.asarray(adv), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(targets), ref + value, rtol=1e-5, atol=1e-5)
    # By hand: a terminal step's advantage is r - V; a truncated one still bootstraps.
    assert abs(float(adv[3, 0]) - (reward[3, 0] - value[3, 0])) < 1e-5
    assert abs(float(adv[5, 1]) - (reward[5, 1] + 0.9 * next_value[5, 1] - value[5, 1])) < 1e-5


def test_policy_heads_log_prob_and_entropy_closed_forms():
    mean, log_std = jnp.array([[0.5, -1.0]]), jnp.array([[0.0, jnp.log(2.0)]])
    a = jnp.array([[1.5, 1.0]])
    # log N(1.5; 0.5, 1) + log N(1.0; -1, 2)
    expected = (-0.5 - 0.5 * np.log(2 * np.pi)) + (-0.5 - np.log(2.0) - 0.5 * np.log(2 * np.pi))
    assert abs(float(DiagGaussian.log_prob((mean, log_std), a)[0]) - expected) < 1e-5
    assert abs(float(DiagGaussian.entropy((mean, log_std))[0])
               - (1 + np.log(2 * np.pi) + np.log(2.0))) < 1e-5
    logits = jnp.log(jnp.array([0.2, 0.3, 0.5]))
    assert abs(float(Categorical.log_prob(logits, jnp.int32(1))) - np.log(0.3)) < 1e-6
    assert abs(float(Categorical.entropy(logits))
               + sum(p * np.log(p) for p in (0.2, 0.3, 0.5))) < 1e-6


@pytest.mark.parametrize("changes, message", [
    (dict(num_minibatches=7), "not divisible"),
    (dict(num_envs=0), "num_envs must be >= 1"),
    (dict(total_steps=10), "less than one update"),
    (dict(gamma=1.5), "gamma"),
    (dict(learning_rate=-1.0), "learning_rate must be > 0"),
])
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        PPOConfig(**changes).validate()


SMALL = PPOConfig(num_envs=16, num_steps=32, total_steps=16 * 32 * 4, num_epochs=2,
                  num_minibatches=4, hidden_sizes=(16, 16))


def test_update_is_deterministic_and_a_rate_change_does_not_recompile():
    env = Pendulum()
    ppo = PPO(env)
    space = fixed_space(env.default_params())
    state = ppo.init(jax.random.PRNGKey(0), SMALL, space)
    a, ma = ppo.train_chunk(state, SMALL, num_updates=2)
    b, mb = ppo.train_chunk(state, SMALL, num_updates=2)
    jax.tree.map(np.testing.assert_array_equal, (a.params, ma), (b.params, mb))
    faster = SMALL.replace(learning_rate=1e-2, gamma=0.9, clip_eps=0.3)
    c, _ = ppo.train_chunk(state, faster, num_updates=2)
    assert ppo.traces["train_chunk"] == 1
    assert not np.allclose(np.asarray(jax.tree.leaves(a.params)[0]),
                           np.asarray(jax.tree.leaves(c.params)[0]))
    assert int(a.update_step) == 2 and bool(jnp.isfinite(ma["policy_loss"]).all())


def test_seeds_are_a_vmap_axis():
    env = Pendulum()
    ppo = PPO(env)
    space = fixed_space(env.default_params())
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    states = ppo.init_seeds(keys, SMALL, space)
    states, metrics = ppo.train_chunk_seeds(states, SMALL, num_updates=2)
    assert metrics["episode_return"].shape == (3, 2)
    single, _ = ppo.train_chunk(ppo.init(keys[1], SMALL, space), SMALL, num_updates=2)
    np.testing.assert_allclose(np.asarray(jax.tree.leaves(states.params)[0][1]),
                               np.asarray(jax.tree.leaves(single.params)[0]), rtol=1e-4, atol=1e-5)
    assert not np.allclose(np.asarray(jax.tree.leaves(states.params)[0][0]),
                           np.asarray(jax.tree.leaves(states.params)[0][1]))


@pytest.mark.slow
def test_ppo_learns_cartpole_discrete():
    env = CartPole()
    config = PPOConfig(num_envs=32, num_steps=128, total_steps=32 * 128 * 40, num_epochs=4,
                       num_minibatches=4, learning_rate=2.5e-3, ent_coef=0.01,
                       hidden_sizes=(32, 32)).validate()
    _, metrics = PPO(env).train(jax.random.PRNGKey(0), config, fixed_space(env.default_params()))
    returns = np.asarray(metrics["episode_return"])
    # A random policy scores about 22; the cap is 500.
    assert returns[:3].mean() < 60 and returns[-5:].mean() > 150, returns


@pytest.mark.slow
def test_ppo_learns_pendulum_continuous():
    """Five seeds, one vmapped program: one seed's outcome is bimodal (a seed either swings up,
    about -170, or settles in a no-swing-up optimum near -600) and which one it lands in changes
    with XLA's float rounding (codegen flags, CPU), so the claim is about the seeds' mean."""
    env = Pendulum()
    ppo = PPO(env)
    config = PPOConfig(num_envs=64, num_steps=200, total_steps=64 * 200 * 30, num_epochs=10,
                       num_minibatches=16, learning_rate=1e-3, reward_scale=0.1).validate()
    keys = jax.random.split(jax.random.PRNGKey(0), 5)
    states = ppo.init_seeds(keys, config, fixed_space(env.default_params()))
    _, metrics = ppo.train_chunk_seeds(states, config, num_updates=30)
    returns = np.asarray(metrics["episode_return"])  # [seeds, updates]
    # Random torques score about -1200; a swing-up policy about -150 to -250.
    assert (returns[:, 1] < -700).all() and returns[:, -1].mean() > -400, returns


def test_init_refuses_a_delay_range_beyond_the_wrappers_buffer():
    """Inside PPO's jitted init the space is traced, so the range check runs before it."""
    env = ActionDelay(Pendulum(), max_delay=3)
    space = make_param_space(env.default_params(), {"action_delay": int_uniform(0, 5)})
    config = PPOConfig(num_envs=2, num_steps=4, total_steps=8, num_minibatches=1).validate()
    with pytest.raises(SpecError, match="max_delay=3"):
        PPO(env).init(jax.random.PRNGKey(0), config, space)
    with pytest.raises(SpecError, match="max_delay=3"):
        PPO(env).init_seeds(jax.random.split(jax.random.PRNGKey(0), 2), config, space)


def test_nonfinite_update_is_flagged_and_the_last_good_state_kept():
    env = Pendulum()
    ppo = PPO(env)
    space = fixed_space(env.default_params())
    state = ppo.init(jax.random.PRNGKey(0), SMALL, space)
    good, metrics = ppo.train_chunk(state, SMALL, num_updates=2)
    assert np.all(np.asarray(metrics["nonfinite_flags"]) == 0)
    # Rewards scaled past float32's range make the value targets and the loss infinite.
    exploding = SMALL.replace(reward_scale=1e38)
    after, metrics = ppo.train_chunk(good, exploding, num_updates=2)
    flags = np.asarray(metrics["nonfinite_flags"])
    assert flags[0] & 1  # bit 0: the loss
    jax.tree.map(np.testing.assert_array_equal, after.params, good.params)
    assert int(after.update_step) == int(good.update_step)


def test_a_training_phase_compiles_its_chunk_once(tmp_path):
    from metarl_jax.io.training_loop import train_phase

    env = Pendulum()
    ppo = PPO(env)
    space = fixed_space(env.default_params())
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    config = SMALL.replace(total_steps=SMALL.batch_size * 6)
    train_phase(tmp_path, "p", lambda: ppo.init_seeds(keys, config, space),
                lambda s, n: ppo.train_chunk_seeds(s, config, n), num_updates=6,
                updates_per_chunk=2, steps_per_update=config.batch_size * 2)
    assert ppo.traces["train_chunk_seeds"] == 1  # three chunks, one compile


def test_init_seeds_equals_each_seed_initialized_alone():
    # init_seeds initializes seed by seed (jit(vmap(init)) can deadlock jaxlib's CPU pool on
    # 2 cores through batched QR); the stacked state must be exactly each seed's own init.
    env = Pendulum()
    ppo = PPO(env)
    space = fixed_space(env.default_params())
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    states = ppo.init_seeds(keys, SMALL, space)
    for i in range(2):
        alone = ppo.init(keys[i], SMALL, space)
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(states)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b)[i])
