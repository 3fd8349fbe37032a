"""Within-trial adaptation reports for RL^2: the return of each episode index of a trial.

Used by ``experiments.rl2_mdp`` and ``experiments.rl2_nav``: train the seeds in one phase
(``train_rl2_phase``), evaluate every seed on held-out tasks (``episode_returns_over_seeds``),
then report, per episode index, the mean return with its standard error beside per-task
references (``per_episode_results``), and plot/tabulate it (``report_per_episode`` does all of
the report).
Standard errors are over held-out tasks (``metarl_jax.stats.mean_stderr``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from metarl_jax import stats
from metarl_jax.algos.learner import select_seed
from metarl_jax.io import plots
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.scale import sharded, to_host

PHASE = "rl2"


def train_rl2_phase(run_dir: Path, rl2, config: Any, space: Any, seed_keys: jax.Array,
                    updates_per_chunk: int, mesh: Optional[Mesh] = None) -> Any:
    """Train ``rl2`` for every key of ``seed_keys[S]`` (one vmapped program) as the phase
    ``"rl2"`` of the run (checkpointed, resumable); returns the seed-stacked states. ``mesh``
    (``metarl_jax.scale.run_mesh(args.devices)``): the seeds, or each seed's envs, split over
    its devices (``ShardedRL2``); the returned states are readable by this process."""
    num_seeds = seed_keys.shape[0]
    rl2 = sharded(rl2, mesh)
    return to_host(train_phase(
        run_dir, PHASE,
        init=lambda: rl2.init_seeds(seed_keys, config, space),
        chunk=lambda s, n: rl2.train_chunk_seeds(s, config, n),
        num_updates=config.num_updates, updates_per_chunk=updates_per_chunk,
        steps_per_update=config.batch_size * num_seeds, show=("trial_return",)))


def episode_returns_per_seed(rl2, states: Any, config: Any, tasks: Any, key: jax.Array,
                             **evaluate_kwargs) -> np.ndarray:
    """``[S, M, E]``: the return of every episode of a trial on each of ``tasks[M]`` for each of
    the ``S`` seeds of ``states`` (seed ``s`` plays with ``fold_in(key, s)``; ``rl2.evaluate``)."""
    num_seeds = jax.tree.leaves(states)[0].shape[0]
    return np.stack([np.asarray(rl2.evaluate(select_seed(states.params, s), config, tasks,
                                             jax.random.fold_in(key, s), **evaluate_kwargs)
                                ["episode_returns"]) for s in range(num_seeds)])


def episode_returns_over_seeds(rl2, states: Any, config: Any, tasks: Any, key: jax.Array,
                               **evaluate_kwargs) -> np.ndarray:
    """``[M, E]``: ``episode_returns_per_seed`` averaged over the seeds."""
    return episode_returns_per_seed(rl2, states, config, tasks, key, **evaluate_kwargs).mean(0)


def per_episode_results(episode_returns: np.ndarray, references: Mapping[str, float],
                        later: int, gain_name: str) -> Dict[str, Any]:
    """Summary of ``episode_returns[M, E]`` beside per-episode ``references`` (a constant return
    per episode, e.g. an oracle's).

    Returns ``per_episode`` (``rl2`` mean and ``rl2_stderr`` per episode index, each reference
    repeated ``E`` times), ``trial_return`` (the sum over a trial: ``rl2``, ``rl2_stderr``, each
    reference times ``E``) and ``adaptation`` (``{gain_name: mean, "stderr": se}`` of episode
    ``later`` minus episode 0, paired over tasks)."""
    episodes = episode_returns.shape[1]
    per_episode = {
        "rl2": episode_returns.mean(0).tolist(),
        "rl2_stderr": [stats.mean_stderr(episode_returns[:, i])[1] for i in range(episodes)],
        **{name: [float(value)] * episodes for name, value in references.items()},
    }
    trial = stats.mean_stderr(episode_returns.sum(1))
    gain = stats.mean_stderr(episode_returns[:, later] - episode_returns[:, 0])
    return {
        "per_episode": per_episode,
        "trial_return": {"rl2": trial[0], "rl2_stderr": trial[1],
                         **{name: float(value) * episodes for name, value in references.items()}},
        "adaptation": {gain_name: gain[0], "stderr": gain[1]},
    }


def plot_per_episode(path: Path, per_episode: Mapping[str, list], labels: Mapping[str, str],
                     ylabel: str, title: str) -> None:
    """``per_episode.png``: RL^2's mean return per episode index (with standard-error bars) and
    the references ``labels`` = ``{key in per_episode: legend label}``."""
    episodes = list(range(1, len(per_episode["rl2"]) + 1))
    curves = {"RL^2": (episodes, per_episode["rl2"], per_episode["rl2_stderr"])}
    curves.update({label: (episodes, per_episode[name]) for name, label in labels.items()})
    plots.plot_curves(path, curves, xlabel="episode within the trial", ylabel=ylabel, title=title)


def per_episode_rows(per_episode: Mapping[str, list], references) -> list:
    """Rows ``{episode, rl2: (mean, stderr), <reference>: value}`` for ``format_table``."""
    return [{"episode": i + 1, "rl2": (per_episode["rl2"][i], per_episode["rl2_stderr"][i]),
             **{name: per_episode[name][i] for name in references}}
            for i in range(len(per_episode["rl2"]))]


def report_per_episode(run_dir: Path, episode_returns: np.ndarray,
                       references: Mapping[str, float], labels: Mapping[str, str], later: int,
                       gain_name: str, ylabel: str, title: str) -> tuple:
    """The whole per-episode report of an RL^2 run: ``per_episode_results`` plus the final
    training return, ``per_episode.png`` and ``curves.png`` (training trial return) in
    ``run_dir``. Returns ``(results, table)``; ``labels``: legend label per reference."""
    lines = phase_metrics(run_dir, PHASE)
    results = dict(per_episode_results(episode_returns, references, later, gain_name),
                   final_train_return=lines[-1]["trial_return"])
    plot_per_episode(run_dir / "per_episode.png", results["per_episode"], labels, ylabel=ylabel,
                     title=title)
    plots.plot_curves(run_dir / "curves.png",
                      {"RL^2": ([line["step"] for line in lines],
                                [line["trial_return"] for line in lines])},
                      xlabel="env steps (all seeds)", ylabel="trial return",
                      title=title.split(" (")[0].replace("RL^2 on", "RL^2 training on"))
    return results, format_table(per_episode_rows(results["per_episode"], references))
