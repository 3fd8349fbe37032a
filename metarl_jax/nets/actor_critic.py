"""Feed-forward actor-critic: separate actor and critic MLPs over the (normalized) observation."""

from __future__ import annotations

from typing import Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl_jax.nets.mlp import MLP
from metarl_jax.nets.policy_heads import Categorical, DiagGaussian


class ActorCritic(nn.Module):
    """``obs[..., obs_size] -> (dist, value[...])``.

    Continuous (``discrete=False``): ``dist = (mean[..., A], log_std[..., A])`` with a learned,
    state-independent ``log_std`` (initialized to ``init_log_std``). Discrete:
    ``dist = logits[..., A]``.
    """

    action_size: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    init_log_std: float = 0.0

    @nn.compact
    def __call__(self, obs: jax.Array) -> Tuple[object, jax.Array]:
        out = MLP(self.hidden_sizes, self.action_size, output_scale=0.01, name="actor")(obs)
        value = MLP(self.hidden_sizes, 1, output_scale=1.0, name="critic")(obs)[..., 0]
        if self.discrete:
            return out, value
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                             (self.action_size,))
        return (out, jnp.broadcast_to(log_std, out.shape)), value

    @property
    def head(self):
        return Categorical if self.discrete else DiagGaussian
