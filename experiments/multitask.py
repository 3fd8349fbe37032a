"""Multi-task PPO on conflicting tasks: interference made visible, and two mitigations.

    python -m experiments.multitask --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.multitask --resume runs/multitask/<timestamp>

Story: K PointNav2D tasks (``envs.PointNav2D``; goals at ``goal_distance`` in the directions
``goal_angles_deg``, not observed) whose rewards are multiplied by ``reward_scales``: by default
goals in opposite directions, each opposite pair with a 100x reward imbalance, so the tasks pull
a shared network apart *and* the small tasks' gradients are drowned by the large ones. Methods
(same seeds, same total env steps):

* ``single_task``: one PPO policy per task, each with ``1/K`` of the envs and of the budget
  (with its own return normalization, as one would train a single task);
* ``multitask``: one task-conditioned policy (one-hot task id in the observation), plain PPO;
* ``multitask_normalization``: + per-task return and advantage normalization;
* ``multitask_pcgrad``: + PCGrad (Yu et al. 2020) on the per-task gradients;
* ``multitask_both``: both mitigations.

The four multi-task variants share one compiled program (the mitigations are config leaves); the
single-task policies train as one program with tasks x seeds on the seed axis. Every update logs
each task's return and the cosines between the per-task gradients (``algos/multitask.py``).

Writes ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.<method>.per_task`` and
``worst_task``: the deterministic policy's return of each task in its own unscaled units, mean,
95% CI over seeds and per seed; ``grad_cos``: per-task gradient cosines averaged over training;
``results.mitigation_vs_multitask``: paired per-seed difference on the worst task with its CI and
a verdict, a tie when the CI contains 0), ``task_curves.png``, ``grad_cosine.png`` and
``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from envs.point_nav import PointNav2D
from metarl_jax import stats
from metarl_jax.algos.multitask import MultiTaskConfig, MultiTaskPPO, task_batch
from metarl_jax.io import plots
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.load import Phase
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase

NAME = "multitask"
MITIGATIONS = {"normalization": dict(per_task_norm=True), "pcgrad": dict(pcgrad=True),
               "both": dict(per_task_norm=True, pcgrad=True)}
METHODS = ("single_task", "multitask") + tuple(f"multitask_{m}" for m in MITIGATIONS)


@dataclasses.dataclass(frozen=True)
class Config:
    # The multi-task learner's config; single_task uses num_envs / K envs and total_steps / K.
    ppo: MultiTaskConfig = MultiTaskConfig(num_envs=16, num_steps=100, total_steps=640_000,
                                           num_epochs=4, num_minibatches=4, hidden_sizes=(64, 64))
    goal_angles_deg: Tuple[float, ...] = (0.0, 180.0, 90.0, 270.0)  # one task per goal
    goal_distance: float = 0.5
    reward_scales: Tuple[float, ...] = (1.0, 0.01, 1.0, 0.01)  # per task, multiplies its reward
    horizon: int = 100  # PointNav2D max_steps
    methods: Tuple[str, ...] = METHODS
    num_seeds: int = 5
    log_every: int = 5  # updates averaged into one metrics line
    updates_per_chunk: int = 20  # metrics lines per compiled chunk

    @property
    def num_tasks(self) -> int:
        return len(self.goal_angles_deg)

    def __post_init__(self):
        self.ppo.validate()
        if not self.methods or any(m not in METHODS for m in self.methods):
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {self.methods}")
        if len(self.reward_scales) != self.num_tasks or self.num_tasks < 2:
            raise ValueError(f"need >= 2 tasks and one reward scale per goal angle, got "
                             f"{self.num_tasks} angles, {len(self.reward_scales)} scales")
        if min(self.reward_scales) <= 0 or self.goal_distance <= 0:
            raise ValueError("reward_scales and goal_distance must be > 0")
        if self.ppo.num_envs % self.num_tasks or (self.ppo.num_steps * self.ppo.num_envs
                                                  // self.num_tasks) % self.ppo.num_minibatches:
            raise ValueError(f"ppo.num_envs = {self.ppo.num_envs} must be a multiple of the "
                             f"{self.num_tasks} tasks, with each task's share of a rollout "
                             f"divisible by ppo.num_minibatches = {self.ppo.num_minibatches}")
        for name in ("num_seeds", "log_every", "updates_per_chunk", "horizon"):
            if getattr(self, name) < (2 if name == "num_seeds" else 1):
                raise ValueError(f"{name} must be >= {2 if name == 'num_seeds' else 1}")
        if self.ppo.num_updates < self.log_every:
            raise ValueError(f"ppo.total_steps gives {self.ppo.num_updates} updates, fewer than "
                             f"log_every={self.log_every}")


PRESETS = {
    # Chunks of equal size everywhere: a shorter last chunk would compile a second program.
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=8, num_steps=20, total_steps=1920,
                                            num_epochs=2, num_minibatches=2, hidden_sizes=(16,)),
                    horizon=20, num_seeds=2, log_every=2, updates_per_chunk=3),
    "cpu": Config(),
    "accel": Config(ppo=dataclasses.replace(Config.ppo, num_envs=256, total_steps=20_480_000,
                                            num_minibatches=8, hidden_sizes=(256, 256)),
                    num_seeds=10, log_every=10),
}


def make_tasks(config: Config, env: PointNav2D):
    """``TaskParams [K]``: the goals and reward scales of the config."""
    angles = np.deg2rad(np.asarray(config.goal_angles_deg))
    goals = config.goal_distance * np.stack([np.cos(angles), np.sin(angles)], -1)
    base = jax.tree.map(lambda x: jnp.broadcast_to(x, (config.num_tasks,) + x.shape),
                        env.default_params())
    return task_batch(base.replace(goal=jnp.asarray(goals, jnp.float32)), config.reward_scales)


def single_task_config(config: Config) -> MultiTaskConfig:
    k = config.num_tasks
    return config.ppo.replace(num_envs=config.ppo.num_envs // k,
                              total_steps=config.ppo.total_steps // k, per_task_norm=True)


def ci(values) -> dict:
    mean, half = stats.mean_ci95(values)
    return dict(mean=mean, ci95=half, per_seed=[float(v) for v in np.asarray(values)])


def curves(run_dir, method: str, config: Config) -> Tuple[np.ndarray, np.ndarray]:
    """``(steps per seed [L], return [S, K, L])`` of the training curves of ``method``."""
    lines = phase_metrics(run_dir, method)
    k, s = config.num_tasks, config.num_seeds
    if method == "single_task":  # seed axis = task-major [K * S], each learner's task 0
        ret = np.array([line["return_task_0_per_seed"] for line in lines]).T.reshape(k, s, -1)
        ret = ret.transpose(1, 0, 2)
    else:
        ret = np.stack([np.array([line[f"return_task_{t}_per_seed"] for line in lines]).T
                        for t in range(k)], 1)
    steps = np.arange(1, len(lines) + 1) * config.ppo.batch_size * config.log_every
    return steps, ret


def plot_task_curves(path, run_dir, config: Config):
    cols = min(config.num_tasks, 2)
    rows = -(-config.num_tasks // cols)
    fig = Figure(figsize=(5.0 * cols, 3.4 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).reshape(-1)[:config.num_tasks]
    for method in config.methods:
        steps, ret = curves(run_dir, method, config)
        for t, ax in enumerate(axes):
            mean, half = ret[:, t].mean(0), stats.ci95(ret[:, t])
            (line,) = ax.plot(steps, mean, label=method)
            ax.fill_between(steps, mean - half, mean + half, color=line.get_color(), alpha=0.15)
    for t, ax in enumerate(axes):
        ax.set(title=f"task {t}: goal {config.goal_angles_deg[t]:g} deg, "
                     f"scale {config.reward_scales[t]:g}",
               xlabel="env steps per seed (all tasks)", ylabel="return (unscaled), 95% CI")
        ax.ticklabel_format(axis="x", style="sci", scilimits=(0, 0))
        ax.grid(True, alpha=0.3)
    axes[-1].legend(fontsize=7)
    plots._save(fig, path)


def method_config(config: Config, method: str) -> MultiTaskConfig:
    if method == "single_task":
        return single_task_config(config)
    return config.ppo.replace(**MITIGATIONS.get(method.removeprefix("multitask_"), {}))


def policies(config: Config):
    """``{method: Phase}``: what ``main`` trains and ``metarl_jax.load_run`` restores.
    ``single_task``'s seed axis is task-major ``[K * S]`` (entry ``t * S + s``: task t, seed s)."""
    env = PointNav2D(max_steps=config.horizon)
    tasks, k = make_tasks(config, env), config.num_tasks
    multi, single = MultiTaskPPO(env, k), MultiTaskPPO(env, 1)
    single_cfg = single_task_config(config)
    lines = config.ppo.num_updates // config.log_every

    def single_init(keys):
        per_task = [single.init_seeds(keys, single_cfg, jax.tree.map(lambda x: x[t:t + 1], tasks))
                    for t in range(k)]
        return jax.tree.map(lambda *xs: jnp.concatenate(xs), *per_task)

    return {m: Phase(single, single_cfg, (), num_updates=lines, init_seeds=single_init)
            if m == "single_task" else
            Phase(multi, method_config(config, m), (tasks,), num_updates=lines)
            for m in config.methods}


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    phases, k = policies(config), config.num_tasks
    env = PointNav2D(max_steps=config.horizon)
    tasks = make_tasks(config, env)
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    num_lines = config.ppo.num_updates // config.log_every

    states = {}
    for method, phase in phases.items():
        learner, cfg = phase.learner, phase.config
        init = ((lambda: phase.init_seeds(seed_keys)) if phase.init_seeds is not None else
                (lambda: learner.init_seeds(seed_keys, cfg, *phase.init_args)))
        states[method] = train_phase(
            run_dir, method, init=init,
            chunk=lambda s, n: learner.train_chunk_seeds(s, cfg, n, log_every=config.log_every),
            num_updates=num_lines, updates_per_chunk=config.updates_per_chunk,
            steps_per_update=config.ppo.batch_size * config.log_every * config.num_seeds,
            show=("episode_return", "worst_task_return"))

    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    # One evaluation program per learner (the config is an argument: the variants share it).
    evaluators, results = {}, {}  # one evaluation program per learner (config: an argument)
    for method in config.methods:
        learner, cfg = phases[method].learner, phases[method].config
        single = method == "single_task"
        if learner not in evaluators:
            evaluators[learner] = jax.jit(jax.vmap(learner.evaluate,
                                                   in_axes=(0, None, 0 if single else None, None)))
        if single:  # states task-major [K * S], each with its own task
            own_task = jax.tree.map(lambda x: jnp.repeat(x[:, None], config.num_seeds, 0), tasks)
            ret = np.asarray(evaluators[learner](states[method], cfg, own_task, eval_key))
            ret = ret.reshape(k, -1).T  # [S, K]
        else:
            ret = np.asarray(evaluators[learner](states[method], cfg, tasks, eval_key))  # [S, K]
        results[method] = dict(per_task={f"task_{t}": ci(ret[:, t]) for t in range(k)},
                               worst_task=ci(ret.min(1)), mean_over_tasks=ci(ret.mean(1)))
        if method != "single_task":
            lines = phase_metrics(run_dir, method)
            names = [n for n in lines[0] if n.startswith("grad_cos_") or n == "grad_conflict_frac"]
            results[method]["grad_cos"] = {n: float(np.mean([line[n] for line in lines]))
                                           for n in names}
            results[method]["grad_cos"]["over"] = "all updates and seeds (training average)"

    plain = results.get("multitask")
    if plain is not None:
        results["mitigation_vs_multitask"] = {}
        for method in config.methods:
            if method.startswith("multitask_"):
                diff = ci(np.subtract(results[method]["worst_task"]["per_seed"],
                                      plain["worst_task"]["per_seed"]))
                lo, hi = diff["mean"] - diff["ci95"], diff["mean"] + diff["ci95"]
                diff["verdict"] = "better" if lo > 0 else "worse" if hi < 0 else "tie"
                results["mitigation_vs_multitask"][method] = diff

    plot_task_curves(run_dir / "task_curves.png", run_dir, config)
    plots.plot_curves(run_dir / "grad_cosine.png", {
        m: (np.arange(1, num_lines + 1) * config.ppo.batch_size * config.log_every,
            [line["grad_cos_mean"] for line in phase_metrics(run_dir, m)])
        for m in config.methods if m != "single_task"},
        xlabel="env steps per seed", ylabel="mean cosine between per-task gradients",
        title="Interference: per-task policy gradients (seed mean)")
    rows = [dict(method=m, **{f"task_{t}": r["per_task"][f"task_{t}"]["mean"] for t in range(k)},
                 worst=r["worst_task"]["mean"], worst_ci95=r["worst_task"]["ci95"],
                 grad_cos=r.get("grad_cos", {}).get("grad_cos_mean", float("nan")))
            for m, r in results.items() if m in METHODS]
    summary = {"results": results,
               "tasks": dict(goal_angles_deg=list(config.goal_angles_deg),
                             goal_distance=config.goal_distance,
                             reward_scales=list(config.reward_scales)),
               "returns": "deterministic policy, one episode per task, unscaled reward"}
    return finish(run_dir, summary, format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
