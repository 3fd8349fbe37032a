"""PSRL (metarl_jax.baselines.psrl): on a 1-state MDP with 1-step episodes it *is* Thompson
sampling on the Gaussian bandit (checked pull by pull against a Thompson sampler written here
with the textbook conjugate update, on the same keys), and on small random MDPs it beats
random actions and improves over the episodes of a trial, staying below the known-MDP value."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.tabular_mdp import (
    TabularMDP,
    optimal_episode_return,
    random_episode_return,
    tabular_mdp_task_space,
)
from metarl_jax import stats
from metarl_jax.baselines.psrl import psrl_returns


def _gaussian_thompson(key, env, params, prior, pulls):
    """Thompson sampling on the arms' N(mu_a, sigma^2) rewards, prior mu_a ~ N(mu0, sigma0^2):
    per pull, draw every arm's mean from its posterior and pull the best. Key use as PSRL's
    (module doc): per pull ``(draw, reset, step)``, a draw's key ``(transitions, rewards)``."""
    A = env.num_actions
    mu0, var0, noise_var = prior.reward_prior_mean, prior.reward_prior_std**2, prior.reward_std**2

    def pull(carry, k):
        count, total = carry
        draw_key, _, step_key = jax.random.split(k, 3)
        post_var = 1.0 / (1.0 / var0 + count / noise_var)
        post_mean = post_var * (mu0 / var0 + total / noise_var)
        theta = post_mean + jnp.sqrt(post_var) * jax.random.normal(
            jax.random.split(draw_key)[1], (1, A))[0]
        arm = jnp.argmax(theta).astype(jnp.int32)
        state, _ = env.reset(jax.random.PRNGKey(0), params)  # one state: nothing to draw
        _, _, reward, _, _ = env.step(jax.random.split(step_key, 1)[0], state, arm, params)
        return (count.at[arm].add(1.0), total.at[arm].add(reward)), reward

    zeros = jnp.zeros((A,), jnp.float32)
    return jax.lax.scan(pull, (zeros, zeros), jax.random.split(key, pulls))[1]


def test_psrl_on_a_one_state_mdp_is_thompson_sampling_on_the_bandit():
    arms, pulls, tasks_n = 4, 30, 16
    env = TabularMDP(num_states=1, num_actions=arms, max_steps=1)
    prior = tabular_mdp_task_space(1, arms, reward_prior_mean=0.5, reward_prior_std=2.0,
                                   reward_std=0.7)
    tasks = prior.sample(jax.random.PRNGKey(0), (tasks_n,))
    key = jax.random.PRNGKey(1)
    psrl = np.asarray(psrl_returns(key, env, tasks, prior, pulls))  # [M, pulls]
    keys = jax.random.split(key, tasks_n)
    thompson = np.asarray(jax.jit(jax.vmap(
        lambda k, p: _gaussian_thompson(k, env, p, prior, pulls)))(keys, tasks))
    # The same rewards pull by pull: the same arms (a reward's mean is its arm's).
    np.testing.assert_allclose(psrl, thompson, rtol=1e-5, atol=1e-5)
    assert len(np.unique(np.round(psrl[:, -1] - psrl[:, 0], 3))) > 1  # not a degenerate case


def test_psrl_beats_random_and_learns_within_the_trial_on_small_mdps():
    S, A, H, episodes, tasks_n = 4, 3, 5, 8, 300
    env = TabularMDP(S, A, H)
    prior = tabular_mdp_task_space(S, A)
    tasks = prior.sample(jax.random.PRNGKey(2), (tasks_n,))
    returns = np.asarray(psrl_returns(jax.random.PRNGKey(3), env, tasks, prior, episodes))
    assert returns.shape == (tasks_n, episodes)
    random = np.asarray(jax.vmap(lambda p: random_episode_return(p, H))(tasks))
    oracle = np.asarray(jax.vmap(lambda p: optimal_episode_return(p, H))(tasks))
    gain, ci = stats.mean_ci95(returns.mean(1) - random)  # paired over tasks
    assert gain - ci > 0.0, (gain, ci)
    late, ci = stats.mean_ci95(returns[:, -3:].mean(1) - returns[:, 0])
    assert late - ci > 0.0, (late, ci)  # later episodes of a trial earn more than the first
    regret, ci = stats.mean_ci95(oracle - returns[:, -1])
    assert regret + ci > 0.0  # no learner beats the known-MDP policy in expectation


def test_psrl_rejects_a_degenerate_prior():
    env = TabularMDP(2, 2, 2)
    prior = tabular_mdp_task_space(2, 2, reward_prior_std=0.0)
    with pytest.raises(ValueError, match="reward_prior_std"):
        psrl_returns(jax.random.PRNGKey(0), env, prior.sample(jax.random.PRNGKey(0), (2,)),
                     prior, 3)
