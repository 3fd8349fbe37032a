"""Running observation normalization as pure functions over a small state pytree.

The statistics live in the learner's train state (and so in its checkpoints): ``init`` once,
``update`` with each rollout batch (Chan et al.'s parallel mean/variance merge, exact for any
batch split), ``normalize`` when acting and learning.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class RunningStats:
    """Mean and variance of everything seen so far. ``mean, var: [size]``; ``count: []``."""

    mean: jax.Array
    var: jax.Array
    count: jax.Array


def init(size: int) -> RunningStats:
    return RunningStats(jnp.zeros(size, jnp.float32), jnp.ones(size, jnp.float32),
                        jnp.float32(1e-4))


def update(stats: RunningStats, batch: jax.Array) -> RunningStats:
    """Merge ``batch: [..., size]`` (all leading axes are samples) into ``stats``."""
    batch = batch.reshape(-1, batch.shape[-1]).astype(jnp.float32)
    n = jnp.float32(batch.shape[0])
    batch_mean = batch.mean(0)
    batch_var = batch.var(0)
    delta = batch_mean - stats.mean
    total = stats.count + n
    mean = stats.mean + delta * n / total
    m2 = stats.var * stats.count + batch_var * n + delta**2 * stats.count * n / total
    return RunningStats(mean, m2 / total, total)


def normalize(stats: RunningStats, x: jax.Array, clip: float = 10.0) -> jax.Array:
    """``clip((x - mean) / sqrt(var + 1e-8), -clip, clip)``; ``x: [..., size]``."""
    return jnp.clip((x - stats.mean) / jnp.sqrt(stats.var + 1e-8), -clip, clip)
