"""Data-parallel SAC over a device mesh: env batch and replay buffer split, gradients all-reduced.

    ssac = ShardedSAC(SAC(env), data_mesh(4))
    state = ssac.init(key, config, space)       # env batch [N / D] and buffer [capacity / D]
    state, metrics = ssac.train_chunk(state, config, num_updates=10)

What is split along the mesh's data axis (``D`` devices):

* the ``N`` envs (``env_state`` with their randomized params, ``obs``): each device steps
  ``N / D`` envs, as ``ShardedPPO`` does;
* the replay buffer's storage (``buffer.data``, every leaf ``[capacity, ...]``): each device
  holds ``capacity / D`` slots, so the buffer -- SAC's largest array by far -- costs ``1 / D``
  of its size per device (``buffer.position`` / ``size`` are replicated scalars);
* every gradient step's sampled batch ``[B, ...]``: each device runs the critics and the actor
  forward and backward on ``B / D`` transitions, and the gradients (sums over the batch) are
  all-reduced across devices before the replicated Adam step.

Parameters, target critics, optimizer moments, observation statistics and the key are
replicated. As in ``ShardedPPO`` the SAC code is unchanged and the program computes the same
function as on one device -- the same uniform draws over the whole buffer, the same inserts --
with the shardings pinned (``with_sharding_constraint``) and GSPMD inserting the collectives
(inserts and samples that cross shards move only the ``N * num_steps`` new and ``B`` sampled
transitions, never the buffer). So it equals the one-device run up to float reduction order
(``tests/test_scale.py``). The batch is pinned where its observations enter the networks
(``SAC.batch_sharding``, applied in ``_normalize``, the first thing every forward pass calls),
so any ``SAC`` subclass is split the same way.

Requirements: ``num_envs``, ``buffer_size`` and ``batch_size`` divisible by ``D`` (``ValueError``).
Several seeds: ``init_seeds`` / ``train_chunk_seeds`` split the seeds when ``D`` divides them
(each device trains whole seeds, nothing pinned inside), else every seed's envs, buffer and
batches as above (``ShardedPPO.seed_split``).
"""

from __future__ import annotations

import copy
from typing import Any

from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from metarl_jax.algos.learner import Learner
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.scale.mesh import DATA, ShardedPPO


def _pinned_copy(sac: SAC, sharding: NamedSharding) -> SAC:
    """A copy of ``sac`` (same class and attributes, its own compiled programs) whose networks
    see batches pinned to ``sharding`` (``SAC.batch_sharding``)."""
    pinned = copy.copy(sac)
    pinned.batch_sharding = sharding
    Learner.__init__(pinned)  # fresh jitted entry points and trace counts, bound to the copy
    return pinned


class ShardedSAC(ShardedPPO):
    """``SAC`` (or a subclass) data-parallel over ``mesh``'s ``axis`` (module doc). Same methods
    as ``ShardedPPO``; ``make_policy`` is the wrapped learner's."""

    batch_fields = ("env_state", "obs", "buffer.data")

    def __init__(self, sac: SAC, mesh: Mesh, axis: str = DATA):
        if not isinstance(sac, SAC):
            raise TypeError(f"ShardedSAC wraps a SAC learner, got {type(sac).__name__}")
        super().__init__(_pinned_copy(sac, NamedSharding(mesh, P(axis))), mesh, axis)
        self.original = sac  # unpinned: whole seeds per device, and the policy

    def make_policy(self, state: Any, config: Any, deterministic: bool = False) -> Any:
        return self.original.make_policy(state, config, deterministic=deterministic)

    def check_config(self, config: SACConfig) -> None:
        """``ValueError`` unless ``num_envs``, ``buffer_size`` and ``batch_size`` split evenly."""
        for name in ("num_envs", "buffer_size", "batch_size"):
            value = getattr(config, name)
            if value % self.num_devices:
                raise ValueError(f"SACConfig.{name} = {value} is not divisible by the "
                                 f"{self.num_devices} devices on mesh axis '{self.axis}'")

    def _seeds_learner(self, split: str) -> Any:
        # Whole seeds per device need no pinning inside (it would move every seed's batch
        # across devices); a split env batch does.
        return self.learner if split == "envs" else self.original


__all__ = ["ShardedSAC"]
