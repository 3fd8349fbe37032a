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

Seeds: ``init_seeds`` / ``train_chunk_seeds`` take states stacked over a leading seed axis ``S``
(every leaf ``[S, ...]``). When ``D`` divides ``S`` the seed axis is split: seeds are independent,
so each device trains its ``S / D`` seeds with no communication at all. Otherwise (one seed on 4
devices, say) every seed's env batch is split, ``[S, N / D, ...]`` (``P(None, "data")``), as
``train_chunk`` splits one seed's (``seed_split``).

Experiments: ``run_mesh(args.devices)`` is the mesh ``--devices`` asks for (None: the plain
one-device run; every device of every process in a multi-process job) and ``sharded(learner,
mesh)`` the wrapper for a learner (itself when the mesh is None), so an experiment trains
through either with the same calls. The shared training paths (``transfer.phases
.train_ppo_phases``, ``transfer.few_shot.train_meta_phases``, ``transfer.trials
.train_rl2_phase``) take the mesh and do the wrapping (``sharded_all``) themselves.

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

from typing import Any, Dict, Optional, Sequence, Tuple, Union

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


def _get(tree: Any, dotted: str) -> Any:
    for name in dotted.split("."):
        tree = getattr(tree, name)
    return tree


def _replace(tree: Any, dotted: str, value: Any) -> Any:
    """``tree`` (nested flax struct dataclasses) with the field at ``dotted`` set to ``value``."""
    head, _, rest = dotted.partition(".")
    return tree.replace(**{head: _replace(getattr(tree, head), rest, value) if rest else value})


def state_sharding(state: Any, mesh: Mesh, batch_fields: Sequence[str],
                   axis: str = DATA, seeds: bool = False) -> Any:
    """``state`` (a flax struct dataclass) of ``NamedSharding``s: the leaves of its
    ``batch_fields`` (``[N, ...]``; a dotted name such as ``"buffer.data"`` for a nested field)
    split along ``axis``, every other leaf replicated. ``seeds=True``: ``state`` is stacked over
    a leading seed axis (``[S, N, ...]``) and the batch is split along its second axis
    (``P(None, axis)``), the seeds kept whole on every device. Only shapes are read, so
    ``state`` may hold tracers or ``jax.ShapeDtypeStruct``s."""
    batch = NamedSharding(mesh, P(None, axis) if seeds else P(axis))
    replicated = NamedSharding(mesh, P())
    everything = jax.tree.map(lambda _: replicated, state)
    for f in batch_fields:
        everything = _replace(everything, f, jax.tree.map(lambda _: batch, _get(state, f)))
    return everything


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
        self.learner, self.mesh, self.axis = ppo, mesh, axis
        # The learner whose init builds states (placed on the mesh after): the one given, also
        # where a subclass trains a constrained copy of it (ShardedSAC, ShardedMAMLRL), so
        # the one-device init program is reused, not compiled again for the copy.
        self.original = ppo
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
    def ppo(self) -> Any:
        """The wrapped learner (``learner``; the name from when only PPO was wrapped)."""
        return self.learner

    @property
    def env(self) -> Any:
        return self.learner.env

    def make_policy(self, state: Any, config: Any, deterministic: bool = False) -> Any:
        """The wrapped learner's ``make_policy`` (one seed's state, sharded or not)."""
        return self.learner.make_policy(state, config, deterministic=deterministic)

    @property
    def num_devices(self) -> int:
        return int(self.mesh.shape[self.axis])

    def batch_size(self, config: Any) -> int:
        """The size the data axis splits (PPO: ``num_envs``)."""
        return config.num_envs

    def check_config(self, config: Any) -> None:
        """``ValueError`` unless the config's batch (``batch_size``) splits over the devices."""
        check_divisible(self.batch_size(config), self.mesh, self.axis)

    def state_sharding(self, state: PPOState) -> PPOState:
        return state_sharding(state, self.mesh, self.batch_fields, self.axis)

    def shard(self, state: PPOState) -> PPOState:
        """Place an (unsharded, e.g. restored) ``state`` on the mesh."""
        for field in self.batch_fields:
            check_divisible(jax.tree.leaves(_get(state, field))[0].shape[0], self.mesh,
                            self.axis)
        return jax.device_put(state, self.state_sharding(state))

    def init(self, key: jax.Array, config: PPOConfig, *init_args: Any) -> PPOState:
        """``PPO.init`` (the same state, bit for bit) placed on the mesh."""
        self.check_config(config)
        return self.shard(self.original.init(key, config, *init_args))

    def _train_chunk(self, state: PPOState, config: PPOConfig, num_updates: int,
                     log_every: int = 1) -> Tuple[PPOState, Dict[str, jax.Array]]:
        self.traces["train_chunk"] = self.traces.get("train_chunk", 0) + 1
        pin = jax.lax.with_sharding_constraint
        state = pin(state, self.state_sharding(state))
        state, metrics = self.learner._train_chunk(state, config, num_updates,
                                                   log_every=log_every)
        return pin(state, self.state_sharding(state)), pin(metrics, self._replicated(metrics))

    def train_chunk(self, state: PPOState, config: PPOConfig, num_updates: int,
                    log_every: int = 1) -> Tuple[PPOState, Dict[str, jax.Array]]:
        """``PPO.train_chunk`` on the mesh: ``num_updates * log_every`` updates in one compiled
        ``lax.scan``; the returned state keeps the shardings of ``state_sharding``. ``state`` is
        donated (its arrays are deleted): keep only the returned one."""
        self.check_config(config)
        return self._chunk(state, config, num_updates=num_updates, log_every=log_every)

    # ------------------------------------------------------------------ several seeds
    def seed_split(self, num_seeds: int, batch: int) -> str:
        """How ``init_seeds`` / ``train_chunk_seeds`` place ``S = num_seeds`` seeds of ``batch``
        envs each on the ``D`` devices: ``"seeds"`` (each device trains ``S / D`` whole seeds, no
        communication) when ``D`` divides ``S``, else ``"envs"`` (every seed's env batch split
        ``[S, N / D, ...]``, as ``train_chunk`` splits one seed's) when ``D`` divides ``N``.
        ``ValueError`` when neither splits."""
        d = self.num_devices
        if int(num_seeds) % d == 0:
            return "seeds"
        if int(batch) % d == 0:
            return "envs"
        raise ValueError(f"neither {num_seeds} seeds nor a batch of {batch} is divisible by the "
                         f"{d} devices on mesh axis '{self.axis}'")

    def split_of(self, states: Any) -> str:
        """``seed_split`` of ``states`` stacked ``[S, ...]``."""
        num_seeds = jax.tree.leaves(states)[0].shape[0]
        if not self.batch_fields:
            return self.seed_split(num_seeds, 0)
        return self.seed_split(num_seeds,
                               jax.tree.leaves(_get(states, self.batch_fields[0]))[0].shape[1])

    def seeds_sharding(self, states: Any, split: Optional[str] = None) -> Any:
        """The ``NamedSharding``s of ``states`` stacked ``[S, ...]`` (``seed_split``)."""
        if (split or self.split_of(states)) == "seeds":
            return seed_sharding(states, self.mesh, self.axis)
        return state_sharding(states, self.mesh, self.batch_fields, self.axis, seeds=True)

    def init_seeds(self, keys: jax.Array, config: Any, *init_args: Any) -> Any:
        """``init_seeds`` of the wrapped learner for ``keys[S]`` (every leaf ``[S, ...]``) placed
        on the mesh: the seeds split, or each seed's env batch (``seed_split``)."""
        if self.seed_split(keys.shape[0], self.batch_size(config)) == "envs":
            self.check_config(config)
        states = self.original.init_seeds(keys, config, *init_args)
        return jax.device_put(states, self.seeds_sharding(states))

    def _train_chunk_seeds(self, states: Any, config: Any, num_updates: int,
                           log_every: int = 1) -> Tuple[Any, Dict[str, jax.Array]]:
        self.traces["train_chunk_seeds"] = self.traces.get("train_chunk_seeds", 0) + 1
        pin = jax.lax.with_sharding_constraint
        split = self.split_of(states)
        states = pin(states, self.seeds_sharding(states, split))
        states, metrics = self._seeds_learner(split)._train_chunk_seeds(
            states, config, num_updates, log_every=log_every)
        return (pin(states, self.seeds_sharding(states, split)),
                pin(metrics, self._replicated(metrics)))

    def train_chunk_seeds(self, states: Any, config: Any, num_updates: int,
                          log_every: int = 1) -> Tuple[Any, Dict[str, jax.Array]]:
        """``train_chunk_seeds`` of the wrapped learner on the mesh: states ``[S, ...]`` keep
        ``seeds_sharding``; metrics ``[S, num_updates]`` come back replicated (every process
        can read them). ``states`` is donated."""
        if self.split_of(states) == "envs":
            self.check_config(config)
        return self._chunk_seeds(states, config, num_updates=num_updates, log_every=log_every)

    def _seeds_learner(self, split: str) -> Any:
        """The learner whose ``_train_chunk_seeds`` runs for this ``split`` (the wrapped one)."""
        return self.learner

    def _replicated(self, tree: Any) -> Any:
        replicated = NamedSharding(self.mesh, P())
        return jax.tree.map(lambda _: replicated, tree)


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
        self.original = learner  # its init: the state has no tasks to pin

    def batch_size(self, config: Any) -> int:
        return config.meta_batch_size

    def seed_split(self, num_seeds: int, batch: int) -> str:
        raise NotImplementedError("ShardedMAMLRL splits the meta-batch of tasks, not seeds")


def run_mesh(devices: Union[int, str, None] = None) -> Optional[Mesh]:
    """The mesh an experiment trains on for ``--devices`` (``metarl_jax.io.cli``), or None for
    the plain one-device run.

    One process: ``None`` or ``1`` -> None (unsharded, exactly as before ``--devices``
    existed); ``N`` -> the first ``N`` local devices; ``"all"`` -> every local device (None
    when that is one). Several processes (``metarl_jax.scale.distributed``): always the mesh
    over every device of every process (``distributed.global_mesh``) -- a state on one process
    cannot be checkpointed by the job -- so ``devices`` must be None, ``"all"`` or that total.
    """
    if devices is not None and devices != "all":
        devices = int(devices)
        if devices < 1:
            raise ValueError(f"--devices must be >= 1 or 'all', got {devices}")
    if jax.process_count() > 1:
        from metarl_jax.scale.distributed import global_mesh

        if devices not in (None, "all", jax.device_count()):
            raise ValueError(f"a {jax.process_count()}-process run trains on all "
                             f"{jax.device_count()} devices of its processes; got --devices "
                             f"{devices} (leave it out or give 'all')")
        return global_mesh()
    n = jax.local_device_count() if devices == "all" else (devices or 1)
    return None if n == 1 else data_mesh(n)


def mesh_size(mesh: Optional[Mesh]) -> int:
    """How many devices ``mesh`` trains on (1 for None, the plain run): a summary's ``devices``."""
    return 1 if mesh is None else int(mesh.size)


def sharded(learner: Any, mesh: Optional[Mesh]) -> Any:
    """``learner`` wrapped to train on ``mesh`` (``ShardedPPO`` / ``ShardedRL2`` /
    ``ShardedMAMLRL`` / ``ShardedSAC`` by its type), or ``learner`` itself when ``mesh`` is None.
    The wrapper has the learner's ``init`` / ``init_seeds`` / ``train_chunk`` /
    ``train_chunk_seeds`` / ``make_policy``, so an experiment swaps one for the other."""
    if mesh is None:
        return learner
    from metarl_jax.algos.rl2 import RL2
    from metarl_jax.algos.sac import SAC
    from metarl_jax.scale.sharded_sac import ShardedSAC  # it builds on this module

    for kind, wrapper in ((PPO, ShardedPPO), (RL2, ShardedRL2), (MAMLRL, ShardedMAMLRL),
                          (SAC, ShardedSAC)):
        if isinstance(learner, kind):
            return wrapper(learner, mesh)
    raise TypeError(f"no sharded wrapper for {type(learner).__name__}: PPO, RL2, MAMLRL and SAC "
                    "(and their subclasses) train on a mesh")


def sharded_all(learners: Sequence[Any], mesh: Optional[Mesh]) -> list:
    """``sharded(learner, mesh)`` for each of ``learners``, one wrapper per distinct learner
    object: phases that train the same learner share its wrapper and so its compiled programs
    (one compile, as on one device, where they share the learner's)."""
    wrappers: Dict[int, Any] = {}
    for learner in learners:
        if id(learner) not in wrappers:
            wrappers[id(learner)] = sharded(learner, mesh)
    return [wrappers[id(learner)] for learner in learners]
