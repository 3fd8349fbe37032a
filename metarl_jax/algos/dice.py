"""Score-function surrogates whose derivatives of every order are policy-gradient estimators.

``magic_box(x) = exp(x - stop_gradient(x))`` evaluates to 1 but differentiates as
``d box(x) = box(x) dx`` (Foerster et al. 2018, "DiCE: The Infinitely Differentiable Monte
Carlo Estimator"). Multiplying each cost by the box of the log-probabilities of the stochastic
nodes it depends on gives a surrogate whose n-th derivative is an unbiased estimate of the n-th
derivative of the expected return, so ``jax.grad`` / ``jax.hessian`` of it are estimators.

Three inner objectives for gradient-based meta-RL, all averaged over time and episodes
(``log_probs``, ``rewards``, ``advantages``: ``[T, N]``, time-major; ``log_probs[t]`` is the sum
of the log-probabilities of every action taken at step ``t``):

* ``dice_objective``: ``sum_t gamma^t r_t box(sum_{t'<=t} logp_t')`` plus the baseline term of
  Mao et al. 2019 (Loaded DiCE), ``sum_t gamma^t b_t (1 - box(logp_t))``, which lowers the
  variance and leaves every derivative's expectation unchanged. Unbiased gradient and Hessian.
* ``lvc_objective``: ``sum_t box(logp_t) A_t``, the low-variance curvature estimator of ProMP
  (Rothfuss et al. 2019, eq. 12). Same gradient as DiCE; its Hessian keeps only the per-step
  ``grad logp_t grad logp_t^T A_t`` outer products (biased, far lower variance). Given the
  sampling policy's log-probabilities it is ProMP's likelihood-ratio form
  ``sum_t pi_theta(a_t|s_t) / pi_theta_o(a_t|s_t) A_t`` (Algorithm 1's ``J^LR``): identical
  value and derivatives at ``theta = theta_o``, and at ``theta != theta_o`` (ProMP's later outer
  steps, TRPO's line search) the importance-weighted objective of the fixed samples rather than
  the box's, whose gradient ``grad logp A`` ignores that the samples came from ``theta_o``.
* ``pg_objective``: ``sum_t logp_t A_t``, the plain policy-gradient surrogate used by the
  original MAML. Same gradient; its Hessian drops the outer-product terms entirely.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def magic_box(x: jax.Array) -> jax.Array:
    """The DiCE operator: 1 in value, ``box(x) * dx`` in derivative (elementwise)."""
    return jnp.exp(x - jax.lax.stop_gradient(x))


def discounts(num_steps: int, gamma: float, dtype=jnp.float32) -> jax.Array:
    """``gamma^t`` for ``t = 0..T-1``: ``[T, 1]`` (broadcasts over episodes)."""
    return (gamma ** jnp.arange(num_steps, dtype=dtype))[:, None]


def dice_objective(log_probs: jax.Array, rewards: jax.Array, gamma: float,
                   baseline: jax.Array | None = None) -> jax.Array:
    """DiCE surrogate of the discounted return, mean over episodes and steps: ``[]``.

    Args:
        log_probs: ``[T, N]`` log-probability of the actions at each step (differentiable).
        rewards: ``[T, N]`` rewards (constants).
        gamma: discount.
        baseline: optional ``[T, N]`` estimate of the discounted return-to-go from step ``t``
            (a constant); enters through the zero-mean term ``gamma^t b_t (1 - box(logp_t))``.
    """
    disc = discounts(rewards.shape[0], gamma, rewards.dtype)
    dependencies = jnp.cumsum(log_probs, axis=0)
    objective = disc * rewards * magic_box(dependencies)
    if baseline is not None:
        objective = objective + disc * baseline * (1.0 - magic_box(log_probs))
    return jnp.mean(objective)


def dice_score_weights(rewards: jax.Array, gamma: float,
                       baseline: jax.Array | None = None) -> jax.Array:
    """``w_t = gamma^t (G_t - b_t)``: ``[T, N]``, so that ``pg_objective(log_probs, w)`` has the
    same value of the gradient as ``dice_objective`` (but the plain surrogate's Hessian: it is
    the exact derivative of the fixed-sample function, which is what a line search measures)."""
    disc = discounts(rewards.shape[0], gamma, rewards.dtype)
    to_go = returns_to_go(rewards, gamma)
    return disc * (to_go if baseline is None else to_go - baseline)


def lvc_objective(log_probs: jax.Array, advantages: jax.Array,
                  sampling_log_probs: jax.Array | None = None) -> jax.Array:
    """ProMP's low-variance curvature surrogate ``mean_t,n ratio_t A_t``: ``[]``.

    ``ratio_t = exp(logp_t - sampling_logp_t)`` with ``sampling_log_probs`` (``[T, N]``, the
    log-probabilities of the actions under the policy that drew them, constants): the
    likelihood ratio of Rothfuss et al. 2019, Algorithm 1. Without it, ``box(logp_t)`` (the
    ratio to the current parameters, 1 in value): the two agree only at the sampling policy.
    """
    if sampling_log_probs is None:
        return jnp.mean(magic_box(log_probs) * advantages)
    ratio = jnp.exp(log_probs - jax.lax.stop_gradient(sampling_log_probs))
    return jnp.mean(ratio * advantages)


def pg_objective(log_probs: jax.Array, advantages: jax.Array) -> jax.Array:
    """The policy-gradient surrogate ``mean_t,n logp_t A_t`` (first derivative only): ``[]``."""
    return jnp.mean(log_probs * advantages)


def returns_to_go(rewards: jax.Array, gamma: float) -> jax.Array:
    """``G_t = sum_{t' >= t} gamma^(t'-t) r_t'`` over a ``[T, N]`` episode: ``[T, N]``."""

    def backward(carry, r):
        carry = r + gamma * carry
        return carry, carry

    _, out = jax.lax.scan(backward, jnp.zeros_like(rewards[0]), rewards, reverse=True)
    return out
