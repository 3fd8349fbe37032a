"""Feed-forward actor-critic: separate actor and critic MLPs over the (normalized) observation.

Asymmetric (Pinto et al. 2018, "Asymmetric Actor Critic for Image-Based Robot Learning"):
with ``actor_obs_size=k`` the actor reads only ``obs[..., :k]`` and the critic reads all of it,
so the trailing entries can be privileged simulator state (e.g. the episode's physics from
``core.context_wrappers.ParamObservation``) that the deployed policy never needs.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from metarl_jax.nets.mlp import MLP
from metarl_jax.nets.policy_heads import Categorical, DiagGaussian


class ActorCritic(nn.Module):
    """``obs[..., obs_size] -> (dist, value[...])``.

    ``actor_obs_size``: ``None`` (the actor sees the whole observation) or ``k`` (the actor sees
    ``obs[..., :k]``; the critic always sees all ``obs_size`` entries).

    Continuous (``discrete=False``): ``dist = (mean[..., A], log_std[..., A])`` with a learned,
    state-independent ``log_std`` (initialized to ``init_log_std``). Discrete:
    ``dist = logits[..., A]``.
    """

    action_size: int
    discrete: bool
    hidden_sizes: Sequence[int] = (64, 64)
    init_log_std: float = 0.0
    actor_obs_size: Optional[int] = None

    @nn.compact
    def __call__(self, obs: jax.Array) -> Tuple[object, jax.Array]:
        actor_obs = obs if self.actor_obs_size is None else obs[..., :self.actor_obs_size]
        out = MLP(self.hidden_sizes, self.action_size, output_scale=0.01, name="actor")(actor_obs)
        value = MLP(self.hidden_sizes, 1, output_scale=1.0, name="critic")(obs)[..., 0]
        if self.discrete:
            return out, value
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                             (self.action_size,))
        return (out, jnp.broadcast_to(log_std, out.shape)), value

    @property
    def head(self):
        return Categorical if self.discrete else DiagGaussian
