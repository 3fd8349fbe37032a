"""Action distributions for policy-gradient learners, as pure functions of the net's outputs.

``DiagGaussian``: ``dist = (mean[..., A], log_std[..., A])``; the env clips out-of-range actions
(the "clipped Gaussian" policy of most PPO implementations), and log-probs are of the unclipped
sample. ``Categorical``: ``dist = logits[..., K]``; actions are int32 ``[...]``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_LOG_2PI = 1.8378770664093453


class DiagGaussian:
    @staticmethod
    def sample(key, dist):
        mean, log_std = dist
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)

    @staticmethod
    def log_prob(dist, action):
        mean, log_std = dist
        z = (action - mean) * jnp.exp(-log_std)
        return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)

    @staticmethod
    def entropy(dist):
        _, log_std = dist
        return jnp.sum(log_std + 0.5 * (1.0 + _LOG_2PI), axis=-1)

    @staticmethod
    def mode(dist):
        return dist[0]


class Categorical:
    @staticmethod
    def sample(key, logits):
        return jax.random.categorical(key, logits).astype(jnp.int32)

    @staticmethod
    def log_prob(logits, action):
        logp = jax.nn.log_softmax(logits)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    @staticmethod
    def entropy(logits):
        logp = jax.nn.log_softmax(logits)
        return -jnp.sum(jnp.exp(logp) * logp, axis=-1)

    @staticmethod
    def mode(logits):
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def set_log_std(params, value) -> object:
    """``params`` with every leaf named ``log_std`` set to ``value`` (a traced scalar is fine).

    Learners build their networks with ``init_log_std = 0`` and call this in ``init``, so the
    initial log-std is a config *leaf*: sweeping it does not recompile.
    """
    def set_leaf(path, leaf):
        last = path[-1]
        name = getattr(last, "key", getattr(last, "name", None))
        return jnp.full_like(leaf, value) if name == "log_std" else leaf

    return jax.tree_util.tree_map_with_path(set_leaf, params)
