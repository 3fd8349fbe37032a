"""SAC: losses against hand-computed values, config errors, Pendulum swing-up, one compile per
chunk, bit-identical resume through a checkpoint (replay buffer included), the NaN guard, seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs import make
from envs.pendulum import Pendulum
from metarl_jax.algos import sac_loss
from metarl_jax.algos.learner import INJECT_NAN_ENV
from metarl_jax.algos.sac import SAC, SACConfig, without_buffer
from metarl_jax.io.checkpoint import Checkpointer
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.transfer.evaluation import evaluate_on_params

# ------------------------------------------------------------------------------ losses by hand
R = jnp.array([1.0, 2.0])
TERMINAL = jnp.array([0.0, 1.0])
Q1, Q2 = jnp.array([3.0, 5.0]), jnp.array([4.0, 1.0])
LOGP = jnp.array([-1.0, 0.5])


def test_critic_target_has_the_entropy_term_and_cuts_at_terminals():
    y = sac_loss.critic_target(R, TERMINAL, Q1, Q2, LOGP, alpha=0.5, gamma=0.9)
    # y0 = 1 + 0.9 * (min(3, 4) - 0.5 * (-1)) = 1 + 0.9 * 3.5 = 4.15; y1 = 2 (terminal).
    np.testing.assert_allclose(np.asarray(y), [4.15, 2.0], rtol=1e-6)


def test_critic_loss_and_its_gradient():
    q1, q2, y = jnp.array([4.0, 1.0]), jnp.array([4.15, 3.0]), jnp.array([4.15, 2.0])
    # 0.5 * ((-0.15)^2 + (-1)^2) / 2 + 0.5 * (0^2 + 1^2) / 2 = 0.2556250 + 0.25 = 0.505625
    assert abs(float(sac_loss.critic_loss(q1, q2, y)) - 0.505625) < 1e-6
    g1, g2, gy = jax.grad(sac_loss.critic_loss, argnums=(0, 1, 2))(q1, q2, y)
    np.testing.assert_allclose(np.asarray(g1), [-0.075, -0.5], rtol=1e-5)  # (q1 - y) / B
    np.testing.assert_allclose(np.asarray(g2), [0.0, 0.5], atol=1e-6)
    np.testing.assert_array_equal(np.asarray(gy), [0.0, 0.0])  # the target is held fixed


def test_actor_loss():
    # mean(0.5 * [-1, 0.5] - min([3, 5], [4, 1])) = mean([-3.5, -0.75]) = -2.125
    assert abs(float(sac_loss.actor_loss(LOGP, Q1, Q2, 0.5)) + 2.125) < 1e-6


def test_temperature_loss_lowers_alpha_when_entropy_is_above_target():
    log_alpha = jnp.log(0.5)
    # mean(-0.5 * ([-1, 0.5] + (-1))) = mean([1.0, 0.25]) = 0.625
    loss, grad = jax.value_and_grad(sac_loss.temperature_loss)(log_alpha, LOGP, -1.0)
    assert abs(float(loss) - 0.625) < 1e-6
    # d/dlog_alpha = the loss itself; entropy 0.25 > target -1, so descent lowers alpha.
    assert abs(float(grad) - 0.625) < 1e-6
    _, grad_below = jax.value_and_grad(sac_loss.temperature_loss)(log_alpha, LOGP, 2.0)
    assert float(grad_below) < 0  # entropy below target: alpha grows
    assert float(jax.grad(sac_loss.temperature_loss, argnums=1)(log_alpha, LOGP, -1.0).sum()) == 0


def test_tanh_gaussian_log_prob_matches_the_change_of_variables():
    mean, log_std = jnp.array([0.2, -0.5]), jnp.array([0.0, jnp.log(0.5)])
    u = jnp.array([0.3, -1.2])
    z = (u - mean) / jnp.exp(log_std)
    naive = jnp.sum(-0.5 * z**2 - log_std - 0.5 * np.log(2 * np.pi) - jnp.log(1 - jnp.tanh(u)**2))
    assert abs(float(sac_loss.tanh_gaussian_log_prob(mean, log_std, u)) - float(naive)) < 1e-5
    # Far in the tail tanh(u) rounds to 1 in float32; the stable form stays finite.
    far = sac_loss.tanh_gaussian_log_prob(jnp.zeros(1), jnp.zeros(1), jnp.array([20.0]))
    assert np.isfinite(float(far))
    a, logp = sac_loss.sample_tanh_gaussian(jax.random.PRNGKey(0), jnp.zeros((1000, 2)),
                                            jnp.zeros((1000, 2)))
    assert a.shape == (1000, 2) and logp.shape == (1000,) and float(jnp.abs(a).max()) <= 1.0


# ------------------------------------------------------------------------------ config
@pytest.mark.parametrize("changes, message", [
    (dict(num_envs=0), "num_envs must be >= 1"),
    (dict(total_steps=3), "less than one update"),
    (dict(utd=0.01), "gradient steps"),
    (dict(buffer_size=100), "must hold a batch"),
    (dict(gamma=1.5), "gamma"),
    (dict(tau=0.0), "tau"),
    (dict(learning_starts=-1), "learning_starts"),
    (dict(critic_lr=0.0), "critic_lr must be > 0"),
])
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        SACConfig(**changes).validate()


def test_discrete_env_is_refused():
    with pytest.raises(ValueError, match="continuous"):
        SAC(make("CartPole"))


# ------------------------------------------------------------------------------ learning
@pytest.mark.slow
def test_sac_solves_pendulum():
    env = make("Pendulum")
    config = SACConfig(num_envs=8, total_steps=16_000, hidden_sizes=(64, 64), batch_size=256,
                       learning_starts=1000, actor_lr=1e-3, critic_lr=1e-3,
                       alpha_lr=1e-3).validate()
    sac = SAC(env)
    space = fixed_space(env.default_params())
    state = sac.init(jax.random.PRNGKey(0), config, space)
    state, metrics = sac.train_chunk(state, config, num_updates=config.num_updates // 10,
                                     log_every=10)
    assert np.all(np.asarray(metrics["nonfinite_flags"]) == 0)
    # Random torques score about -1200; a swing-up policy about -150.
    assert float(metrics["episode_return"][25]) < -700
    # The last 10 episodes: the trained stochastic policy from 10 random starts.
    params = jax.tree.map(lambda x: x[None], env.default_params())
    returns = np.asarray(evaluate_on_params(sac.make_policy(state, config), env, params, 10,
                                            jax.random.PRNGKey(1)))
    assert returns.mean() > -200, returns
    assert float(np.mean(np.asarray(state.env_state.last_return))) > -250  # training episodes


SMALL = SACConfig(num_envs=4, num_steps=2, total_steps=4 * 2 * 8, hidden_sizes=(8, 8),
                  batch_size=8, buffer_size=40, learning_starts=16)
SPACE = fixed_space(Pendulum().default_params())


@pytest.fixture(scope="module")
def sac():
    """One learner for the small tests, so they share its compiled chunks (n = 2 and 4)."""
    return SAC(Pendulum())


def test_a_training_phase_compiles_its_chunk_once(tmp_path, sac):
    from metarl_jax.io.training_loop import train_phase

    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    before = sac.traces.get("train_chunk_seeds", 0)
    train_phase(tmp_path, "p", lambda: sac.init_seeds(keys, SMALL, SPACE),
                lambda s, n: sac.train_chunk_seeds(s, SMALL, n), num_updates=6,
                updates_per_chunk=2, steps_per_update=SMALL.steps_per_update * 2)
    assert sac.traces["train_chunk_seeds"] <= before + 1  # three chunks, one compile
    faster = SMALL.replace(actor_lr=1e-2, gamma=0.9, tau=0.1, init_alpha=0.3)
    after = sac.traces["train_chunk_seeds"]
    sac.train_chunk_seeds(sac.init_seeds(keys, SMALL, SPACE), faster, 2)
    assert sac.traces["train_chunk_seeds"] == after  # rates are traced


def test_seeds_are_a_vmap_axis(sac):
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    states, metrics = sac.train_chunk_seeds(sac.init_seeds(keys, SMALL, SPACE), SMALL, 2)
    assert metrics["critic_loss"].shape == (2, 2)
    single, _ = sac.train_chunk(sac.init(keys[1], SMALL, SPACE), SMALL, 2)
    leaf = lambda s: np.asarray(jax.tree.leaves(s.params["critic"])[0])
    np.testing.assert_allclose(leaf(states)[1], leaf(single), rtol=1e-4, atol=1e-5)
    assert not np.allclose(leaf(states)[0], leaf(states)[1])


def test_resume_through_a_checkpoint_is_bit_identical(tmp_path, sac):
    state = sac.init(jax.random.PRNGKey(0), SMALL, SPACE)
    # 4 updates = 32 env steps; gradient steps from update 2 on (learning_starts = 16).
    whole, whole_metrics = sac.train_chunk(state, SMALL, num_updates=4)
    half, first = sac.train_chunk(state, SMALL, num_updates=2)
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(2, half)
    with Checkpointer(tmp_path / "ck") as ckpt:  # a fresh process
        restored, _ = ckpt.restore(2, like=jax.eval_shape(lambda: state))
    resumed, second = sac.train_chunk(restored, SMALL, num_updates=2)
    assert int(whole.buffer.size) == 32 and int(half.buffer.size) == 16
    for a, b in zip(jax.tree.leaves(whole), jax.tree.leaves(resumed)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for k in whole_metrics:
        np.testing.assert_array_equal(np.asarray(whole_metrics[k]),
                                      np.concatenate([first[k], second[k]]))
    assert float(whole_metrics["critic_loss"][0]) == 0.0  # warm-up: no gradient step
    assert float(whole_metrics["critic_loss"][-1]) > 0.0  # then it learns


def test_buffer_wraps_around_inside_training(sac):
    state = sac.init(jax.random.PRNGKey(0), SMALL, SPACE)
    state, _ = sac.train_chunk(state, SMALL, num_updates=4)
    state, _ = sac.train_chunk(state, SMALL, num_updates=2)  # 48 transitions into 40 slots
    assert int(state.buffer.size) == 40 and int(state.buffer.position) == 8


def test_checkpoint_without_the_buffer_and_refill(tmp_path, sac):
    state, _ = sac.train_chunk(sac.init(jax.random.PRNGKey(0), SMALL, SPACE), SMALL, 2)
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(2, without_buffer(state))
        restored, _ = ckpt.restore(2, like=jax.eval_shape(lambda: without_buffer(state)))
    assert restored.buffer is None
    refilled = sac.with_empty_buffer(restored, SMALL)
    assert int(refilled.buffer.size) == 0
    after, metrics = sac.train_chunk(refilled, SMALL, num_updates=2)
    assert int(after.buffer.size) == 16 and np.all(np.asarray(metrics["nonfinite_flags"]) == 0)


def test_nonfinite_guard_trips_and_keeps_the_last_good_state(monkeypatch):
    monkeypatch.setenv(INJECT_NAN_ENV, "1")
    sac = SAC(Pendulum())  # reads the variable when constructed
    state = sac.init(jax.random.PRNGKey(0), SMALL, SPACE)
    after, metrics = sac.train_chunk(state, SMALL, num_updates=2)
    assert np.all(np.asarray(metrics["nonfinite_flags"]) & 1)  # bit 0: the loss
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_policy_respects_the_action_box_and_is_deterministic_when_asked(sac):
    state = sac.init(jax.random.PRNGKey(0), SMALL, SPACE)
    obs = jnp.ones((5, 3))
    act = sac.make_policy(state, SMALL)
    action = act(jax.random.PRNGKey(0), obs)
    assert action.shape == (5, 1) and float(jnp.abs(action).max()) <= 2.0
    greedy = sac.make_policy(state, SMALL, deterministic=True)
    np.testing.assert_array_equal(np.asarray(greedy(jax.random.PRNGKey(0), obs)),
                                  np.asarray(greedy(jax.random.PRNGKey(1), obs)))
