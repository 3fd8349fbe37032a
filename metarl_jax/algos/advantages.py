"""Generalized advantage estimation (Schulman et al. 2016), time-major and truncation-aware."""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp


def gae(
    reward: jax.Array,
    value: jax.Array,
    next_value: jax.Array,
    terminated: jax.Array,
    done: jax.Array,
    gamma: float,
    lam: float,
) -> Tuple[jax.Array, jax.Array]:
    """Advantages and value targets. All inputs ``[T, N]``.

    ``next_value[t]`` is ``V`` of the observation reached by step ``t`` *before* any auto-reset
    (so a time-limit truncation still bootstraps); ``terminated`` zeroes it, ``done`` (terminated
    or truncated) stops the advantage recursion from leaking into the next episode::

        delta_t = r_t + gamma * (1 - terminated_t) * next_value_t - value_t
        A_t     = delta_t + gamma * lam * (1 - done_t) * A_{t+1}

    Returns ``(advantages[T, N], targets[T, N] = advantages + value)``.
    """
    not_terminated = 1.0 - terminated.astype(reward.dtype)
    not_done = 1.0 - done.astype(reward.dtype)
    delta = reward + gamma * not_terminated * next_value - value

    def backward(carry, xs):
        delta_t, not_done_t = xs
        adv = delta_t + gamma * lam * not_done_t * carry
        return adv, adv

    _, advantages = jax.lax.scan(
        backward, jnp.zeros_like(delta[0]), (delta, not_done), reverse=True
    )
    return advantages, advantages + value
