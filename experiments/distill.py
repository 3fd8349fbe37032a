"""Actor-Mimic: distil four CartPole experts into one student, then finetune it on a new task.

    python -m experiments.distill --preset quick|cpu|cpu_outside|accel [--seed N] [--out DIR]
    python -m experiments.distill --resume runs/distill/<timestamp>

Story (Parisotto et al. 2016): the tasks are CartPole physics that need different behaviour --
the push reversed (``force_mag < 0``: the same action pushes the other way) and the pole's
half-length changed. Every observation carries the task (``ParamObservation``: normalized
``force_mag`` and ``length``), so one network can tell the tasks apart. (1) PPO trains one
teacher per task and seed (one ``vmap``-ed program over seeds x tasks). (2) One student per seed
(``algos/distill.py``) is trained on the teachers' action distributions over the states its own
rollouts visit (DAgger-style KL, plus the teachers' values for its critic).
``student_over_teacher``: the student's greedy return on each task over its teacher's (per seed,
mean and 95% CI over seeds; the target is >= 0.9). (3) On a held-out task (reversed push, a
pole length between the teachers') PPO finetunes from the student's network (``student_init``)
and from a fresh one (``scratch``), same seeds, budgets and PPO hyperparameters
(``transfer.finetune``; the two inits are one ``[2S]`` batch: one compiled program). What
``student_init`` carries over: the student's actor *and* critic (regressed on the teachers'
values) and its observation statistics (over the teachers' tasks); a fresh optimizer. Speed,
stated before the runs: greedy return at each budget and the normalized area under that curve
(``area_under_curve``), mean and 95% CI over seeds; the verdict is ``stats.ci_verdict``
(overlapping CIs: a tie).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.teacher_return``,
``results.student_return``, ``results.student_over_teacher`` per task; ``results.finetune.
<init>.return_by_budget``, ``.auc``, ``finetune.auc_verdict``,
``finetune.student_minus_scratch_auc`` per seed), ``finetune.png``, ``checkpoints/``.
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
from metarl_jax.transfer.finetune import FinetuneResult, finetune_returns

NAME = "distill"
# (force_mag, length): the corners of the observed box, and a held-out task inside their hull
# (the reversed push with a pole between the short and the long one it was seen with), 500-step
# episodes. The family measured first (docs/value_transfer.md), held-out corner (-10, 1)
# outside the hull of ``OUTSIDE_TASKS`` and 200-step episodes, is the ``cpu_outside`` preset.
TASKS = ((10.0, 0.25), (-10.0, 0.25), (10.0, 1.0), (-10.0, 1.0))
HELD_OUT = (-10.0, 0.5)
OUTSIDE_TASKS = ((10.0, 0.5), (-10.0, 0.5), (10.0, 1.0), (-10.0, 0.75))
OUTSIDE_HELD_OUT = (-10.0, 1.0)
INITS = ("scratch", "student_init")  # finetuning's two rows of the [2S] batch, in order
LOW, HIGH = (-10.0, 0.25), (10.0, 1.0)  # ParamObservation's normalization ranges


@dataclasses.dataclass(frozen=True)
class Config:
    max_steps: int = 500
    tasks: Tuple[Tuple[float, float], ...] = TASKS
    held_out: Tuple[float, float] = HELD_OUT
    teacher: PPOConfig = PPOConfig(num_envs=16, num_steps=128, total_steps=204_800,
                                   num_epochs=4, num_minibatches=4, learning_rate=1e-3)
    student: DistillConfig = DistillConfig(num_envs_per_task=8, num_steps=64,
                                           total_steps=204_800)
    finetune: PPOConfig = PPOConfig(num_envs=8, num_steps=128, total_steps=40_960, num_epochs=4,
                                    num_minibatches=4, learning_rate=3e-4, anneal_lr=False)
    budgets: Tuple[int, ...] = (5120, 10240, 20480, 40960)  # held-out env steps per seed
    num_seeds: int = 8
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


# quick finetunes with the teachers' PPO config and 2 tasks ([S * T] = [2S] rows) and one-line
# segments: its PPO chunk program is the teachers' (compiled once; rates are not static).
_QUICK_PPO = dataclasses.replace(Config.teacher, total_steps=20_480)
PRESETS = {
    "quick": Config(teacher=_QUICK_PPO, finetune=_QUICK_PPO,
                    student=dataclasses.replace(Config.student, total_steps=20_480),
                    budgets=(4096, 20480), tasks=TASKS[:2], num_seeds=2, log_every=2,
                    max_steps=200, updates_per_chunk=1, eval_episodes=4),
    "cpu": Config(),
    "cpu_outside": Config(max_steps=200, tasks=OUTSIDE_TASKS, held_out=OUTSIDE_HELD_OUT),
    "accel": Config(teacher=dataclasses.replace(Config.teacher, num_envs=256,
                                                total_steps=2_000_000), num_seeds=8),
}


def area_under_curve(returns: np.ndarray, budgets: Tuple[int, ...], max_steps: int
                     ) -> np.ndarray:
    """Normalized area under the greedy-return curve, the finetuning speed measure stated before
    the runs: the trapezoid over ``budgets`` (held-out env steps, 0 first) of ``returns[S, K + 1]``
    / ``max_steps``, over the last budget: ``[S]`` in [0, 1] (1: the best return from step 0)."""
    budgets = np.asarray(budgets, np.float64)
    if returns.shape[-1] != budgets.size or budgets[0] != 0 or np.any(np.diff(budgets) <= 0):
        raise ValueError(f"need returns[S, {budgets.size}] and budgets 0 < ... increasing, got "
                         f"{returns.shape}, {budgets.tolist()}")
    widths = np.diff(budgets)
    heights = 0.5 * (returns[:, 1:] + returns[:, :-1]) / max_steps
    return heights @ widths / budgets[-1]


def make_env(config: Config) -> ParamObservation:
    return ParamObservation(CartPole(max_steps=config.max_steps), ("force_mag", "length"),
                            LOW, HIGH)


def cartpole_task(env, force_mag: float, length: float):
    """The env's default ``Params`` with the task's ``(force_mag, length)``."""
    return env.default_params().replace(force_mag=jnp.float32(force_mag),
                                        length=jnp.float32(length))


def pretrain(run_dir, config: Config, seed: int):
    """Phases (1) teachers and (2) student, checkpointed in ``run_dir`` (a finished phase is
    read back). Returns ``(ppo, teachers[S * T], student[S], teacher_return[S, T],
    student_return[S, T])``: seed-major stacked states and greedy returns on the tasks."""
    env = make_env(config)
    ppo = PPO(env)
    S, T = config.num_seeds, len(config.tasks)
    task = lambda f, length: cartpole_task(env, f, length)  # noqa: E731
    stack = jax.jit(lambda *trees: jax.tree.map(lambda *x: jnp.stack(x), *trees))  # one program
    task_params = stack(*[task(*t) for t in config.tasks])
    key = jax.random.PRNGKey(seed)
    L = config.log_every

    # (1) Teachers: every (seed, task) one row of a [S * T] stacked PPO state.
    keys = jax.random.split(jax.random.fold_in(key, 1), S * T)

    def teachers_init():
        states = [ppo.init(keys[s * T + t], config.teacher, fixed_space(task(*config.tasks[t])))
                  for s in range(S) for t in range(T)]
        return stack(*states)

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
    return ppo, teachers, student, teacher_return, student_return


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    ppo, teachers, student, teacher_return, student_return = pretrain(run_dir, config, seed)
    S, T, L = config.num_seeds, len(config.tasks), config.log_every
    key = jax.random.PRNGKey(seed)
    ratio = student_return / teacher_return

    # (3) Finetune on the held-out task: from the student vs from scratch. The inits are data:
    # both are rows of one [2S] batch (scratch first), so finetuning and its evaluation compile
    # once. Rows s and S + s share their PPO key (the same rollout keys for both inits).
    held_out = cartpole_task(ppo.env, *config.held_out)
    ft_keys = jax.random.split(jax.random.fold_in(key, 4), S)
    fresh = ppo.init_seeds(ft_keys, config.finetune, fixed_space(held_out))
    from_student = fresh.replace(params=student.params, obs_stats=student.obs_stats)
    both = jax.jit(lambda a, b: jax.tree.map(lambda x, y: jnp.concatenate([x, y]), a, b))(
        fresh, from_student)  # one program, not one eager op per leaf
    train = segment_trainer(run_dir, "finetune", ppo, config.finetune, L,
                            config.finetune.batch_size * L, config.budgets)
    result = finetune_returns(ppo, both, config.finetune, held_out, config.budgets,
                              jax.random.fold_in(key, 5), num_episodes=config.eval_episodes,
                              train=train)
    curves = dict(zip(INITS, np.split(result.returns, 2)))  # {init: [S, 1 + K]}
    auc = {m: area_under_curve(c, (0, *config.budgets), config.max_steps)
           for m, c in curves.items()}
    finetune = {m: dict(return_by_budget=FinetuneResult(result.budgets, c, None)
                        .return_by_budget(), auc=stats.seed_summary(auc[m]))
                for m, c in curves.items()}
    s_auc, c_auc = finetune["student_init"]["auc"], finetune["scratch"]["auc"]
    finetune["auc_verdict"] = stats.ci_verdict(s_auc["mean"], s_auc["ci95"] or 0.0,
                                               c_auc["mean"], c_auc["ci95"] or 0.0)
    finetune["student_minus_scratch_auc"] = stats.seed_summary(auc["student_init"]
                                                                - auc["scratch"])

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
        for m in INITS}, xlabel="held-out env steps per seed", ylabel="greedy return",
        title=f"finetune on held-out task {config.held_out} (95% CI over seeds)")
    rows = [dict(task=f"task{t}", physics=str(config.tasks[t]),
                 teacher=results["teacher_return"][f"task{t}"]["mean"],
                 student=results["student_return"][f"task{t}"]["mean"],
                 ratio=results["student_over_teacher"][f"task{t}"]["mean"]) for t in range(T)]
    rows += [dict(task="held_out", physics=f"{m} @ {b}",
                  student=finetune[m]["return_by_budget"][str(b)]["mean"])
             for m in INITS for b in budgets]
    rows += [dict(task="held_out", physics=f"{m} AUC", student=finetune[m]["auc"]["mean"])
             for m in INITS]
    return finish(run_dir, {"results": results}, format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
