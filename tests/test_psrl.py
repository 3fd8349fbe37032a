"""PSRL (metarl_jax.baselines.psrl): on a 1-state MDP with 1-step episodes it *is* Thompson
sampling on the Gaussian bandit (checked pull by pull against a Thompson sampler written here
with the textbook conjugate update, on the same keys) and beats random arms. On random MDPs
(beats random, learns within a trial, below the known-MDP value) it is checked by the rl2_mdp
quick run's asserts in tests/test_rl2.py, which computes it anyway (one compile fewer in CI)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.tabular_mdp import (
    TabularMDP,
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
    arms, pulls, tasks_n = 4, 30, 64
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
    # It learns: late pulls beat random arms (exact expectation: the mean of the arms' means),
    # paired over tasks with a 95% CI.
    random = np.asarray(tasks.reward_mean).mean(-1)[:, 0]
    gain, ci = stats.mean_ci95(psrl[:, -10:].mean(1) - random)
    assert gain - ci > 0.0, (gain, ci)


def test_psrl_rejects_a_degenerate_prior():
    env = TabularMDP(2, 2, 2)
    prior = tabular_mdp_task_space(2, 2, reward_prior_std=0.0)
    with pytest.raises(ValueError, match="reward_prior_std"):
        psrl_returns(jax.random.PRNGKey(0), env, prior.sample(jax.random.PRNGKey(0), (2,)),
                     prior, 3)
