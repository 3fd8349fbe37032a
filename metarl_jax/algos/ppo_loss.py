"""The PPO-family loss and its minibatch/epoch loop, shared by PPO and RL².

    batch = Batch(obs, action, log_prob, advantage, target)          # leaves [B, ...]
    loss, stats = clipped_surrogate_loss(log_prob, value, entropy, batch, clip_eps, vf_coef,
                                         ent_coef)
    (params, opt_state), stats = run_epochs(loss_fn, tx, lr, params, opt_state, batch, key,
                                            num_epochs, num_minibatches)

``Batch.weight`` is an optional per-sample weight (EPOpt / MRPO select episodes by weighting
their samples; ``None`` is plain PPO): every mean of the loss and the advantage normalization
become weighted means. Shapes: ``B`` = samples in a (mini)batch; ``log_prob``, ``value``,
``entropy`` are ``[B]`` (or any shape matching ``batch.advantage``).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax

from metarl_jax.core.permutation import random_permutation

Metrics = Dict[str, jax.Array]


class Batch(NamedTuple):
    """One batch of on-policy samples. Leaves share a leading sample axis ``[B, ...]``.

    Attributes:
        obs: the network inputs (any pytree; RL²: its per-step inputs and resets).
        action: the actions taken.
        log_prob: ``[B]`` log-probability of ``action`` under the sampling policy.
        advantage: ``[B]`` advantage estimates (normalized per minibatch by the loss).
        target: ``[B]`` value targets.
        weight: ``[B]`` non-negative per-sample weight, or ``None`` (every sample counts once).
    """

    obs: Any
    action: jax.Array
    log_prob: jax.Array
    advantage: jax.Array
    target: jax.Array
    weight: Optional[jax.Array] = None


def weighted_mean(x: jax.Array, w: Optional[jax.Array]) -> jax.Array:
    """``mean(x)`` when ``w`` is None, else ``sum(w x) / sum(w)`` (0 when every weight is 0)."""
    if w is None:
        return jnp.mean(x)
    return jnp.sum(w * x) / jnp.maximum(jnp.sum(w), 1e-8)


def normalize_advantages(adv: jax.Array, w: Optional[jax.Array]) -> jax.Array:
    """``(adv - mean) / (std + 1e-8)``, with the weighted mean and std when ``w`` is given."""
    if w is None:
        return (adv - adv.mean()) / (adv.std() + 1e-8)
    mean = weighted_mean(adv, w)
    std = jnp.sqrt(weighted_mean((adv - mean) ** 2, w))
    return (adv - mean) / (std + 1e-8)


def clipped_surrogate_loss(log_prob: jax.Array, value: jax.Array, entropy: jax.Array,
                           batch: Batch, clip_eps: Any, vf_coef: Any, ent_coef: Any,
                           normalize_advantage: bool = True) -> Tuple[jax.Array, Metrics]:
    """PPO's clipped objective, value regression and entropy bonus, as a loss to minimize.

    ``loss = -E[min(r A, clip(r, 1 - eps, 1 + eps) A)] + vf_coef * 0.5 E[(V - target)^2]
    - ent_coef * E[H]`` with ``r = exp(log_prob - batch.log_prob)``, ``A`` the minibatch-normalized
    advantage, and ``E`` the (weighted) mean over the batch. Returns ``(loss, stats)``.
    ``normalize_advantage=False`` uses ``batch.advantage`` as given (multi-task PPO normalizes
    over the whole minibatch or per task before splitting it into per-task losses).
    """
    mean = lambda x: weighted_mean(x, batch.weight)
    ratio = jnp.exp(log_prob - batch.log_prob)
    adv = batch.advantage
    if normalize_advantage:
        adv = normalize_advantages(adv, batch.weight)
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    policy_loss = -mean(jnp.minimum(ratio * adv, clipped * adv))
    value_loss = 0.5 * mean((value - batch.target) ** 2)
    entropy = mean(entropy)
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    return loss, {
        "policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
        "approx_kl": mean((ratio - 1.0) - jnp.log(ratio)),
        "clip_frac": mean(jnp.abs(ratio - 1.0) > clip_eps),
    }


def run_epochs(loss_fn: Callable[[Any, Any], Tuple[jax.Array, Metrics]],
               tx: optax.GradientTransformation, lr: Any, params: Any, opt_state: Any,
               batch: Any, key: jax.Array, num_epochs: int, num_minibatches: int,
               sample_axes: Any = 0) -> Tuple[Tuple[Any, Any], Metrics]:
    """``num_epochs`` passes over ``batch`` in ``num_minibatches`` shuffled minibatches, one
    optimizer step each (``lax.scan`` over both). Each epoch's shuffle is
    ``core.permutation.random_permutation`` (uniform like ``jax.random.permutation``, ~2.5x
    cheaper on a CPU, other bits for the same key).

    ``sample_axes``: the axis of each leaf that indexes samples (an int for every leaf, or a pytree
    prefix of ``batch``); RL² keeps its sequences time-major ``[L, S, ...]`` with samples on axis
    1. Each minibatch keeps every leaf's layout, with ``S / num_minibatches`` samples.
    ``loss_fn(params, minibatch) -> (loss, stats)``; ``tx`` is applied and its update scaled by
    ``-lr`` (a traced rate: annealing does not recompile). Returns ``((params, opt_state),
    stats)`` with stats ``[num_epochs, num_minibatches]`` per key, plus ``grad_norm``.
    """
    axes = jax.tree.broadcast(sample_axes, batch, is_leaf=lambda x: x is None)
    leaves, treedef = jax.tree.flatten(batch)
    axes = treedef.flatten_up_to(axes)
    size = leaves[0].shape[axes[0]]

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        (_, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, minibatch)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: -lr * u, updates)
        stats["grad_norm"] = optax.tree.norm(grads)
        return (optax.apply_updates(params, updates), opt_state), stats

    def split(x, axis, perm):  # shuffle along ``axis``, then a leading minibatch axis
        x = x[(slice(None),) * axis + (perm,)]
        x = x.reshape(x.shape[:axis] + (num_minibatches, -1) + x.shape[axis + 1:])
        return jnp.moveaxis(x, axis, 0) if axis else x

    def epoch(carry, epoch_key):
        perm = random_permutation(epoch_key, size)
        minibatches = treedef.unflatten([split(x, a, perm) for x, a in zip(leaves, axes)])
        return jax.lax.scan(minibatch_step, carry, minibatches)

    return jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, num_epochs))


def ppo_optimizer(max_grad_norm: Any) -> optax.GradientTransformation:
    """Global-norm clipping then Adam's scaling (eps 1e-5); the learning rate is applied by
    ``run_epochs`` so it can be traced and annealed from the update counter."""
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), optax.scale_by_adam(eps=1e-5))
