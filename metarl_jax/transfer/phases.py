"""PPO comparisons run as checkpointed phases: one phase per (learner, training distribution).

The PPO counterpart of ``few_shot.train_meta_phases``, used by the transfer experiments
(``dr_pendulum``, ``robust_dr``, ``uposi``, ``sim2real_cheetah``): every phase trains the same
seeds (``init_seeds(seed_keys, ...)``, ``vmap``-ed over seeds) for ``config.num_updates`` updates
and is a resumable phase of the run (``io.training_loop.train_phase``). ``export_policies`` then
writes every trained seed to ``policies/`` (``.npz`` + JSON, numpy forward pass), and
``metarl_jax.load_run`` reads the checkpoints back with the experiment's ``policies(config)``.
``mesh`` (``metarl_jax.scale.run_mesh(args.devices)``) trains every phase on that mesh, the seeds
or each seed's envs split over its devices (``metarl_jax.scale.ShardedPPO``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
from jax.sharding import Mesh

from metarl_jax.algos.learner import select_seed
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.scale import is_primary, sharded_all, to_host
from metarl_jax.sim2real.export import export_ppo


def train_ppo_phases(run_dir: Path, phases: Mapping[str, Tuple[Any, Any]], config: Any,
                     seed_keys: jax.Array, updates_per_chunk: int,
                     show: Sequence[str] = ("episode_return",),
                     progress_fn: Optional[Callable[[int, Dict[str, Any]], None]] = None,
                     mesh: Optional[Mesh] = None) -> Dict[str, Any]:
    """Train ``phases`` = ``{name: (learner, space)}`` (a ``PPO`` and the ``ParamSpace`` or
    ``ADRSpace`` it trains on) with one ``PPOConfig``, every seed of ``seed_keys[S]`` at once.
    Returns ``{name: final state stacked [S, ...]}``; ``show`` names the progress-line metrics.
    ``progress_fn(step, metrics)`` is called after every compiled chunk (brax.training's
    convention; ``metrics`` holds ``phase`` and the chunk's last ``metrics.jsonl`` line).
    ``mesh``: train on it (``metarl_jax.scale.sharded``; phases sharing a learner share one
    compiled program); the returned states are readable by this process (``to_host``)."""
    learners = sharded_all([learner for learner, _ in phases.values()], mesh)
    states = {}
    for learner, (name, (_, space)) in zip(learners, phases.items()):
        states[name] = train_phase(
            run_dir, name,
            init=lambda: learner.init_seeds(seed_keys, config, space),
            chunk=lambda s, n: learner.train_chunk_seeds(s, config, n),
            num_updates=config.num_updates, updates_per_chunk=updates_per_chunk,
            steps_per_update=config.batch_size * len(seed_keys), show=show,
            progress_fn=progress_fn)
    return to_host(states)  # several processes: each gets its own whole copy


def export_policies(run_dir: Path, states: Mapping[str, Any], config: Any, action_space: Any,
                    obs_layout: Optional[Mapping[str, int]] = None,
                    metadata: Optional[Mapping[str, Any]] = None) -> Dict[str, Path]:
    """Export every seed of every phase's PPO ``states`` (``{phase: [S, ...]}``) to
    ``<run>/policies/<phase>`` (``<phase>_seed<i>`` when there are several seeds) as ``.npz`` +
    JSON (``metarl_jax.sim2real.export``; ``load_policy(path)`` runs it with numpy alone).
    ``metadata`` is stored in each file with the phase and seed index. Returns
    ``{file stem: path without suffix}``; only process 0 writes (``is_primary``)."""
    paths = {}
    for phase, stacked in states.items():
        num_seeds = int(jax.tree.leaves(stacked)[0].shape[0])
        for s in range(num_seeds):
            stem = phase if num_seeds == 1 else f"{phase}_seed{s}"
            path = Path(run_dir) / "policies" / stem
            paths[stem] = path
            if is_primary():
                export_ppo(path, select_seed(stacked, s), config, action_space,
                           obs_layout=obs_layout,
                           metadata={**(metadata or {}), "phase": phase, "seed_index": s})
    return paths


def phase_curves(run_dir: Path, phases: Sequence[str], metric: str = "episode_return"
                 ) -> Dict[str, Tuple[list, list]]:
    """``{phase: (env steps, metric)}`` from ``metrics.jsonl``, for ``plots.plot_curves``."""
    return {phase: ([line["step"] for line in phase_metrics(run_dir, phase)],
                    [line[metric] for line in phase_metrics(run_dir, phase)]) for phase in phases}
