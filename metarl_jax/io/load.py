"""From a run folder back to policies: ``metarl_jax.load_run(run_dir)``.

    run = metarl_jax.load_run("runs/dr_pendulum/20250101-120000")
    run.policies                    # {"nominal": TrainedPolicy, "dr": TrainedPolicy}
    action = run["dr"].act(obs)     # numpy in, numpy out: the deterministic policy of seed 0
    run["dr"].act(obs, seed=1)      # another seed of the run
    run["dr"].state                 # the full train state, stacked over seeds [S, ...]
    run["dr"].policy(seed=0)        # the pure JAX act(key, obs) (jit it, vmap it, export it)

The experiment named in ``config.json`` rebuilds its learners from the saved config with a
module-level ``policies(config) -> {phase: Phase(learner, learner_config, init_args)}`` (the
same function its ``main`` trains with, so the two cannot drift apart; a plain 3-tuple works
too); each phase's newest readable checkpoint (``checkpoints/<phase>/<update>``) is restored into
``learner.init_seeds(keys, learner_config, *init_args)``'s shapes (or ``Phase.init_seeds(keys)``'s
where training changed the state's structure, e.g. a finetuned phase). A run that is still
going, or was interrupted, loads from its last checkpoint (``TrainedPolicy.update`` <
``num_updates``); nothing in the folder is written or deleted, so a live run is safe to read.

Experiments with ``policies``: ``dr_pendulum``, ``robust_dr``, ``uposi`` (the PPO phases ``up`` and
``dr``; ``up`` observes the true normalized params after the state), ``sim2real_cheetah``,
``maxent_multigoal`` (SAC, one phase per method), ``finetune_transfer`` (the source phases and
each method's last finetuning segment), ``maml_nav2d`` / ``maml_cheetah`` (the pre-adaptation
meta-policy) and ``rl2_bandits`` / ``rl2_mdp`` / ``rl2_nav`` (recurrent: use
``run[phase].recurrent(seed)``, whose ``act(obs)`` / ``observe(reward, done)`` carry the GRU's
memory and the previous action, reward and done flag across a trial).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import numpy as np

from metarl_jax.io.checkpoint import Checkpointer, CheckpointError
from metarl_jax.io.config import config_from_dict
from metarl_jax.io.run_dir import CHECKPOINT_DIR, CONFIG_FILE, SUMMARY_FILE, read_json


class RunLoadError(Exception):
    """A run folder that ``load_run`` cannot read back (the message says what is missing)."""


class Phase(NamedTuple):
    """How to rebuild one trained phase (an entry of an experiment's ``policies(config)``).

    Attributes:
        learner: the ``Learner`` that trained it.
        config: its learner config.
        init_args: ``learner.init_seeds(keys, config, *init_args)`` gives the state's structure.
        num_updates: checkpoint steps in the whole phase (default ``config.num_updates``; set it
            when a phase checkpoints per logged block or per finetuning segment).
        init_seeds: ``init_seeds(keys[S]) -> state`` overriding the structure above (a phase
            whose state was reshaped before training, e.g. retargeted for finetuning).
        stacked: False for a phase trained as one state (``learner.init(key, ...)``, e.g.
            MAML-RL): it is restored into ``init``'s shapes and given a seed axis of 1.
    """

    learner: Any
    config: Any
    init_args: Tuple = ()
    num_updates: Optional[int] = None
    init_seeds: Optional[Callable[[jax.Array], Any]] = None
    stacked: bool = True

    def like(self, keys: jax.Array) -> Any:
        """The state's shapes and dtypes for seeds ``keys[S]`` (nothing is computed)."""
        if self.init_seeds is not None:
            return jax.eval_shape(self.init_seeds, keys)
        if not self.stacked:
            return jax.eval_shape(lambda: self.learner.init(keys[0], self.config,
                                                            *self.init_args))
        return jax.eval_shape(lambda: self.learner.init_seeds(keys, self.config,
                                                              *self.init_args))


@dataclasses.dataclass
class TrainedPolicy:
    """One trained phase of a run: every seed's state and its deterministic policy.

    Attributes:
        name: the phase (``"dr"``).
        learner: the learner that trained it (``PPO``); ``learner.env`` is the env it acts in.
        config: the learner's config (``PPOConfig``).
        state: the train state restored from the checkpoint, stacked over seeds ``[S, ...]``.
        update: the checkpoint's update; ``complete`` when it is the phase's last
            (``num_updates``).
    """

    name: str
    learner: Any
    config: Any
    state: Any
    update: int
    num_updates: Optional[int] = None
    _act: Optional[Callable] = dataclasses.field(default=None, repr=False)

    @property
    def num_seeds(self) -> int:
        return int(jax.tree.leaves(self.state)[0].shape[0])

    @property
    def complete(self) -> bool:
        total = self.num_updates or getattr(self.config, "num_updates", self.update)
        return self.update >= total

    def seed_state(self, seed: int = 0) -> Any:
        """The train state of seed ``seed`` (``select_seed``)."""
        if not 0 <= seed < self.num_seeds:
            raise IndexError(f"phase {self.name!r} has seeds 0..{self.num_seeds - 1}, not {seed}")
        return jax.tree.map(lambda x: x[seed], self.state)

    def policy(self, seed: int = 0, deterministic: bool = True) -> Callable:
        """The learner's pure ``act(key, obs) -> action`` for seed ``seed``."""
        return self.learner.make_policy(self.seed_state(seed), self.config, deterministic)

    def act(self, obs, seed: int = 0) -> np.ndarray:
        """Deterministic action(s) for ``obs [obs_size]`` or ``[batch, obs_size]`` (numpy)."""
        if hasattr(self.learner, "make_recurrent_policy"):
            raise TypeError(f"phase {self.name!r} is a recurrent policy (it remembers the "
                            "trial so far): use .recurrent(seed) and its act/observe")
        if self._act is None:  # one compiled program for every seed (the state is an argument)
            self._act = jax.jit(lambda state, key, o: self.learner.make_policy(
                state, self.config, deterministic=True)(key, o))
        key = jax.random.PRNGKey(0)  # unused by a deterministic policy
        return np.asarray(self._act(self.seed_state(seed), key, np.asarray(obs, np.float32)))

    __call__ = act

    def recurrent(self, seed: int = 0, deterministic: bool = True):
        """A stateful numpy actor for a recurrent learner (RL²): ``reset()``, ``act(obs)``,
        ``observe(reward, done)``; see ``metarl_jax.algos.rl2.RecurrentActor``."""
        make = getattr(self.learner, "make_recurrent_policy", None)
        if make is None:
            raise TypeError(f"phase {self.name!r} was trained by {type(self.learner).__name__}, "
                            "which is not recurrent: use act(obs)")
        from metarl_jax.algos.rl2 import RecurrentActor

        return RecurrentActor(make(self.seed_state(seed), self.config, deterministic))


@dataclasses.dataclass
class Run:
    """A run folder read back. ``run[phase]`` is ``run.policies[phase]``.

    Attributes:
        run_dir, name (the experiment), preset, seed, config (the experiment's config),
        policies ``{phase: TrainedPolicy}`` (phases with a checkpoint), missing (phases without
        one yet), finished (``summary.json`` exists), summary (its content, or None).
    """

    run_dir: Path
    name: str
    preset: Optional[str]
    seed: int
    config: Any
    policies: Dict[str, TrainedPolicy]
    missing: tuple
    summary: Optional[dict]

    @property
    def finished(self) -> bool:
        return self.summary is not None

    @property
    def states(self) -> Dict[str, Any]:
        return {name: p.state for name, p in self.policies.items()}

    def __getitem__(self, phase: str) -> TrainedPolicy:
        try:
            return self.policies[phase]
        except KeyError:
            raise KeyError(f"no trained phase {phase!r} in {self.run_dir}; it has "
                           f"{sorted(self.policies)}") from None


def load_run(run_dir: str | Path) -> Run:
    """Read a finished (or checkpointed) run folder: every trained phase's states and policy.

    Raises:
        RunLoadError: not a run folder, an experiment without ``policies(config)``, a config
            that no longer parses, or no phase with a readable checkpoint.
    """
    run_dir = Path(run_dir)
    try:
        saved = read_json(run_dir / CONFIG_FILE)
        name = saved["name"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunLoadError(f"{run_dir} is not a readable run folder ({CONFIG_FILE}: "
                           f"{type(e).__name__}: {e})") from None
    try:
        module = importlib.import_module(f"experiments.{name}")
    except ImportError as e:
        raise RunLoadError(f"{run_dir} is a {name!r} run, but experiments.{name} cannot be "
                           f"imported ({e})") from None
    if not hasattr(module, "policies"):
        raise RunLoadError(f"experiments.{name} does not say how to rebuild its policies (no "
                           "policies(config) function), so load_run cannot read its runs")
    try:
        config = config_from_dict(module.Config, saved["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise RunLoadError(f"{run_dir / CONFIG_FILE}: the config does not parse with today's "
                           f"experiments.{name}.Config ({e})") from None
    seed = int(saved.get("seed", 0))
    num_seeds = int(getattr(config, "num_seeds", 1))
    keys = jax.random.split(jax.random.PRNGKey(seed), num_seeds)
    policies, missing = {}, []
    for phase, entry in module.policies(config).items():
        entry = Phase(*entry)
        restored = _restore_newest(run_dir / CHECKPOINT_DIR / phase, entry.like(keys))
        if restored is None:
            missing.append(phase)
            continue
        state, update = restored
        if not entry.stacked:
            state = jax.tree.map(lambda x: x[None], state)
        policies[phase] = TrainedPolicy(phase, entry.learner, entry.config, state, update,
                                        entry.num_updates)
    if not policies:
        raise RunLoadError(f"{run_dir} has no readable checkpoint of any phase "
                           f"({', '.join(missing)}) yet")
    summary_path = run_dir / SUMMARY_FILE
    summary = read_json(summary_path) if summary_path.is_file() else None
    return Run(run_dir, name, saved.get("preset"), seed, config, policies, tuple(missing),
               summary)


def _restore_newest(directory: Path, like: Any):
    """``(state, step)`` of the newest checkpoint in ``directory`` that reads back (an older
    kept one when the newest is damaged, with a warning), or None when there is none."""
    if not directory.is_dir():
        return None
    absl = logging.getLogger("absl")  # orbax warns that a read-only manager will not save
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        checkpointer = Checkpointer(directory, read_only=True)
    finally:
        absl.setLevel(level)
    try:
        steps = checkpointer.all_steps()
        for step in reversed(steps):
            try:
                state, _ = checkpointer.restore(step, like=like)
            except CheckpointError as e:
                print(f"load_run: {e}; trying an older checkpoint", file=sys.stderr)
                continue
            return state, step
        if steps:
            raise RunLoadError(f"no checkpoint in {directory} could be read "
                               f"(steps {steps})")
        return None
    finally:
        checkpointer.close()
