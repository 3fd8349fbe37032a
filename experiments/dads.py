"""DADS: predictable continuous skills, then zero-shot goal reaching by planning in skill space.

    python -m experiments.dads --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.dads --resume runs/dads/<timestamp>

Story: on the reward-free 2-D point mass (``envs.PointNav2D``, goal reward ignored) train DADS
with 2-D skills ``z ~ U[-1, 1]^2`` (``num_seeds`` seeds, one vmapped program), and -- same budget
and seeds -- DIAYN with ``K`` categorical skills (``experiments.diayn.train``). Then, per seed:

1. ``skill_dynamics_r2``: the skill-dynamics model's R^2 on held-out transitions (fresh rollouts
   of skills drawn from the prior with the stochastic policy, never in the replay buffer);
2. ``mppi_goal_success``: the latent-space planner (``algos.dads.plan_to_goal``, MPPI over skill
   sequences, the paper's Algorithm 2) drives the deterministic skill policy towards
   ``num_goals`` held-out goals it never trained for; a goal counts as reached when the path
   comes within ``success_radius`` of it (the skills need not be able to stop there; the final
   distance is reported beside);
3. the same planner on DIAYN's skills (a skill-dynamics model fit post hoc on DIAYN's replay
   buffer, planning over ``K`` logits executed as ``one_hot(argmax)``).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.dads`` /
``results.diayn``: mean, 95% CI over seeds, per-seed values), ``skills.png`` (DADS skill traces
coloured by the skill's angle), ``plans.png`` (executed planned paths to the goals, both
methods, seed 0), ``curves.png``, ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from envs.point_nav import PointNav2D
from experiments import diayn as diayn_experiment
from experiments._skill_controller import check_config as check_controller
from experiments._skill_controller import meta_controller
from metarl_jax import stats
from metarl_jax.algos.dads import (
    DADS,
    DADSConfig,
    PlannerConfig,
    SkillDynamics,
    fit_dynamics,
    plan_to_goal,
    r_squared,
)
from metarl_jax.algos.diayn import DIAYNConfig, skill_trajectories
from metarl_jax.algos.mppi import MPPIConfig
from metarl_jax.algos.ppo import PPOConfig
from metarl_jax.algos.sac import SACConfig
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.randomization.param_space import fixed_space

NAME = "dads"
SAC = SACConfig(num_envs=8, total_steps=40_000, hidden_sizes=(64, 64), batch_size=128,
                buffer_size=50_000, learning_starts=1000, utd=0.25, init_alpha=0.1)


@dataclasses.dataclass(frozen=True)
class Config:
    # A smaller buffer than DIAYN's keeps the model's data close to the current policy (DADS is
    # on-policy in the paper); two model steps per update at a higher rate fit it faster.
    dads: DADSConfig = DADSConfig(sac=dataclasses.replace(SAC, buffer_size=20_000),
                                  dyn_hidden=(64, 64), dyn_batch=128, dyn_steps=2, dyn_lr=1e-3,
                                  num_prior_samples=32)
    skill_size: int = 2
    diayn: DIAYNConfig = DIAYNConfig(sac=SAC, disc_hidden=(64, 64), disc_batch=128)
    diayn_skills: int = 6
    episode_steps: int = 50
    num_seeds: int = 3
    log_every: int = 10
    updates_per_chunk: int = 50
    # A skill runs 5 steps (~0.7 units at full speed, about the success radius) before a replan.
    planner: PlannerConfig = PlannerConfig(horizon=4, steps_per_skill=5, num_replans=10,
                                           mppi=MPPIConfig(num_samples=256, num_iters=5,
                                                           noise_std=0.5, temperature=0.05))
    num_goals: int = 8
    goal_radius: tuple = (1.5, 3.0)  # held-out goals: uniform angle, radius in this range
    success_radius: float = 0.5
    r2_rollouts: int = 64
    diayn_fit_steps: int = 2000  # Adam steps of DIAYN's post-hoc skill-dynamics model
    # A learned meta-controller over the continuous DADS skills (experiments/_skill_controller.py,
    # the same task, budget and flat-PPO baseline as experiments.diayn's). Off in quick: the same
    # code runs in diayn's quick test, and SkillOptions' continuous skills in its unit tests.
    controller: bool = True
    controller_option_steps: int = diayn_experiment.Config.controller_option_steps
    controller_goal_range: float = diayn_experiment.Config.controller_goal_range
    controller_eval_goals: int = diayn_experiment.Config.controller_eval_goals
    controller_sampled_skills: bool = False
    controller_ppo: PPOConfig = diayn_experiment.Config.controller_ppo

    def __post_init__(self):
        self.dads.validate()
        self.diayn.validate()
        check_at_least_one(self, ("skill_size", "num_seeds", "log_every", "updates_per_chunk",
                                  "num_goals", "r2_rollouts", "diayn_fit_steps", "episode_steps"))
        if self.diayn_skills < 2:
            raise ValueError(f"diayn_skills must be >= 2, got {self.diayn_skills}")
        self.planner.mppi.validate()
        if not 0 < self.goal_radius[0] <= self.goal_radius[1]:
            raise ValueError(f"goal_radius must be (low, high) with 0 < low <= high, got "
                             f"{self.goal_radius}")
        if not self.success_radius > 0:
            raise ValueError(f"success_radius must be > 0, got {self.success_radius}")
        check_controller(self.controller_ppo, self.controller_option_steps, self.episode_steps,
                         self.log_every)
        for name in ("dads", "diayn"):
            if getattr(self, name).num_updates < self.log_every:
                raise ValueError(f"{name}.sac.total_steps gives fewer updates than log_every")


_QUICK_SAC = dataclasses.replace(SAC, total_steps=2400, learning_starts=400)
PRESETS = {
    "quick": Config(dads=dataclasses.replace(Config.dads, sac=_QUICK_SAC, num_prior_samples=4),
                    diayn=dataclasses.replace(Config.diayn, sac=_QUICK_SAC), diayn_skills=4,
                    num_seeds=1, updates_per_chunk=15, num_goals=2, r2_rollouts=8,
                    diayn_fit_steps=100, controller=False,
                    planner=dataclasses.replace(Config.planner, mppi=dataclasses.replace(
                        Config.planner.mppi, num_samples=32, num_iters=2))),
    "cpu": Config(),
    "accel": Config(dads=dataclasses.replace(Config.dads, sac=dataclasses.replace(
        SAC, num_envs=128, total_steps=1_000_000, hidden_sizes=(256, 256)),
        num_prior_samples=64), num_seeds=8, num_goals=32),
}




def train_dads(run_dir, config: Config, seed: int):
    env = PointNav2D(max_steps=config.episode_steps)
    dads = DADS(env, config.skill_size, feature_size=2)
    space = fixed_space(env.default_params())
    keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    cfg = config.dads
    states = train_phase(
        run_dir, "dads", init=lambda: dads.init_seeds(keys, cfg, space),
        chunk=lambda s, n: dads.train_chunk_seeds(s, cfg, n, log_every=config.log_every),
        num_updates=cfg.num_updates // config.log_every,
        updates_per_chunk=config.updates_per_chunk,
        steps_per_update=cfg.steps_per_update * config.log_every * config.num_seeds,
        show=("dyn_r2", "rollout_reward"))
    return dads, states


def held_out_goals(config: Config, seed: int) -> jax.Array:
    """``[num_goals, 2]`` goals from a key no training run uses."""
    k1, k2 = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 2))
    angle = jax.random.uniform(k1, (config.num_goals,), maxval=2 * jnp.pi)
    radius = jax.random.uniform(k2, (config.num_goals,), minval=config.goal_radius[0],
                                maxval=config.goal_radius[1])
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], -1)


def evaluate(learner, states, dyn_params, model, config: Config, goals, key, to_skill, plan_size):
    """Per seed: R^2 on held-out transitions, planner success; ``(metrics, plans[S, G, T, 2],
    traces[S, M, T + 1, 2], skills[M, D])``."""
    env, params = learner.skill_env, learner.skill_env.env.default_params()
    skills = env.sample_skills(jax.random.fold_in(key, 0), (config.r2_rollouts,))
    steps = config.planner.steps_per_skill * config.planner.num_replans

    def one_seed(state, dyn, k):
        r2_key, plan_key = jax.random.split(k)
        traces = skill_trajectories(learner.make_policy(state, cfg_of(learner, config)), env,
                                    params, skills, r2_key, config.episode_steps)
        s, ds = traces[:, :-1], traces[:, 1:] - traces[:, :-1]
        z = jnp.broadcast_to(skills[:, None], s.shape[:2] + skills.shape[1:])
        mean = model.apply(dyn, s, z)[0]
        r2 = r_squared(ds.reshape(-1, 2), mean.reshape(-1, 2))
        act = learner.make_policy(state, cfg_of(learner, config), deterministic=True)
        predict = lambda s, z: model.apply(dyn, s, z)[0]
        plan = lambda g, pk: plan_to_goal(pk, act, env, params, predict, g, config.planner,
                                          to_skill, plan_size)
        paths = jax.vmap(plan)(goals, jax.random.split(plan_key, goals.shape[0]))
        dist = jnp.sqrt(jnp.sum((paths - goals[:, None]) ** 2, -1))  # [G, T + 1]
        closest = jnp.min(dist, axis=1)
        return dict(skill_dynamics_r2=r2,
                    mppi_goal_success=jnp.mean(closest < config.success_radius),
                    closest_goal_distance=jnp.mean(closest),
                    final_goal_distance=jnp.mean(dist[:, -1])), paths, traces

    keys = jax.random.split(key, config.num_seeds)
    metrics, paths, traces = jax.jit(jax.vmap(one_seed))(states, dyn_params, keys)
    assert paths.shape[2] == steps + 1
    return ({k: np.asarray(v, np.float64) for k, v in metrics.items()}, np.asarray(paths),
            np.asarray(traces), np.asarray(skills))


def cfg_of(learner, config: Config):
    return config.dads if isinstance(learner, DADS) else config.diayn


def plot_skills(path, traces, skills):
    fig = Figure(figsize=(4.5, 4.5))
    ax = fig.add_subplot()
    angle = (np.arctan2(skills[:, 1], skills[:, 0]) + np.pi) / (2 * np.pi)
    for trace, a in zip(traces, angle):
        ax.plot(trace[:, 0], trace[:, 1], lw=0.8, color=colormaps["hsv"](a))
    ax.plot(0, 0, "k*", ms=10)
    ax.set(aspect="equal", title="DADS skills (seed 0), colour = angle of z")
    plots._save(fig, path)


def plot_plans(path, plans: dict, goals, success_radius):
    fig = Figure(figsize=(4.5 * len(plans), 4.5))
    for i, (name, paths) in enumerate(plans.items()):
        ax = fig.add_subplot(1, len(plans), i + 1)
        for g, (p, goal) in enumerate(zip(paths, goals)):
            colour = colormaps["tab10"](g % 10)
            ax.plot(p[:, 0], p[:, 1], lw=1.2, color=colour)
            ax.add_patch(__import__("matplotlib.patches").patches.Circle(
                goal, success_radius, fill=False, color=colour))
        ax.plot(0, 0, "k*", ms=10)
        ax.set(aspect="equal", xlim=(-3.8, 3.8), ylim=(-3.8, 3.8),
               title=f"{name}: planned paths (seed 0)")
    plots._save(fig, path)


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    dads, dads_states = train_dads(run_dir, config, seed)
    diayn_config = diayn_experiment.Config(
        diayn=config.diayn, num_skills=config.diayn_skills, episode_steps=config.episode_steps,
        num_seeds=config.num_seeds, log_every=config.log_every,
        updates_per_chunk=config.updates_per_chunk,
        finetune=dataclasses.replace(diayn_experiment.Config.finetune,
                                     hidden_sizes=config.diayn.sac.hidden_sizes))
    diayn, diayn_states = diayn_experiment.train(run_dir, diayn_config, seed)

    key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    goals = held_out_goals(config, seed)
    dads_model = dads.dynamics(config.dads)
    dads_metrics, dads_plans, traces, skills = evaluate(
        dads, dads_states, dads_states.dyn_params, dads_model, config, goals, key,
        lambda x: jnp.clip(x, -1.0, 1.0), config.skill_size)

    diayn_model = SkillDynamics(2, tuple(config.dads.dyn_hidden), config.dads.min_std)
    fit = jax.jit(jax.vmap(lambda b, k: fit_dynamics(
        k, diayn_model, b, diayn.skill_env.base_obs_size, config.diayn_fit_steps,
        config.dads.dyn_batch)))
    diayn_dyn, _ = fit(diayn_states.sac.buffer,
                       jax.random.split(jax.random.fold_in(key, 3), config.num_seeds))
    one_hot = lambda x: jax.nn.one_hot(jnp.argmax(x, -1), config.diayn_skills)
    diayn_metrics, diayn_plans, _, _ = evaluate(diayn, diayn_states, diayn_dyn, diayn_model,
                                                config, goals, key, one_hot, config.diayn_skills)

    results = {"dads": {k: stats.seed_summary(v) for k, v in dads_metrics.items()},
               "diayn": {k: stats.seed_summary(v) for k, v in diayn_metrics.items()},
               "goals": np.asarray(goals).round(4).tolist()}
    results["skill_dynamics_r2"] = results["dads"]["skill_dynamics_r2"]["mean"]
    results["mppi_goal_success"] = results["dads"]["mppi_goal_success"]["mean"]
    if config.controller:
        results["meta_controller"] = meta_controller(run_dir, config, dads, dads_states, seed,
                                                     config.dads.sac, config.skill_size,
                                                     "uniform")

    plot_skills(run_dir / "skills.png", traces[0], skills)
    plot_plans(run_dir / "plans.png", {"DADS": dads_plans[0], f"DIAYN (K={config.diayn_skills})":
                                       diayn_plans[0]}, np.asarray(goals), config.success_radius)
    lines = phase_metrics(run_dir, "dads")
    plots.plot_curves(run_dir / "curves.png", {
        "skill-dynamics R^2 (train batches)": ([x["step"] for x in lines],
                                               [x["dyn_r2"] for x in lines])},
        xlabel="env steps (all seeds)", ylabel="R^2", title="DADS skill dynamics")
    rows = [dict(method=m, metric=k, mean=v["mean"],
                 ci95=v["ci95"] if v["ci95"] is not None else float("nan"))
            for m in ("dads", "diayn") for k, v in results[m].items()]
    return finish(run_dir, {"results": results}, format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
