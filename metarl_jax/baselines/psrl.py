"""Posterior sampling for reinforcement learning (PSRL; Osband, Russo & Van Roy 2013) on finite
MDPs with Gaussian rewards, in pure JAX: the baseline the RL^2 paper compares with on tabular
MDPs (Duan et al. 2016, sec. 3.2).

The agent knows the prior the MDPs are drawn from (the one ``envs.tabular_mdp`` uses)::

    transitions[s, a] ~ Dirichlet(alpha, ..., alpha)      (alpha = 1: uniform on the simplex)
    reward_mean[s, a] ~ N(mu0, sigma0^2);  reward = reward_mean[s, a] + N(0, sigma^2)

and keeps the conjugate posterior from what it has seen in the trial so far: transition counts
``n[s, a, s']`` (posterior ``Dirichlet(alpha + n[s, a])``) and, per ``(s, a)``, the number of
rewards ``m`` and their sum (posterior ``N(mean, var)``, ``1 / var = 1 / sigma0^2 + m / sigma^2``,
``mean = var * (mu0 / sigma0^2 + sum / sigma^2)``). At the start of every episode it draws one
MDP from the posterior, computes that MDP's optimal ``H``-step policy by backward value
iteration (non-stationary: the action depends on the steps left), follows it for the episode,
and updates the posterior with every transition.

    returns = psrl_returns(key, env, tasks, prior, num_episodes)   # tasks [M] -> returns [M, E]

``env``: a finite MDP env with one-hot observations (``envs.tabular_mdp.TabularMDP``:
``num_states``, ``num_actions``, ``max_steps``, ``reset``, ``step``); ``prior``: anything with
``reward_prior_mean``, ``reward_prior_std`` (> 0) and ``reward_std`` (> 0), e.g. the task space
the tasks were drawn from. Keys: a trial's key is split into one key per episode; an episode's
key into ``(posterior draw, reset, one key per step)``; a posterior draw's key into
``(transitions, rewards)``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Posterior(NamedTuple):
    """Sufficient statistics of one trial: ``transitions [S, A, S]`` counts, ``visits [S, A]``
    (rewards seen) and ``reward_sum [S, A]``."""

    transitions: jax.Array
    visits: jax.Array
    reward_sum: jax.Array


def reward_posterior(post: Posterior, prior: Any):
    """``(mean [S, A], var [S, A])`` of the Normal posterior over the mean rewards."""
    prior_precision = 1.0 / jnp.square(prior.reward_prior_std)
    noise_precision = 1.0 / jnp.square(prior.reward_std)
    var = 1.0 / (prior_precision + post.visits * noise_precision)
    mean = var * (prior.reward_prior_mean * prior_precision + post.reward_sum * noise_precision)
    return mean, var


def sample_mdp(key: jax.Array, post: Posterior, prior: Any, alpha: float = 1.0):
    """One MDP from the posterior: ``(transitions [S, A, S], reward_mean [S, A])``."""
    t_key, r_key = jax.random.split(key)
    transitions = jax.random.dirichlet(t_key, alpha + post.transitions)
    mean, var = reward_posterior(post, prior)
    return transitions, mean + jnp.sqrt(var) * jax.random.normal(r_key, mean.shape, mean.dtype)


def finite_horizon_q(transitions: jax.Array, reward_mean: jax.Array, horizon: int) -> jax.Array:
    """``q [H, S, A]``: ``q[h]`` is the optimal action value with ``h + 1`` steps left
    (``q[0] = r``, ``q[h] = r + P max_a q[h - 1]``)."""

    def backup(q, _):
        q = reward_mean + jnp.einsum("sat,t->sa", transitions, jnp.max(q, axis=-1))
        return q, q

    _, rest = jax.lax.scan(backup, reward_mean, None, length=horizon - 1)
    return jnp.concatenate([reward_mean[None], rest], axis=0)


def psrl_trial(key: jax.Array, env, params: Any, prior: Any, num_episodes: int,
               alpha: float = 1.0) -> jax.Array:
    """PSRL for ``num_episodes`` episodes of one MDP ``params``: undiscounted returns ``[E]``."""
    S, A, H = env.num_states, env.num_actions, env.max_steps
    zeros = jnp.zeros((S, A), jnp.float32)
    post0 = Posterior(jnp.zeros((S, A, S), jnp.float32), zeros, zeros)

    def episode(post: Posterior, episode_key):
        draw_key, reset_key, step_key = jax.random.split(episode_key, 3)
        q = finite_horizon_q(*sample_mdp(draw_key, post, prior, alpha), H)
        state, obs = env.reset(reset_key, params)

        def step(carry, xs):
            state, obs, post, total = carry
            k, steps_left = xs
            s = jnp.argmax(obs)
            a = jnp.argmax(q[steps_left - 1, s]).astype(jnp.int32)
            state, obs, reward, _, _ = env.step(k, state, a, params)
            post = Posterior(post.transitions.at[s, a, jnp.argmax(obs)].add(1.0),
                             post.visits.at[s, a].add(1.0), post.reward_sum.at[s, a].add(reward))
            return (state, obs, post, total + reward), None

        xs = (jax.random.split(step_key, H), H - jnp.arange(H))
        (_, _, post, total), _ = jax.lax.scan(step, (state, obs, post, jnp.float32(0.0)), xs)
        return post, total

    _, returns = jax.lax.scan(episode, post0, jax.random.split(key, num_episodes))
    return returns


def psrl_returns(key: jax.Array, env, tasks: Any, prior: Any, num_episodes: int,
                 alpha: float = 1.0) -> jax.Array:
    """PSRL on every MDP of ``tasks`` (leaves ``[M, ...]``), one key each: returns ``[M, E]``."""
    if not (float(prior.reward_prior_std) > 0 and float(prior.reward_std) > 0):
        raise ValueError("PSRL needs reward_prior_std > 0 and reward_std > 0, got "
                         f"{float(prior.reward_prior_std)}, {float(prior.reward_std)}")
    if num_episodes < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    keys = jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])
    run = jax.jit(jax.vmap(lambda k, p: psrl_trial(k, env, p, prior, num_episodes, alpha)))
    return run(keys, tasks)
