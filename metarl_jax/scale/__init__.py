"""Scaling out over devices with JAX's own machinery (``jax.sharding``).

``data_mesh`` builds a one-axis mesh over the local devices; ``ShardedPPO`` trains PPO with the
env batch (or the seeds) sharded along it and everything else replicated
(``metarl_jax.scale.mesh``).
"""

from metarl_jax.scale.mesh import (
    DATA,
    ShardedPPO,
    check_divisible,
    data_mesh,
    ppo_state_sharding,
    seed_sharding,
)

__all__ = ["DATA", "ShardedPPO", "check_divisible", "data_mesh", "ppo_state_sharding",
           "seed_sharding"]
