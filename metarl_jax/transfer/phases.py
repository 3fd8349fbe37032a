"""PPO comparisons run as checkpointed phases: one phase per (learner, training distribution).

The PPO counterpart of ``few_shot.train_meta_phases``, used by the transfer experiments
(``dr_pendulum``, ``robust_dr``, ``uposi``, ``sim2real_cheetah``): every phase trains the same
seeds (``init_seeds(seed_keys, ...)``, ``vmap``-ed over seeds) for ``config.num_updates`` updates
and is a resumable phase of the run (``io.training_loop.train_phase``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Sequence, Tuple

import jax

from metarl_jax.io.training_loop import phase_metrics, train_phase


def train_ppo_phases(run_dir: Path, phases: Mapping[str, Tuple[Any, Any]], config: Any,
                     seed_keys: jax.Array, updates_per_chunk: int,
                     show: Sequence[str] = ("episode_return",)) -> Dict[str, Any]:
    """Train ``phases`` = ``{name: (learner, space)}`` (a ``PPO`` and the ``ParamSpace`` or
    ``ADRSpace`` it trains on) with one ``PPOConfig``, every seed of ``seed_keys[S]`` at once.
    Returns ``{name: final state stacked [S, ...]}``; ``show`` names the progress-line metrics."""
    states = {}
    for name, (learner, space) in phases.items():
        states[name] = train_phase(
            run_dir, name,
            init=lambda: learner.init_seeds(seed_keys, config, space),
            chunk=lambda s, n: learner.train_chunk_seeds(s, config, n),
            num_updates=config.num_updates, updates_per_chunk=updates_per_chunk,
            steps_per_update=config.batch_size * len(seed_keys), show=show)
    return states


def phase_curves(run_dir: Path, phases: Sequence[str], metric: str = "episode_return"
                 ) -> Dict[str, Tuple[list, list]]:
    """``{phase: (env steps, metric)}`` from ``metrics.jsonl``, for ``plots.plot_curves``."""
    return {phase: ([line["step"] for line in phase_metrics(run_dir, phase)],
                    [line[metric] for line in phase_metrics(run_dir, phase)]) for phase in phases}
