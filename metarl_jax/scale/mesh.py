"""Data-parallel PPO over the local devices: the env batch sharded, the rest replicated.

    mesh = data_mesh()                                # all local devices on one axis "data"
    sppo = ShardedPPO(PPO(env), mesh)
    state = sppo.init(key, config, space)             # env states / obs [N, ...] split N / D
    state, metrics = sppo.train_chunk(state, config, num_updates=10)

How: the PPO code is unchanged. The state's batch-major leaves (``env_state``, including the
per-env randomized ``Params``, and ``obs``; leading axis ``N = num_envs``) get
``NamedSharding(mesh, P("data"))``; params, optimizer state, observation statistics, the
randomization distribution and the key get ``P()`` (replicated). The jitted chunk pins these
shardings on its input and output (``with_sharding_constraint``) and GSPMD partitions the
program in between. What that gives (read off the compiled HLO of the 4-device test program):

* the rollout is data-parallel: each device steps its ``N / D`` envs (policy forward, env step,
  auto-reset with fresh randomized params) with no communication;
* reductions over the batch are done by XLA where it chooses (all-reduces or after the gather);
* the ``[T, N]`` rollout is then all-gathered once per update, and the minibatch epochs run
  replicated on every device: PPO shuffles minibatches over the whole ``T * N`` batch, and
  keeping that exact (the same permutation as one device) needs every sample on every device.
  So the SGD phase is not split across devices (no speed-up from it; on forced host devices that
  share cores it is D times the work). A local-shuffle variant (each device shuffles its own
  envs, gradients ``pmean``-ed) would split it but is a different algorithm; not built.

Because ``jit`` semantics do not depend on sharding (and ``jax_threefry_partitionable`` keeps
random draws independent of it), the sharded run computes the same function as the
single-device run -- same env keys, same minibatch permutations -- and differs only by float
reduction order (checked to 1e-5 in ``tests/test_scale.py``; 6e-8 observed). With a one-device
mesh it is the plain run, bit for bit, so the same config runs on 1 or D devices without code
changes.

Requirement: ``num_envs`` divisible by the number of devices on the data axis (``ValueError``).

Seeds: ``init_seeds`` / ``train_chunk_seeds`` instead split a leading seed axis ``S`` (every leaf
``[S, ...]``) over the same mesh axis; seeds are independent, so each device trains its ``S / D``
seeds with no communication at all (``S`` divisible by ``D``).

The same wrapper for the other on-policy learners (``batch_fields``: the state's ``[N, ...]``
parts):

* ``ShardedRL2``: RL²'s acting carry (``state.carry``: trial states, observations, hidden
  states of the ``N`` envs) split like PPO's env batch; the recurrent minibatch epochs run
  replicated, as PPO's do.
* ``ShardedMAMLRL``: MAML-RL's state has no batch (meta-parameters, the task distribution);
  what is split is each update's meta-batch of tasks: ``MAMLRL(env, task_sharding=...)`` pins
  the sampled tasks and their inner-loop rollouts to the data axis, so each device samples,
  adapts and evaluates its ``B / D`` tasks, and the outer step (TRPO's conjugate gradient over
  the tasks' mean, or ProMP's) reduces across devices (``B = meta_batch_size`` divisible by
  ``D``).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from metarl_jax.algos.maml_rl import MAMLRL
from metarl_jax.algos.ppo import PPO, PPOConfig, PPOState

DATA = "data"  # the mesh axis the env batch is split along


def data_mesh(num_devices: Optional[int] = None,
              devices: Optional[Sequence[jax.Device]] = None) -> Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (default: the first ``num_devices`` local
    devices; all of them when ``num_devices`` is None)."""
    if devices is None:
        local = jax.local_devices()
        n = len(local) if num_devices is None else int(num_devices)
        if not 1 <= n <= len(local):
            raise ValueError(f"num_devices must be in [1, {len(local)}] (local devices), got {n}")
        devices = local[:n]
    return Mesh(np.asarray(list(devices)), (DATA,))


def check_divisible(num_envs: int, mesh: Mesh, axis: str = DATA) -> None:
    """Raise ``ValueError`` unless ``num_envs`` splits evenly over the mesh's ``axis``."""
    d = mesh.shape[axis]
    if int(num_envs) % d:
        raise ValueError(f"num_envs = {num_envs} is not divisible by the {d} devices on mesh "
                         f"axis '{axis}'")


def state_sharding(state: Any, mesh: Mesh, batch_fields: Sequence[str],
                   axis: str = DATA) -> Any:
    """``state`` (a flax struct dataclass) of ``NamedSharding``s: the leaves of its
    ``batch_fields`` (``[N, ...]``) split along ``axis``, every other leaf replicated. Only
    shapes are read, so ``state`` may hold tracers or ``jax.ShapeDtypeStruct``s."""
    batch = NamedSharding(mesh, P(axis))
    replicated = NamedSharding(mesh, P())
    everything = jax.tree.map(lambda _: replicated, state)
    return everything.replace(**{f: jax.tree.map(lambda _: batch, getattr(state, f))
                                 for f in batch_fields})


def ppo_state_sharding(state: PPOState, mesh: Mesh, axis: str = DATA) -> PPOState:
    """A ``PPOState`` of ``NamedSharding``s: ``env_state`` and ``obs`` leaves (``[N, ...]``)
    split along ``axis``, every other leaf replicated."""
    return state_sharding(state, mesh, ShardedPPO.batch_fields, axis)


def seed_sharding(states: Any, mesh: Mesh, axis: str = DATA) -> Any:
    """``NamedSharding(mesh, P(axis))`` for every leaf of ``states`` stacked ``[S, ...]``."""
    split = NamedSharding(mesh, P(axis))
    return jax.tree.map(lambda _: split, states)


class ShardedPPO:
    """``PPO`` data-parallel over ``mesh``'s ``axis`` (module doc). Wraps the learner from the
    outside: the same ``_init`` / guarded update, the non-finite guard included.

    ``traces["train_chunk"]`` counts compilations of the sharded chunk (1 per set of sizes).
    Subclasses name the state's batch (``batch_fields``) and the config's batch size
    (``batch_size``) for another learner.
    """

    batch_fields: Tuple[str, ...] = ("env_state", "obs")

    def __init__(self, ppo: PPO, mesh: Mesh, axis: str = DATA):
        self.ppo, self.mesh, self.axis = ppo, mesh, axis  # ``ppo``: the wrapped learner
        self.traces: Dict[str, int] = {}
        # The state is donated: at scale it is mostly the env batch, and without donation the
        # chunk holds the old and the new copy at once. Callers pass a state they do not keep
        # (``state = sppo.train_chunk(state, ...)``); ``train_phase``'s async checkpoint save
        # of a state that the next chunk donates is safe (metarl_jax.io.checkpoint).
        self._chunk = jax.jit(self._train_chunk, static_argnames=("num_updates", "log_every"),
                              donate_argnums=0)
        self._chunk_seeds = jax.jit(self._train_chunk_seeds,
                                    static_argnames=("num_updates", "log_every"),
                                    donate_argnums=0)

    @property
    def num_devices(self) -> int:
        return int(self.mesh.shape[self.axis])

    def batch_size(self, config: Any) -> int:
        """The size the data axis splits (PPO: ``num_envs``)."""
        return config.num_envs

    def state_sharding(self, state: PPOState) -> PPOState:
        return state_sharding(state, self.mesh, self.batch_fields, self.axis)

    def shard(self, state: PPOState) -> PPOState:
        """Place an (unsharded, e.g. restored) ``state`` on the mesh."""
        for field in self.batch_fields:
            check_divisible(jax.tree.leaves(getattr(state, field))[0].shape[0], self.mesh,
                            self.axis)
        return jax.device_put(state, self.state_sharding(state))

    def init(self, key: jax.Array, config: PPOConfig, *init_args: Any) -> PPOState:
        """``PPO.init`` (the same state, bit for bit) placed on the mesh."""
        check_divisible(self.batch_size(config), self.mesh, self.axis)
        return self.shard(self.ppo.init(key, config, *init_args))

    def _train_chunk(self, state: PPOState, config: PPOConfig, num_updates: int,
                     log_every: int = 1) -> Tuple[PPOState, Dict[str, jax.Array]]:
        self.traces["train_chunk"] = self.traces.get("train_chunk", 0) + 1
        pin = jax.lax.with_sharding_constraint
        state = pin(state, self.state_sharding(state))
        state, metrics = self.ppo._train_chunk(state, config, num_updates, log_every=log_every)
        return pin(state, self.state_sharding(state)), metrics

    def train_chunk(self, state: PPOState, config: PPOConfig, num_updates: int,
                    log_every: int = 1) -> Tuple[PPOState, Dict[str, jax.Array]]:
        """``PPO.train_chunk`` on the mesh: ``num_updates * log_every`` updates in one compiled
        ``lax.scan``; the returned state keeps the shardings of ``state_sharding``. ``state`` is
        donated (its arrays are deleted): keep only the returned one."""
        check_divisible(self.batch_size(config), self.mesh, self.axis)
        return self._chunk(state, config, num_updates=num_updates, log_every=log_every)

    # ------------------------------------------------------------------ seeds as the split axis
    def _check_seeds(self, num_seeds: int) -> None:
        d = self.num_devices
        if int(num_seeds) % d:
            raise ValueError(f"{num_seeds} seeds are not divisible by the {d} devices on mesh "
                             f"axis '{self.axis}'")

    def init_seeds(self, keys: jax.Array, config: PPOConfig, *init_args: Any) -> PPOState:
        """``PPO.init_seeds`` for ``keys[S]``, every leaf ``[S, ...]`` split over the mesh."""
        self._check_seeds(keys.shape[0])
        states = self.ppo.init_seeds(keys, config, *init_args)
        return jax.device_put(states, seed_sharding(states, self.mesh, self.axis))

    def _train_chunk_seeds(self, states: PPOState, config: PPOConfig, num_updates: int,
                           log_every: int = 1) -> Tuple[PPOState, Dict[str, jax.Array]]:
        self.traces["train_chunk_seeds"] = self.traces.get("train_chunk_seeds", 0) + 1
        pin = jax.lax.with_sharding_constraint
        states = pin(states, seed_sharding(states, self.mesh, self.axis))
        states, metrics = self.ppo._train_chunk_seeds(states, config, num_updates,
                                                      log_every=log_every)
        return (pin(states, seed_sharding(states, self.mesh, self.axis)),
                pin(metrics, seed_sharding(metrics, self.mesh, self.axis)))

    def train_chunk_seeds(self, states: PPOState, config: PPOConfig, num_updates: int,
                          log_every: int = 1) -> Tuple[PPOState, Dict[str, jax.Array]]:
        """``PPO.train_chunk_seeds`` with the seed axis split over the mesh: states ``[S, ...]``,
        metrics ``[S, num_updates]``, both split along ``S``. ``states`` is donated."""
        self._check_seeds(states.update_step.shape[0])
        return self._chunk_seeds(states, config, num_updates=num_updates, log_every=log_every)


class ShardedRL2(ShardedPPO):
    """``RL2`` data-parallel over ``mesh``'s ``axis``: the ``N`` envs' acting carry split, the
    rest replicated (module doc). Same methods as ``ShardedPPO``."""

    batch_fields = ("carry",)


class ShardedMAMLRL(ShardedPPO):
    """``MAMLRL`` with each update's meta-batch of tasks split over ``mesh``'s ``axis`` (module
    doc); the state (meta-parameters, task distribution, key) is replicated. Builds its own
    ``MAMLRL(learner.env, task_sharding=...)``, so the wrapped learner's compiled programs stay
    unconstrained. ``init_seeds`` / ``train_chunk_seeds`` are not supported (tasks, not seeds,
    are the split axis)."""

    batch_fields = ()

    def __init__(self, learner: MAMLRL, mesh: Mesh, axis: str = DATA):
        super().__init__(MAMLRL(learner.env, task_sharding=NamedSharding(mesh, P(axis))), mesh,
                         axis)

    def batch_size(self, config: Any) -> int:
        return config.meta_batch_size

    def _check_seeds(self, num_seeds: int) -> None:
        raise NotImplementedError("ShardedMAMLRL splits the meta-batch of tasks, not seeds")
