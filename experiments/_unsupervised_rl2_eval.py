"""Meta-test helpers of ``experiments.unsupervised_rl2``: the from-scratch learner (b) with the
trial's budget in episodes, per-episode summaries with verdicts, the table and the plots.

Shapes: ``S`` seeds, ``M`` tasks (held-out goals or acquired tasks, each repeated
``eval_trials`` times), ``E`` = ``episodes_per_trial``.
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import numpy as np

from experiments.unsupervised_meta import compare
from metarl_jax import stats
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.maml_rl import MAMLRL
from metarl_jax.io import plots
from metarl_jax.io.training_loop import phase_metrics

# (a) RL^2 on acquired tasks, (b) RL from scratch, (c) RL^2 on true goals, RL^2 untrained.
METHODS = ("acquired", "scratch", "true_goals", "untrained")
COMPARED = (("acquired", "scratch"), ("acquired", "true_goals"), ("true_goals", "scratch"),
            ("acquired", "untrained"))


def scratch_episodes(config: Any) -> int:
    """(b)'s budget in episodes: ``1 + inner steps`` updates-and-rollouts of
    ``scratch.episodes_per_task`` (= 1) episode each, exactly ``episodes_per_trial``."""
    return config.episodes_per_trial * config.scratch.episodes_per_task


def scratch_returns(config: Any, learner: MAMLRL, spaces: Any, tasks: Any, lr: float,
                    key: jax.Array, seed: int) -> np.ndarray:
    """(b): ``returns[S, M, E]``: on each of ``tasks[S, M]`` a fresh policy (seed ``s``'s
    initial MLP, the same for every task and every ``lr``) plays one episode, takes one ``pg``
    step with learning rate ``lr`` on it, plays the next, ... -- ``E`` episodes in all
    (``MAMLRL.sample_chain`` with ``E - 1`` steps of one episode each). ``spaces``: the
    seed-stacked task spaces (only for ``MAMLRL.init``)."""
    cfg = config.scratch.replace(inner_lr=lr)
    num_seeds = config.skills.num_seeds
    init_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 5), num_seeds)
    metas = [learner.init(k, cfg, select_seed(spaces, s)).meta for s, k in enumerate(init_keys)]
    metas = jax.tree.map(lambda *x: np.stack(x), *metas)
    steps = scratch_episodes(config) // cfg.episodes_per_task - 1
    program = _scratch_program(learner, steps)
    return np.asarray(program(metas, cfg, tasks, jax.random.split(key, num_seeds)))


def tune_scratch_lr(config: Any, learner: MAMLRL, spaces: Any, tasks: Any, key: jax.Array,
                    seed: int) -> dict:
    """(b)'s learning rate: the candidate of ``config.scratch_lrs`` with the best mean episode
    return over ``tasks[S, M]`` (training tasks, never the held-out ones), seeds pooled; a
    candidate whose updates diverge (any non-finite return) is never picked. Returns
    ``{candidates, mean_episode_return, nonfinite_fraction, picked}``."""
    means, nonfinite = [], []
    for lr in config.scratch_lrs:
        r = scratch_returns(config, learner, spaces, tasks, lr, key, seed)
        finite = np.isfinite(r)
        nonfinite.append(float(1 - finite.mean()))
        means.append(float(r.mean()) if finite.all() else None)
    scores = [-np.inf if m is None else m for m in means]
    if not np.isfinite(max(scores)):
        raise FloatingPointError(f"every scratch learning rate diverged: {config.scratch_lrs}")
    return dict(candidates=list(config.scratch_lrs), mean_episode_return=means,
                nonfinite_fraction=nonfinite, picked=config.scratch_lrs[int(np.argmax(scores))])


_PROGRAMS: dict = {}


def _scratch_program(learner: MAMLRL, steps: int):
    """``(metas[S], cfg, tasks[S, M], keys[S]) -> returns[S, M, steps + 1]``, jitted once per
    learner and step count (the lr is a traced leaf of ``cfg``, so every candidate reuses it)."""
    cache_key = (id(learner), steps)
    if cache_key not in _PROGRAMS:
        def one_seed(meta, cfg, seed_tasks, seed_key):
            def one_task(task, task_key):
                chain = learner.sample_chain(meta, cfg, task, task_key, steps)
                return chain.episode_return.reshape(-1)  # [E]: steps + 1 one-episode rollouts

            num_tasks = jax.tree.leaves(seed_tasks)[0].shape[0]
            return jax.vmap(one_task)(seed_tasks, jax.random.split(seed_key, num_tasks))

        _PROGRAMS.clear()
        _PROGRAMS[cache_key] = jax.jit(jax.vmap(one_seed, in_axes=(0, None, 0, 0)))
    return _PROGRAMS[cache_key]


def summarize_family(returns: Mapping[str, np.ndarray]) -> dict:
    """One family's ``{method: returns[S, M, E]}`` -> ``per_episode`` (seed_summary of the mean
    over tasks at every episode index), ``trial_mean`` (over the E episodes: the primary
    measure), ``gain`` (last minus first episode), ``comparisons`` and
    ``paired_acquired_minus_scratch`` (per-seed differences, at every index and of the trial
    mean)."""
    per_seed = {m: r.mean(axis=1) for m, r in returns.items()}  # [S, E]
    episodes = next(iter(per_seed.values())).shape[1]
    per_episode = {m: [stats.seed_summary(v[:, i]) for i in range(episodes)]
                   for m, v in per_seed.items()}
    trial_mean = {m: stats.seed_summary(v.mean(-1)) for m, v in per_seed.items()}
    gain = {m: stats.seed_summary(v[:, -1] - v[:, 0]) for m, v in per_seed.items()}
    comparisons = {}
    for a, b in COMPARED:
        rows = {f"episode_{i}": compare(per_episode[a][i], per_episode[b][i])
                for i in range(episodes)}
        rows.update(trial_mean=compare(trial_mean[a], trial_mean[b]),
                    gain=compare(gain[a], gain[b]))
        comparisons[f"{a}_vs_{b}"] = rows
    diff = per_seed["acquired"] - per_seed["scratch"]
    paired = dict(trial_mean=stats.seed_summary(diff.mean(-1)),
                  per_episode=[stats.seed_summary(diff[:, i]) for i in range(episodes)])
    return dict(per_episode=per_episode, trial_mean=trial_mean, gain=gain,
                comparisons=comparisons, paired_acquired_minus_scratch=paired)


def _fmt(row: dict) -> str:
    return f"{row['mean']:.1f} +- {row['ci95']:.1f}"


def table_rows(results: dict) -> list:
    """Rows ``{tasks, method, episode 1..E, trial mean}`` for ``format_table``: every method on
    every family, then the paired (a) - (b)."""
    rows = []
    for name, part in _families(results):
        for m in METHODS:
            by_episode = part["per_episode"][m]
            rows.append(dict(tasks=name, method=m,
                             **{f"ep {i + 1}": _fmt(r) for i, r in enumerate(by_episode)},
                             **{"trial mean": _fmt(part["trial_mean"][m])}))
        paired = part["paired_acquired_minus_scratch"]
        rows.append(dict(tasks=name, method="(a)-(b) paired",
                         **{f"ep {i + 1}": _fmt(r) for i, r in enumerate(paired["per_episode"])},
                         **{"trial mean": _fmt(paired["trial_mean"])}))
    return rows


def _families(results: dict):
    out = [("near", results)]
    out += [(k.replace("_goals", ""), results[k]) for k in ("far_goals",) if k in results]
    out += [("acquired (train)", results[k]) for k in ("training_tasks",) if k in results]
    return out


def plot_results(run_dir, results: dict, phases) -> None:
    """``per_episode.png`` (mean return per episode index, every method, near family; ± the
    95% CI over seeds) and ``curves.png`` (each RL^2 phase's training trial return)."""
    part = results["per_episode"]
    x = list(range(1, len(part["acquired"]) + 1))
    plots.plot_curves(run_dir / "per_episode.png",
                      {m: (x, [r["mean"] for r in part[m]], [r["ci95"] for r in part[m]])
                       for m in METHODS},
                      xlabel="episode within the trial", ylabel="return (near held-out goals)",
                      title="RL^2 on acquired tasks vs RL from scratch, mean over seeds")
    curves = {}
    for phase in phases:
        lines = phase_metrics(run_dir, phase)
        curves[phase] = ([line["step"] for line in lines], [line["trial_return"] for line in lines])
    plots.plot_curves(run_dir / "curves.png", curves, xlabel="env steps (all seeds)",
                      ylabel="training trial return (acquired: log q; true goals: -distance)",
                      title="RL^2 meta-training, mean over seeds")
