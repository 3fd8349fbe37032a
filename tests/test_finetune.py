"""Shot-based transfer (transfer/finetune.py) and the learners' retarget hooks, on tiny budgets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.pendulum import Pendulum
from metarl_jax import stats
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import fixed_space, make_param_space
from metarl_jax.transfer.evaluation import evaluate_seeds
from metarl_jax.transfer.finetune import check_budgets, finetune_returns, target_eval_params

ENV = Pendulum(max_steps=20)
NOMINAL = ENV.default_params()
TARGET = NOMINAL.replace(m=NOMINAL.m * 1.3, max_torque=NOMINAL.max_torque * 0.7)
SAC_CONFIG = SACConfig(num_envs=4, num_steps=2, total_steps=64, hidden_sizes=(8, 8),
                       batch_size=8, buffer_size=64, learning_starts=8)
PPO_CONFIG = PPOConfig(num_envs=4, num_steps=10, total_steps=80, num_epochs=1,
                       num_minibatches=2, hidden_sizes=(8, 8))
KEYS = jax.random.split(jax.random.PRNGKey(0), 2)


@pytest.fixture(scope="module")
def sac_run():
    sac = SAC(ENV)
    states = sac.init_seeds(KEYS, SAC_CONFIG, fixed_space(NOMINAL))
    states, _ = sac.train_chunk_seeds(states, SAC_CONFIG, 4)  # a little source training
    result = finetune_returns(sac, states, SAC_CONFIG, TARGET, (8, 24), jax.random.PRNGKey(1),
                              num_episodes=3)
    return sac, states, result


def test_zero_shot_equals_an_independent_evaluation(sac_run):
    sac, states, result = sac_run
    cells_key, eval_key, _ = jax.random.split(jax.random.PRNGKey(1), 3)
    params = target_eval_params(TARGET, 16, cells_key)
    assert jax.tree.leaves(params)[0].shape[0] == 1  # fixed Params: one cell
    independent = evaluate_seeds(lambda s: sac.make_policy(s, SAC_CONFIG, True), states, ENV,
                                 params, 3, eval_key)  # [S, 1]
    np.testing.assert_allclose(result.returns[:, 0], independent[:, 0], rtol=1e-6)


def test_result_shapes_keys_and_cis(sac_run):
    _, _, result = sac_run
    assert result.budgets == (0, 8, 24)
    assert result.returns.shape == (2, 3)
    table = result.return_by_budget()
    assert list(table) == ["0", "8", "24"]
    for i, entry in enumerate(table.values()):
        assert entry["per_seed"] == pytest.approx(result.returns[:, i].tolist())
        mean, ci = stats.mean_ci95(result.returns[:, i])
        assert entry["mean"] == pytest.approx(mean) and entry["ci95"] == pytest.approx(ci)
    assert result.steps_to_threshold(-np.inf) == 0
    assert result.steps_to_threshold(np.inf) is None
    best = int(np.argmax(result.mean()))
    first = min(i for i in range(3) if result.mean()[i] >= result.mean()[best])
    assert result.steps_to_threshold(float(result.mean()[best])) == result.budgets[first]
    # 24 target steps per seed = 3 updates of 8 steps; the finetuned state trains on the target.
    assert np.all(np.asarray(result.states.update_step) == 3)
    np.testing.assert_allclose(np.asarray(result.states.space.nominal.m), [1.3, 1.3], rtol=1e-6)


def test_sac_retarget_keeps_the_networks_and_empties_the_buffer(sac_run):
    sac, states, _ = sac_run
    state = select_seed(states, 0)
    assert int(state.buffer.size) > 0
    moved = sac.retarget(state, SAC_CONFIG, fixed_space(TARGET), jax.random.PRNGKey(2))
    assert int(moved.buffer.size) == 0 and int(moved.update_step) == 0
    for a, b in zip(jax.tree.leaves((moved.params, moved.target_critic, moved.opt_state)),
                    jax.tree.leaves((state.params, state.target_critic, state.opt_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert moved.obs.shape == (SAC_CONFIG.num_envs, 3)


def test_ppo_plugs_in_with_a_param_space_target_and_more_envs():
    ppo = PPO(ENV)
    states = ppo.init_seeds(KEYS, PPO_CONFIG, fixed_space(NOMINAL))
    states, _ = ppo.train_chunk_seeds(states, PPO_CONFIG, 2)
    space = make_param_space(NOMINAL, {"m": uniform(1.2, 1.5, relative=True)})
    finetune_config = PPO_CONFIG.replace(num_envs=8)  # a finetuning config of its own sizes
    seen = []

    def train(s, n, budget):
        seen.append((n, budget))
        return ppo.train_chunk_seeds(s, finetune_config, n)[0]

    result = finetune_returns(ppo, states, finetune_config, space, (80, 240),
                              jax.random.PRNGKey(3), num_episodes=2, eval_cells=3, train=train)
    assert seen == [(1, 80), (2, 240)]  # segments of 80 steps per update
    assert result.returns.shape == (2, 3) and np.all(np.isfinite(result.returns))
    assert result.states.obs.shape == (2, 8, 3)
    m = np.asarray(result.states.env_state.inner.params.m)  # EpisodeStats(AutoReset(env))
    assert m.shape == (2, 8) and np.all((m >= 1.2 - 1e-6) & (m <= 1.5 + 1e-6))  # target physics
    cells = target_eval_params(space, 3, jax.random.PRNGKey(0))
    assert jnp.shape(cells.m) == (3,)


@pytest.mark.parametrize("budgets, message", [
    ((), "at least one"),
    ((16, 8), "strictly increasing"),
    ((8, 8), "strictly increasing"),
    ((0, 8), "positive"),
    ((8, 12), "multiples"),
])
def test_bad_budgets_raise(budgets, message):
    with pytest.raises(ValueError, match=message):
        check_budgets(budgets, 8)


def test_finetune_returns_checks_budgets_before_any_work():
    sac = SAC(ENV)
    with pytest.raises(ValueError, match="strictly increasing"):
        finetune_returns(sac, None, SAC_CONFIG, TARGET, [16, 8], jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="at least one"):
        finetune_returns(sac, None, SAC_CONFIG, TARGET, [], jax.random.PRNGKey(0))
