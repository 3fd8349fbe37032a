"""Scaling out over devices with JAX's own machinery (``jax.sharding``).

``data_mesh`` builds a one-axis mesh over the local devices; ``ShardedPPO`` trains PPO with the
env batch (or the seeds) sharded along it and everything else replicated, ``ShardedRL2`` RL² with
its envs sharded, ``ShardedMAMLRL`` MAML-RL with each update's meta-batch of tasks sharded
(``metarl_jax.scale.mesh``), ``ShardedSAC`` SAC with its envs, replay buffer and sampled batches
sharded (``metarl_jax.scale.sharded_sac``); ``run_mesh`` / ``sharded`` are what an experiment's
``--devices`` uses. ``metarl_jax.scale.distributed`` joins several processes (hosts) into
one job (``initialize``), with a mesh over all of them (``global_mesh``), the rows each process
owns (``process_slice``) and the one process that writes files (``is_primary``).
"""

from metarl_jax.scale.distributed import (
    DistributedSpec,
    global_mesh,
    initialize,
    is_primary,
    process_slice,
    sync,
    to_host,
)
from metarl_jax.scale.mesh import (
    DATA,
    ShardedMAMLRL,
    ShardedPPO,
    ShardedRL2,
    check_divisible,
    data_mesh,
    mesh_size,
    ppo_state_sharding,
    run_mesh,
    seed_sharding,
    sharded,
    sharded_all,
)
from metarl_jax.scale.sharded_sac import ShardedSAC

__all__ = ["DATA", "DistributedSpec", "ShardedMAMLRL", "ShardedPPO", "ShardedRL2", "ShardedSAC",
           "check_divisible", "data_mesh", "global_mesh", "initialize", "is_primary",
           "mesh_size", "ppo_state_sharding", "process_slice", "run_mesh", "seed_sharding",
           "sharded", "sharded_all", "sync", "to_host"]
