"""The experiment glue in metarl_jax.transfer: per-seed grid evaluation and RL^2 trial reports."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.pendulum import Pendulum
from metarl_jax.transfer.evaluation import evaluate_on_params, evaluate_seeds, summarize_seeds
from metarl_jax.transfer.trials import per_episode_results


def test_evaluate_seeds_is_evaluate_on_params_per_seed():
    env = Pendulum()
    params = jax.tree.map(lambda x: jnp.stack([x, x * 1.5]), env.default_params())  # [C=2]
    gains = jnp.asarray([0.0, 1.0, -2.0])  # a "state" per seed: act = -gain * theta_dot
    policy_of = lambda gain: (lambda key, obs: jnp.clip(-gain * obs[2:3], -2.0, 2.0))
    key = jax.random.PRNGKey(3)
    got = evaluate_seeds(policy_of, gains, env, params, 2, key)
    assert got.shape == (3, 2)
    for s, gain in enumerate(gains):
        one = evaluate_on_params(policy_of(gain), env, params, 2, key).mean(-1)
        np.testing.assert_allclose(got[s], one, rtol=1e-6)
    both = evaluate_seeds(lambda g: {"a": policy_of(g), "b": policy_of(-g)}, gains, env, params,
                          2, key)
    np.testing.assert_allclose(both["a"], got, rtol=1e-6)


def test_summarize_seeds_by_hand():
    per_seed = np.array([[1.0, 3.0, -2.0], [3.0, 5.0, 0.0]])  # [S=2, C=3]; seed mean 2, 4, -1
    out = summarize_seeds(per_seed)
    assert out["cell_returns"] == [2.0, 4.0, -1.0]
    assert out["heldout_mean"] == pytest.approx(5.0 / 3.0)
    assert out["heldout_worst"] == -1.0 and out["heldout_cvar10"] == -1.0  # ceil(0.3) = 1 cell
    assert out["per_seed"][1] == {"heldout_mean": pytest.approx(8.0 / 3.0), "heldout_worst": 0.0,
                                  "heldout_cvar10": 0.0}


def test_per_episode_results_by_hand():
    # 3 tasks x 2 episodes; episode means 2 and 4; trial sums 4, 6, 8 (mean 6, s = 2,
    # se = 2 / sqrt(3)); gains 2, 2, 2 (se 0)
    returns = np.array([[1.0, 3.0], [2.0, 4.0], [3.0, 5.0]])
    out = per_episode_results(returns, {"oracle": 5.0}, later=1, gain_name="second_minus_first")
    assert out["per_episode"]["rl2"] == [2.0, 4.0]
    np.testing.assert_allclose(out["per_episode"]["rl2_stderr"], [1 / np.sqrt(3)] * 2)
    assert out["per_episode"]["oracle"] == [5.0, 5.0]
    assert out["trial_return"]["rl2"] == 6.0 and out["trial_return"]["oracle"] == 10.0
    assert out["trial_return"]["rl2_stderr"] == pytest.approx(2 / np.sqrt(3))
    assert out["adaptation"] == {"second_minus_first": 2.0, "stderr": 0.0}
