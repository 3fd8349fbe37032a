"""Soft actor-critic losses (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms and
Applications") and the tanh-squashed Gaussian policy, as small pure functions of arrays.

Shapes: ``B`` samples, ``A`` action dimensions. ``log_prob`` is the log-density of the squashed
action ``a = tanh(u)`` in ``[-1, 1]^A`` (the learner rescales it to the env's bounds afterwards;
that affine map shifts every log-density by the same constant, which is left out so that the
default target entropy ``-A`` means the same thing for every env).

    critic_target   y = r + gamma (1 - terminal) (min(Q1', Q2')(s', a') - alpha log pi(a'|s'))
    critic_loss       = 0.5 mean((Q1 - y)^2) + 0.5 mean((Q2 - y)^2)
    actor_loss        = mean(alpha log pi(a|s) - min(Q1, Q2)(s, a)),   a ~ pi(.|s) reparameterized
    temperature_loss  = mean(-alpha (log pi(a|s) + target_entropy)),   alpha = exp(log_alpha)
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp

_LOG_2PI = 1.8378770664093453
_LOG_2 = 0.6931471805599453


def tanh_gaussian_log_prob(mean: jax.Array, log_std: jax.Array, u: jax.Array) -> jax.Array:
    """``log pi(tanh(u))`` ``[...]`` for the pre-squash sample ``u`` of ``N(mean, std^2)``, all
    ``[..., A]``: the Gaussian log-density minus ``sum log(1 - tanh(u)^2)`` (change of variables),
    written as ``2 (log 2 - u - softplus(-2u))`` so it stays finite where ``tanh(u)`` rounds to
    +-1."""
    z = (u - mean) * jnp.exp(-log_std)
    gaussian = jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)
    log_det = jnp.sum(2.0 * (_LOG_2 - u - jax.nn.softplus(-2.0 * u)), axis=-1)
    return gaussian - log_det


def sample_tanh_gaussian(key: jax.Array, mean: jax.Array, log_std: jax.Array
                         ) -> Tuple[jax.Array, jax.Array]:
    """Reparameterized ``a = tanh(mean + std * eps)``: ``(a[..., A] in [-1, 1], log_prob[...])``."""
    u = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return jnp.tanh(u), tanh_gaussian_log_prob(mean, log_std, u)


def critic_target(reward: jax.Array, terminal: jax.Array, next_q1: jax.Array,
                  next_q2: jax.Array, next_log_prob: jax.Array, alpha: jax.Array,
                  gamma: jax.Array) -> jax.Array:
    """Soft Bellman target ``y[B]`` (module doc). ``terminal[B]`` is true only for a real
    terminal state (a time limit still bootstraps); the next action ``a'`` is drawn from the
    current policy at ``s'`` and the ``Q'`` are the target networks'."""
    soft_value = jnp.minimum(next_q1, next_q2) - alpha * next_log_prob
    return reward + gamma * (1.0 - terminal.astype(reward.dtype)) * soft_value


def critic_loss(q1: jax.Array, q2: jax.Array, target: jax.Array) -> jax.Array:
    """Both critics' squared errors to ``target`` (held fixed), ``[]``; all inputs ``[B]``."""
    target = jax.lax.stop_gradient(target)
    return 0.5 * jnp.mean((q1 - target) ** 2) + 0.5 * jnp.mean((q2 - target) ** 2)


def actor_loss(log_prob: jax.Array, q1: jax.Array, q2: jax.Array, alpha: jax.Array) -> jax.Array:
    """``mean(alpha log pi - min(Q1, Q2))`` ``[]``, inputs ``[B]`` at reparameterized actions
    (gradients reach the actor through ``log_prob`` and through the actions inside ``q1, q2``)."""
    return jnp.mean(alpha * log_prob - jnp.minimum(q1, q2))


def temperature_loss(log_alpha: jax.Array, log_prob: jax.Array,
                     target_entropy: jax.Array) -> jax.Array:
    """``mean(-alpha (log pi + target_entropy))`` ``[]`` with ``alpha = exp(log_alpha)``: its
    gradient raises alpha while the policy's entropy ``-E log pi`` is below ``target_entropy``
    and lowers it above. ``log_prob[B]`` is held fixed."""
    log_prob = jax.lax.stop_gradient(log_prob)
    return jnp.mean(-jnp.exp(log_alpha) * (log_prob + target_entropy))
