"""Unsupervised meta-RL through RL^2 (Gupta et al. 2018): RL^2 meta-trained on tasks acquired by
DIAYN, against RL from scratch with the same number of episodes on hand-designed held-out goals.

    python -m experiments.unsupervised_rl2 --preset quick|cpu [--seed N] [--out DIR]
    python -m experiments.unsupervised_rl2 --resume runs/unsupervised_rl2/<timestamp>

The RL^2 route of #17 item 4 (``experiments.unsupervised_meta`` is the MAML route; this module
reuses its DIAYN phase, task spaces, held-out families and verdicts). ``num_seeds`` seeds
vmapped through every phase:

1. DIAYN on ``envs.PointNav2D`` without its reward (phase ``diayn``): ``K`` skills and a
   discriminator ``q(z | x, y)`` per seed.
2. RL^2 (``algos.rl2.RL2``, a GRU policy over trials of ``episodes_per_trial`` episodes of one
   task) meta-trained on the acquired tasks, reward ``log q(z | s')`` floored at ``min_log_q``
   with the seed's frozen discriminator (phase ``rl2_acquired``; method ``acquired``, (a));
   ``task_reward=density`` swaps in the MAML route's goal-like density tasks (``results.
   skill_density``); and
   with the same budget and initial policies on the true goals ``U[-goal_range, goal_range]^2``,
   reward ``-distance`` (phase ``rl2_true_goals``; ``true_goals``, (c), the upper reference).
3. Meta-test: one trial of ``episodes_per_trial`` episodes (``eval_trials`` trials per task,
   sampled actions) on each held-out goal of the near and far families, and on acquired
   training tasks (``training_tasks_per_skill`` per skill). Beside (a) and (c): ``scratch``
   (b), RL from scratch with the same number of episodes -- a fresh MLP Gaussian policy updated
   after every episode by the ``pg`` step MAML's inner loop uses (``MAMLRL.sample_chain`` with
   one episode per step), its learning rate picked from ``scratch_lrs`` on ``scratch_tune_goals``
   training goals drawn from the true distribution (never the held-out ones) -- and
   ``untrained``, the RL^2 policies before meta-training.

Writes ``summary.json``: per family (``results`` for near, ``results.far_goals``,
``results.training_tasks``) ``per_episode.<method>[i]`` (mean return of episode ``i`` of the
trial over the family's tasks: mean, 95% CI over seeds and per-seed values), ``trial_mean``
(mean over the trial's episodes, the primary measure), ``gain`` (last minus first episode),
``comparisons`` (verdict "better"/"worse" only when the CIs are apart, else "tie") and
``paired_acquired_minus_scratch`` (per-seed (a) - (b)); ``results.scratch_lr.goals`` /
``.acquired`` ((b)'s lr tuning on training goals / on the acquired training tasks, which the
training-task rows use: mean episode return per candidate, None where it diverged, the pick);
``results.diayn``. Also ``per_episode.png``, ``curves.png``,
``metrics.jsonl``, ``config.json``, ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments import diayn as diayn_experiment
from experiments import unsupervised_meta as maml_route
from experiments._unsupervised_rl2_eval import (
    METHODS,
    plot_results,
    scratch_returns,
    summarize_family,
    table_rows,
    tune_scratch_lr,
)
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig
from metarl_jax.algos.rl2 import RL2, RL2Config
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import train_phase

NAME = "unsupervised_rl2"
PHASES = {"acquired": "rl2_acquired", "true_goals": "rl2_true_goals"}


@dataclasses.dataclass(frozen=True)
class Config:
    # K = 12, 50-step episodes, 3 seeds (the MAML route's cpu DIAYN before it went to 8 seeds)
    skills: diayn_experiment.Config = dataclasses.replace(maml_route._CPU.skills, num_seeds=3)
    # Trials of 5 episodes of 50 steps (250 steps): one trial per env per update. lr 3e-3 and
    # reward_scale 0.02 chosen on the true-goal task (docs/unsupervised_meta.md: lr 1e-3 with
    # reward_scale 0.1 or 0.02 did not beat standing still in 120 updates).
    rl2: RL2Config = RL2Config(num_envs=64, num_steps=250, seq_len=50, total_steps=64 * 250 * 120,
                               num_epochs=4, num_minibatches=4, hidden_size=64,
                               encoder_sizes=(64,), head_sizes=(64,), input_reward_scale=0.2,
                               init_log_std=-1.5, learning_rate=3e-3, gamma=0.99,
                               gae_lambda=0.95, ent_coef=0.0, reward_scale=0.02)
    episodes_per_trial: int = 5
    min_log_q: float = -10.0  # floor of the acquired reward log q(z|s')
    # The acquired tasks' reward, as the MAML route's (its module doc): "discriminator" (DIAYN's
    # log q(z|s')) or "density" (a spherical Gaussian per skill, lambda = density_weight).
    task_reward: str = "discriminator"
    density_weight: float = 2.0
    density_min_std: float = 0.1
    goal_range: float = 4.0  # (c)'s goals ~ U[-goal_range, goal_range]^2
    eval_goals: int = 8
    eval_goal_radius: float = 3.0  # the MAML route's near family ...
    far_goal_radius: float = 4.25  # ... and far family (0: none)
    eval_trials: int = 8  # sampled trials per held-out task and seed
    training_tasks_per_skill: int = 2
    # (b): the MAML route's MLP policy, one episode per pg update, lr picked on training goals.
    scratch: MAMLRLConfig = dataclasses.replace(maml_route.Config.maml, episodes_per_task=1)
    scratch_lrs: Tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)
    scratch_tune_goals: int = 32
    updates_per_chunk: int = 10
    report_skills: bool = True

    def __post_init__(self):
        self.rl2.validate()
        self.scratch.validate()
        check_at_least_one(self, ("episodes_per_trial", "eval_goals", "eval_trials",
                                  "scratch_tune_goals", "updates_per_chunk"))
        if self.skills.num_seeds < 2:
            raise ValueError(f"skills.num_seeds must be >= 2 (CIs over seeds), got "
                             f"{self.skills.num_seeds}")
        if self.scratch.episodes_per_task != 1:
            raise ValueError("scratch.episodes_per_task must be 1: (b) updates after every "
                             "episode, so its budget is the trial's episodes")
        if not self.scratch_lrs or min(self.scratch_lrs) <= 0:
            raise ValueError(f"scratch_lrs must be positive, got {self.scratch_lrs}")
        if not (self.goal_range > 0 and self.eval_goal_radius > 0 and self.far_goal_radius >= 0
                and self.min_log_q <= 0 and self.training_tasks_per_skill >= 0):
            raise ValueError("need goal_range > 0, eval_goal_radius > 0, far_goal_radius >= 0, "
                             "min_log_q <= 0 and training_tasks_per_skill >= 0")
        maml_route.check_task_reward(self)


_QUICK_SKILLS = maml_route.PRESETS["quick"].skills
PRESETS = {
    "quick": Config(
        skills=_QUICK_SKILLS,
        rl2=dataclasses.replace(Config.rl2, num_envs=8, num_steps=100, seq_len=50,
                                total_steps=8 * 100 * 2, num_minibatches=2, hidden_size=16,
                                encoder_sizes=(16,), head_sizes=(16,)),
        episodes_per_trial=2, eval_goals=2, eval_trials=2, training_tasks_per_skill=1,
        scratch=dataclasses.replace(Config.scratch, hidden_sizes=(16, 16)),
        scratch_lrs=(0.01, 0.1), scratch_tune_goals=2, updates_per_chunk=1,
        report_skills=False),
    "cpu": Config(),
}


def tasks_for(config: Config, space, num_goals_tasks: Tuple[jax.Array, int]):
    """One seed's meta-test tasks ``[G + A]``: the goals ``[G, 2]`` (reward ``-distance``) then
    ``A`` acquired tasks, skills ``0..K-1`` in turn (reward ``log q``). ``space``: one seed's
    ``AcquiredTaskSpace`` (its discriminator and floor)."""
    goals, num_acquired = num_goals_tasks
    num_goals, num_skills = goals.shape[0], config.skills.num_skills

    def batch(n):
        return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)), space.nominal)

    goal_tasks = batch(num_goals).replace(acquired=jnp.zeros(num_goals, jnp.bool_))
    goal_tasks = goal_tasks.replace(inner=goal_tasks.inner.replace(goal=goals))
    acquired = batch(num_acquired).replace(
        acquired=jnp.ones(num_acquired, jnp.bool_),
        skill=jnp.arange(num_acquired, dtype=jnp.int32) % num_skills)
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), goal_tasks, acquired)


def meta_train(run_dir, config: Config, rl2: RL2, spaces, seed: int):
    """Both RL^2 phases (resumable); the two methods' seed ``s`` start from the same network
    (the same init key). Returns ``{method: RL2State[S]}`` with ``untrained`` (the initial
    states)."""
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 2),
                            config.skills.num_seeds)

    def init(space):  # each seed with its own discriminator from the first trial on
        states = [rl2.init(k, config.rl2, select_seed(space, i)) for i, k in enumerate(keys)]
        return jax.tree.map(lambda *x: jnp.stack(x), *states)

    states = {"untrained": init(spaces["acquired"])}
    for method, phase in PHASES.items():
        states[method] = train_phase(
            run_dir, phase, init=lambda: init(spaces[method]),
            chunk=lambda s, n: rl2.train_chunk_seeds(s, config.rl2, n),
            num_updates=config.rl2.num_updates, updates_per_chunk=config.updates_per_chunk,
            steps_per_update=config.rl2.batch_size * config.skills.num_seeds,
            show=("trial_return",))
    return states


def rl2_returns(config: Config, rl2: RL2, states, tasks, key) -> dict:
    """``{method: returns[S, M, E]}`` for the RL^2 methods: one sampled trial per task of
    ``tasks[S, M]`` (``eval_trials`` repeats folded into ``M`` by the caller), seed ``s`` with
    key ``fold_in(key, s)``, the same keys for every method."""
    keys = jax.vmap(lambda s: jax.random.fold_in(key, s))(jnp.arange(config.skills.num_seeds))
    # ``main`` calls this once with every goal family concatenated, and the three methods share
    # the program: one compile per run.
    program = jax.jit(jax.vmap(lambda p, t, k: rl2.evaluate(p, config.rl2, t, k)
                               ["episode_returns"]))
    return {m: np.asarray(program(states[m].params, tasks, keys))
            for m in ("acquired", "true_goals", "untrained")}


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    diayn, diayn_states = diayn_experiment.train(run_dir, config.skills, seed)
    acquired_env, spaces, rollouts, skill_density = maml_route.acquired_setup(
        config, diayn, diayn_states, seed)
    rl2 = RL2(acquired_env, config.episodes_per_trial)
    states = meta_train(run_dir, config, rl2, spaces, seed)

    # Meta-test tasks per seed: near goals, far goals, acquired training tasks; each repeated
    # eval_trials times (task-major).
    goals = jnp.concatenate([maml_route.eval_goals(config, r)
                             for r in maml_route.families(config).values()])
    num_acquired = config.skills.num_skills * config.training_tasks_per_skill
    tasks = jax.vmap(lambda sp: tasks_for(config, sp, (goals, num_acquired)))(spaces["acquired"])
    tasks = jax.tree.map(lambda x: jnp.repeat(x, config.eval_trials, axis=1), tasks)
    test_key = jax.random.fold_in(jax.random.PRNGKey(seed), 3)
    returns = rl2_returns(config, rl2, states, tasks, test_key)

    # (b): the lr for the held-out goals picked on training goals ~ U[-goal_range,
    # goal_range]^2, the one for the acquired training tasks on those tasks (other keys).
    scratch_learner = MAMLRL(acquired_env)
    tune_key, scratch_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 4))
    tune_goals = jax.random.uniform(tune_key, (config.scratch_tune_goals, 2),
                                    minval=-config.goal_range, maxval=config.goal_range)
    tuning = {}
    for kind, (kind_goals, kind_acquired) in (("goals", (tune_goals, 0)),
                                              ("acquired", (goals[:0], num_acquired))):
        if kind_goals.shape[0] + kind_acquired == 0:
            continue
        kind_tasks = jax.vmap(lambda sp: tasks_for(config, sp, (kind_goals, kind_acquired)))(
            spaces["acquired"])
        kind_tasks = jax.tree.map(lambda x: jnp.repeat(x, config.eval_trials, axis=1),
                                  kind_tasks)
        tuning[kind] = tune_scratch_lr(config, scratch_learner, spaces["acquired"], kind_tasks,
                                       jax.random.fold_in(scratch_key, 1), seed)
    scratch = np.array(scratch_returns(config, scratch_learner, spaces["acquired"], tasks,
                                       tuning["goals"]["picked"], scratch_key, seed))
    if num_acquired:
        scratch[:, -num_acquired * config.eval_trials:] = scratch_returns(
            config, scratch_learner, spaces["acquired"], tasks, tuning["acquired"]["picked"],
            scratch_key, seed)[:, -num_acquired * config.eval_trials:]
    returns["scratch"] = scratch

    per_task = {m: r.reshape(r.shape[0], -1, config.eval_trials, r.shape[-1]).mean(2)
                for m, r in returns.items()}  # [S, tasks, E]
    results, num_goals = {}, config.eval_goals
    for f, (family, radius) in enumerate(maml_route.families(config).items()):
        part = {m: r[:, f * num_goals:(f + 1) * num_goals] for m, r in per_task.items()}
        family_results = dict(summarize_family(part), radius=radius,
                              eval_goals=np.asarray(maml_route.eval_goals(config, radius)).tolist())
        if family == "near":
            results.update(family_results)
        else:
            results[f"{family}_goals"] = family_results
    if num_acquired:
        results["training_tasks"] = summarize_family(
            {m: r[:, goals.shape[0]:] for m, r in per_task.items()})
    results["scratch_lr"] = tuning
    results["diayn"] = maml_route.report_skills(run_dir, config, rollouts)
    if skill_density is not None:
        results["skill_density"] = skill_density
    plot_results(run_dir, results, tuple(PHASES.values()))
    return finish(run_dir, {"results": results, "num_seeds": config.skills.num_seeds,
                            "methods": list(METHODS)}, format_table(table_rows(results)))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
