"""Actor-Mimic: distil four CartPole experts into one student, then finetune it on a new task.

    python -m experiments.distill --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.distill --resume runs/distill/<timestamp>

Story (Parisotto et al. 2016): the tasks are CartPole physics that need different behaviour --
the push reversed (``force_mag < 0``: the same action pushes the other way) and the pole's
half-length changed. Every observation carries the task (``ParamObservation``: normalized
``force_mag`` and ``length``), so one network can tell the tasks apart. (1) PPO trains one
teacher per task and seed (one ``vmap``-ed program over seeds x tasks). (2) One student per seed
(``algos/distill.py``) is trained on the teachers' action distributions over the states its own
rollouts visit (DAgger-style KL, plus the teachers' values for its critic).
``student_over_teacher``: the student's greedy return on each task over its teacher's (per seed,
mean and 95% CI over seeds; the target is >= 0.9). (3) On a held-out task (reversed push *and*
long pole) PPO finetunes from the student's network (``student_init``) and from a fresh one
(``scratch``), same seeds and budgets (``transfer.finetune``); greedy return by budget.

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.teacher_return``,
``results.student_return``, ``results.student_over_teacher`` per task; ``results.finetune.
<method>.return_by_budget``), ``finetune.png``, ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.cartpole import CartPole
from experiments.finetune_transfer import segment_trainer
from metarl_jax import stats
from metarl_jax.algos.distill import Distill, DistillConfig, Teachers
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.core.context_wrappers import ParamObservation
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import train_phase
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.transfer.evaluation import evaluate_seeds
from metarl_jax.transfer.finetune import finetune_returns

NAME = "distill"
# (force_mag, length). The held-out task is a combination the student has seen nearby (reversed
# push at length 0.75, long pole at the normal push); with (-10, 0.25) in place of (-10, 0.75)
# the student's 0-shot return there was random-level and it finetuned slower than scratch.
TASKS = ((10.0, 0.5), (-10.0, 0.5), (10.0, 1.0), (-10.0, 0.75))
HELD_OUT = (-10.0, 1.0)
LOW, HIGH = (-10.0, 0.25), (10.0, 1.0)  # ParamObservation's normalization ranges


@dataclasses.dataclass(frozen=True)
class Config:
    max_steps: int = 200
    tasks: Tuple[Tuple[float, float], ...] = TASKS
    held_out: Tuple[float, float] = HELD_OUT
    teacher: PPOConfig = PPOConfig(num_envs=16, num_steps=128, total_steps=204_800,
                                   num_epochs=4, num_minibatches=4, learning_rate=1e-3)
    student: DistillConfig = DistillConfig(num_envs_per_task=8, num_steps=64,
                                           total_steps=204_800)
    finetune: PPOConfig = PPOConfig(num_envs=8, num_steps=128, total_steps=40_960, num_epochs=4,
                                    num_minibatches=4, learning_rate=3e-4, anneal_lr=False)
    budgets: Tuple[int, ...] = (5120, 10240, 20480, 40960)  # held-out env steps per seed
    num_seeds: int = 3
    log_every: int = 5
    updates_per_chunk: int = 10
    eval_episodes: int = 16

    def __post_init__(self):
        self.teacher.validate()
        self.student.validate()
        self.finetune.validate()
        if len(self.tasks) < 1 or any(len(t) != 2 for t in self.tasks + (self.held_out,)):
            raise ValueError(f"tasks and held_out are (force_mag, length) pairs, got "
                             f"{self.tasks}, {self.held_out}")
        for force, length in self.tasks + (self.held_out,):
            if not (LOW[0] <= force <= HIGH[0] and LOW[1] <= length <= HIGH[1]):
                raise ValueError(f"task ({force}, {length}) is outside the observed ranges "
                                 f"force_mag in [{LOW[0]}, {HIGH[0]}], length in "
                                 f"[{LOW[1]}, {HIGH[1]}]")
        if self.teacher.hidden_sizes != self.student.hidden_sizes or (
                self.student.hidden_sizes != self.finetune.hidden_sizes):
            raise ValueError("teacher, student and finetune hidden_sizes must match")
        check_at_least_one(self, ("num_seeds", "log_every", "updates_per_chunk", "eval_episodes",
                                  "max_steps"))


PRESETS = {
    "quick": Config(teacher=dataclasses.replace(Config.teacher, total_steps=20_480),
                    student=dataclasses.replace(Config.student, total_steps=20_480),
                    finetune=dataclasses.replace(Config.finetune, total_steps=10_240),
                    budgets=(5120, 10240), tasks=TASKS[:2], num_seeds=2, log_every=2,
                    updates_per_chunk=1, eval_episodes=4),
    "cpu": Config(),
    "accel": Config(teacher=dataclasses.replace(Config.teacher, num_envs=256,
                                                total_steps=2_000_000), num_seeds=8),
}


def make_env(config: Config) -> ParamObservation:
    return ParamObservation(CartPole(max_steps=config.max_steps), ("force_mag", "length"),
                            LOW, HIGH)




def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    env = make_env(config)
    ppo = PPO(env)
    S, T = config.num_seeds, len(config.tasks)
    task = lambda f, length: env.default_params().replace(  # noqa: E731
        force_mag=jnp.float32(f), length=jnp.float32(length))
    task_params = jax.tree.map(lambda *x: jnp.stack(x), *[task(*t) for t in config.tasks])
    key = jax.random.PRNGKey(seed)
    L = config.log_every

    # (1) Teachers: every (seed, task) one row of a [S * T] stacked PPO state.
    keys = jax.random.split(jax.random.fold_in(key, 1), S * T)

    def teachers_init():
        states = [ppo.init(keys[s * T + t], config.teacher, fixed_space(task(*config.tasks[t])))
                  for s in range(S) for t in range(T)]
        return jax.tree.map(lambda *x: jnp.stack(x), *states)

    teachers = train_phase(
        run_dir, "teachers", init=teachers_init,
        chunk=lambda s, n: ppo.train_chunk_seeds(s, config.teacher, n, log_every=L),
        num_updates=config.teacher.num_updates // L, updates_per_chunk=config.updates_per_chunk,
        steps_per_update=config.teacher.batch_size * L * S * T)
    eval_key = jax.random.fold_in(key, 2)
    greedy = lambda cfg: lambda s: (  # noqa: E731
        lambda k, o: ppo.act(s.params, s.obs_stats, cfg, k, o, deterministic=True))
    teacher_all = evaluate_seeds(greedy(config.teacher), teachers, env, task_params,
                                 config.eval_episodes, eval_key)  # [S * T, T]
    teacher_return = teacher_all.reshape(S, T, T)[:, np.arange(T), np.arange(T)]  # [S, T]

    # (2) Student: distil the seed's T teachers, DAgger-style.
    distill = Distill(env, T, ppo, config.teacher)
    context = Teachers(*jax.tree.map(lambda x: x.reshape((S, T) + x.shape[1:]),
                                     (teachers.params, teachers.obs_stats)))
    student_keys = jax.random.split(jax.random.fold_in(key, 3), S)
    student = train_phase(
        run_dir, "student", init=lambda: distill.init_seeds(student_keys, config.student,
                                                            task_params),
        chunk=lambda s, n: distill.train_chunk_seeds(s, config.student, n, context,
                                                     log_every=L),
        num_updates=distill.num_updates(config.student) // L,
        updates_per_chunk=config.updates_per_chunk,
        steps_per_update=config.student.steps_per_update(T) * L * S,
        show=("episode_return", "kl"))
    student_return = evaluate_seeds(greedy(config.teacher), student, env, task_params,
                                     config.eval_episodes, eval_key)  # [S, T]
    ratio = student_return / teacher_return

    # (3) Finetune on the held-out task: from the student vs from scratch.
    held_out = task(*config.held_out)
    ft_keys = jax.random.split(jax.random.fold_in(key, 4), S)
    fresh = ppo.init_seeds(ft_keys, config.finetune, fixed_space(held_out))
    inits = {"scratch": fresh,
             "student_init": fresh.replace(params=student.params, obs_stats=student.obs_stats)}
    finetune = {}
    for method, states in inits.items():
        train = segment_trainer(run_dir, method, ppo, config.finetune, L,
                                config.finetune.batch_size * L, config.budgets)
        result = finetune_returns(ppo, states, config.finetune, held_out, config.budgets,
                                  jax.random.fold_in(key, 5), num_episodes=config.eval_episodes,
                                  train=train)
        finetune[method] = dict(return_by_budget=result.return_by_budget())

    results = dict(
        tasks=[list(t) for t in config.tasks], held_out=list(config.held_out),
        teacher_return={f"task{t}": stats.seed_summary(teacher_return[:, t]) for t in range(T)},
        student_return={f"task{t}": stats.seed_summary(student_return[:, t]) for t in range(T)},
        student_over_teacher={f"task{t}": stats.seed_summary(ratio[:, t]) for t in range(T)},
        finetune=finetune)
    budgets = [0, *config.budgets]
    plots.plot_curves(run_dir / "finetune.png", {
        m: (budgets, [finetune[m]["return_by_budget"][str(b)]["mean"] for b in budgets],
            [finetune[m]["return_by_budget"][str(b)]["ci95"] or 0.0 for b in budgets])
        for m in finetune}, xlabel="held-out env steps per seed", ylabel="greedy return",
        title=f"finetune on held-out task {config.held_out} (95% CI over seeds)")
    rows = [dict(task=f"task{t}", physics=str(config.tasks[t]),
                 teacher=results["teacher_return"][f"task{t}"]["mean"],
                 student=results["student_return"][f"task{t}"]["mean"],
                 ratio=results["student_over_teacher"][f"task{t}"]["mean"]) for t in range(T)]
    rows += [dict(task="held_out", physics=f"{m} @ {b}",
                  student=finetune[m]["return_by_budget"][str(b)]["mean"])
             for m in finetune for b in budgets]
    return finish(run_dir, {"results": results}, format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
