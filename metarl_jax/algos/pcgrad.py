"""Conflict between per-task gradients: pairwise cosines, and PCGrad's gradient surgery.

    cos = task_cosines(grads)              # grads: a pytree whose leaves are [K, ...]: [K, K]
    grads_pc = pcgrad(grads, key)          # same structure; conflicting components removed

**Cosine.** Each task's gradient is flattened over all leaves into one vector ``g_k [D]``;
``cos[i, j] = g_i . g_j / (|g_i| |g_j|)`` (0 where a gradient is exactly zero). A negative
cosine is the "conflicting gradients" of Yu et al. 2020: a step along one task's gradient
increases the other task's loss to first order.

**PCGrad** (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning", Alg. 1). For each task
``i``, start from ``g_i`` and visit the *other* tasks' original gradients ``g_j`` in a random
order; whenever ``g_i' . g_j < 0``, project ``g_i'`` onto the normal plane of ``g_j``::

    g_i' <- g_i' - (g_i' . g_j / |g_j|^2) g_j

Gradients that do not conflict are returned unchanged. The update direction is then the
combination of the projected gradients (``multitask.py`` takes their mean, so that without
surgery it is exactly the gradient of the mean per-task loss). Each task draws its own order
from ``key`` (the paper shuffles per step; with two tasks the order does not matter).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

_EPS = 1e-12


def flatten_tasks(grads: Any) -> jax.Array:
    """A pytree with leaves ``[K, ...]`` -> ``[K, D]`` (each task's leaves concatenated)."""
    leaves = jax.tree.leaves(grads)
    num_tasks = leaves[0].shape[0]
    return jnp.concatenate([x.reshape(num_tasks, -1) for x in leaves], axis=1)


def unflatten_tasks(flat: jax.Array, like: Any) -> Any:
    """Inverse of ``flatten_tasks``: ``[K, D]`` back into the structure and shapes of ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    out, start = [], 0
    for x in leaves:
        size = x[0].size
        out.append(flat[:, start:start + size].reshape(x.shape).astype(x.dtype))
        start += size
    return jax.tree.unflatten(treedef, out)


def task_cosines(grads: Any) -> jax.Array:
    """``[K, K]`` cosine between every pair of per-task gradients (leaves ``[K, ...]``)."""
    flat = flatten_tasks(grads).astype(jnp.float32)
    norms = jnp.linalg.norm(flat, axis=1)
    dots = flat @ flat.T
    denom = norms[:, None] * norms[None, :]
    return jnp.where(denom > 0, dots / jnp.maximum(denom, _EPS), 0.0)


def project_conflicting(g: jax.Array, others: jax.Array, order: jax.Array,
                        mask: jax.Array) -> jax.Array:
    """PCGrad for one task: ``g [D]`` projected away from each row of ``others [K, D]`` it
    conflicts with, visiting rows in ``order [K]``; rows with ``mask[j] = False`` are skipped.
    ``K`` is small and static: the visits are unrolled (cheaper to compile than a loop)."""
    sq_norms = jnp.maximum(jnp.sum(others * others, axis=1), _EPS)
    for step in range(others.shape[0]):
        j = order[step]
        other = others[j]
        dot = jnp.dot(g, other)
        g = jnp.where(mask[j] & (dot < 0), g - (dot / sq_norms[j]) * other, g)
    return g


def pcgrad(grads: Any, key: jax.Array) -> Any:
    """Per-task gradients (leaves ``[K, ...]``) after PCGrad's projections (module doc); same
    structure and shapes. Projections use the other tasks' *original* gradients, as Alg. 1."""
    flat = flatten_tasks(grads)
    num_tasks = flat.shape[0]
    orders = jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(
        jax.random.split(key, num_tasks))
    not_self = ~jnp.eye(num_tasks, dtype=bool)
    projected = jax.vmap(project_conflicting, in_axes=(0, None, 0, 0))(flat, flat, orders,
                                                                       not_self)
    return unflatten_tasks(projected, grads)
