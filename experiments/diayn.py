"""DIAYN: distinct skills on a 2-D point mass with no reward at all.

    python -m experiments.diayn --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.diayn --resume runs/diayn/<timestamp>

Story: a point starts at the origin of the plane (``envs.PointNav2D``; its goal reward is
ignored: DIAYN replaces it by ``log q(z|s') - log p(z)``). Train DIAYN (SAC on ``pi(a|s,z)`` plus
a discriminator ``q(z|s)`` over the x-y position) with ``K`` skills, ``num_seeds`` seeds in one
vmapped program. Then roll out every skill ``rollouts_per_skill`` times with the stochastic
policy and measure, per seed: the discriminator's accuracy on those states (chance is ``1/K``),
the mean pseudo-reward (ceiling ``ln K``), the coverage (entropy of the visited x-y bins, nats)
against a uniformly random policy's, and imitation by skill inference (``argmax_z sum_t log
q(z|s_t)`` recovers the skill of a held-out trajectory).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.<metric>``: mean, 95% CI
over seeds (``metarl_jax.stats``), per-seed values), ``skills.png`` (x-y traces of every skill,
one colour per skill, one panel per seed, beside a random policy's), ``curves.png``,
``checkpoints/``; ``results.skill_init``: policy initialization from a skill for a downstream
goal (PointNav2D's own reward): the best skill's actor with the skill built in, finetuned by SAC,
vs SAC from scratch (episode return a quarter into the budget and at its end);
``results.meta_controller``: a learned hierarchical meta-controller, PPO choosing a skill every
``controller_option_steps`` env steps on goal-conditioned navigation, vs flat PPO from scratch at
the same low-level budget (``experiments/_skill_controller.py``; ``controller_paths.png``). The
``accel`` preset
is sized for a GPU; DIAYN on MJX Ant/HalfCheetah needs their x-y position in the
discriminator's features and is not wired here.
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
from experiments._skill_controller import check_config as check_controller
from experiments._skill_controller import meta_controller
from metarl_jax import stats
from metarl_jax.algos.diayn import DIAYN, DIAYNConfig, binned_entropy, skill_trajectories
from metarl_jax.algos.ppo import PPOConfig
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.transfer.skills import actor_from_skill, infer_skill

NAME = "diayn"
PHASE = "diayn"


@dataclasses.dataclass(frozen=True)
class Config:
    diayn: DIAYNConfig = DIAYNConfig(
        sac=SACConfig(num_envs=8, total_steps=40_000, hidden_sizes=(64, 64), batch_size=128,
                      buffer_size=50_000, learning_starts=1000, utd=0.25, init_alpha=0.1),
        disc_hidden=(64, 64), disc_batch=128)
    num_skills: int = 6
    episode_steps: int = 50  # PointNav2D horizon (speed 0.1 per coordinate per step)
    num_seeds: int = 3
    log_every: int = 10  # updates averaged into one metrics line
    updates_per_chunk: int = 50  # metrics lines per compiled chunk
    rollouts_per_skill: int = 20
    coverage_bins: int = 20  # per axis, over [-coverage_range, coverage_range]^2
    coverage_range: float = 5.0
    # Using a skill downstream: PointNav2D's reward (-distance) to this goal; SAC initialized
    # from the best skill's actor (skill built in) vs from scratch, same budget and seeds.
    downstream_goal: Tuple[float, float] = (2.0, -1.5)
    finetune: SACConfig = SACConfig(num_envs=8, total_steps=8000, hidden_sizes=(64, 64),
                                    batch_size=128, buffer_size=20_000, learning_starts=0,
                                    utd=0.25, init_alpha=0.1)
    # A learned meta-controller (experiments/_skill_controller.py): PPO picking one of the K
    # skills every controller_option_steps env steps, goals U[-r, r]^2 in the observation, vs
    # flat PPO with this config at the same low-level budget (the controller's is derived).
    controller_option_steps: int = 5
    controller_goal_range: float = 3.0
    controller_eval_goals: int = 16
    controller_sampled_skills: bool = False  # skills act by tanh(mean) (False) or by sampling
    controller_ppo: PPOConfig = PPOConfig(num_envs=16, num_steps=50, total_steps=200_000,
                                          num_epochs=10, num_minibatches=4, hidden_sizes=(64, 64),
                                          init_log_std=-2.3, reward_scale=0.1)

    def __post_init__(self):
        self.diayn.validate()
        check_at_least_one(self, ("num_seeds", "log_every", "updates_per_chunk",
                                  "rollouts_per_skill", "episode_steps", "coverage_bins"))
        if self.num_skills < 2:
            raise ValueError(f"num_skills must be >= 2, got {self.num_skills}")
        if self.diayn.num_updates < self.log_every:
            raise ValueError(f"diayn.sac.total_steps gives {self.diayn.num_updates} updates, "
                             f"fewer than log_every={self.log_every}")
        self.finetune.validate()
        if tuple(self.finetune.hidden_sizes) != tuple(self.diayn.sac.hidden_sizes):
            raise ValueError("finetune.hidden_sizes must equal diayn.sac.hidden_sizes (the "
                             "finetuned actor starts from a skill's weights)")
        if self.finetune.num_updates < self.log_every:
            raise ValueError("finetune.total_steps gives fewer updates than log_every")
        check_controller(self.controller_ppo, self.controller_option_steps, self.episode_steps,
                         self.log_every)
        if not self.controller_goal_range > 0 or self.controller_eval_goals < 1:
            raise ValueError("controller_goal_range must be > 0 and controller_eval_goals >= 1")
        if not self.coverage_range > 0:
            raise ValueError(f"coverage_range must be > 0, got {self.coverage_range}")


PRESETS = {
    "quick": Config(diayn=dataclasses.replace(
        Config.diayn, sac=dataclasses.replace(Config.diayn.sac, total_steps=2400,
                                              learning_starts=400)),
        num_skills=4, num_seeds=1, updates_per_chunk=15, rollouts_per_skill=4,
        finetune=dataclasses.replace(Config.finetune, total_steps=800),
        controller_eval_goals=4, controller_ppo=dataclasses.replace(
            Config.controller_ppo, num_envs=4, num_steps=10, total_steps=400, num_epochs=2,
            num_minibatches=2)),
    "cpu": Config(),
    "accel": Config(diayn=dataclasses.replace(
        Config.diayn, sac=dataclasses.replace(Config.diayn.sac, num_envs=128, total_steps=1_000_000,
                                              hidden_sizes=(256, 256), utd=0.5)),
        num_skills=20, num_seeds=8,
        finetune=dataclasses.replace(Config.finetune, hidden_sizes=(256, 256))),
}


def train(run_dir, config: Config, seed: int, phase: str = PHASE):
    """DIAYN trained (or resumed) as the checkpointed phase ``phase``: ``(diayn, states[S])``."""
    env = PointNav2D(max_steps=config.episode_steps)
    diayn = DIAYN(env, config.num_skills, feature_size=2)
    space = fixed_space(env.default_params())
    keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    cfg = config.diayn
    states = train_phase(
        run_dir, phase, init=lambda: diayn.init_seeds(keys, cfg, space),
        chunk=lambda s, n: diayn.train_chunk_seeds(s, cfg, n, log_every=config.log_every),
        num_updates=cfg.num_updates // config.log_every,
        updates_per_chunk=config.updates_per_chunk,
        steps_per_update=cfg.steps_per_update * config.log_every * config.num_seeds,
        show=("disc_accuracy", "pseudo_reward"))
    return diayn, states


def evaluate(diayn: DIAYN, states, config: Config, key):
    """Per-seed rollouts of every skill: ``(metrics {name: [S]}, paths[S, K*R, T+1, 2],
    random_paths[K*R, T+1, 2])``."""
    env, params = diayn.skill_env, diayn.skill_env.env.default_params()
    num_k, reps, steps = config.num_skills, config.rollouts_per_skill, config.episode_steps
    skills = jnp.repeat(jnp.eye(num_k), reps, axis=0)  # [K*R, K]
    labels = jnp.repeat(jnp.arange(num_k), reps)

    def one_seed(state, k):
        act = diayn.make_policy(state, config.diayn)
        paths = skill_trajectories(act, env, params, skills, k, steps)  # [K*R, T+1, 2]
        logits = diayn.discriminator(config.diayn).apply(state.disc_params, paths[:, 1:])
        pred = jnp.argmax(logits, -1)
        log_q = jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None, None], -1)
        return paths, dict(discriminator_accuracy=jnp.mean(pred == labels[:, None]),
                           mean_pseudo_reward=jnp.mean(log_q) + jnp.log(num_k),
                           skill_inference_accuracy=jnp.mean(infer_skill(logits) == labels))

    seed_keys = jax.random.split(key, config.num_seeds + 1)
    paths, metrics = jax.jit(jax.vmap(one_seed))(states, seed_keys[1:])
    low, high = diayn.sac.low, diayn.sac.high
    random_act = lambda k, obs: jax.random.uniform(k, (2,), minval=low, maxval=high)
    random_paths = jax.jit(lambda k: skill_trajectories(random_act, env, params, skills, k,
                                                        steps))(seed_keys[0])
    metrics = {k: np.asarray(v, np.float64) for k, v in metrics.items()}
    grid = (-config.coverage_range, config.coverage_range, config.coverage_bins)
    metrics["state_coverage"] = np.array([binned_entropy(p, *grid) for p in np.asarray(paths)])
    metrics["random_policy_coverage"] = np.full(config.num_seeds,
                                                binned_entropy(np.asarray(random_paths), *grid))
    return metrics, np.asarray(paths), np.asarray(random_paths)


def finetune_from_skill(run_dir, config: Config, diayn: DIAYN, states, seed: int) -> dict:
    """Policy init from a skill: per seed, the skill whose (deterministic) episode has the best
    downstream return, its actor with the skill built in (``actor_from_skill``), finetuned by
    SAC; against SAC from scratch with the same seeds, budget and critic initialization."""
    env = PointNav2D(max_steps=config.episode_steps)
    task = env.default_params().replace(goal=jnp.asarray(config.downstream_goal, jnp.float32))
    skill_env, num_k, steps = diayn.skill_env, config.num_skills, config.episode_steps

    def skill_returns(state, k):
        act = diayn.make_policy(state, config.diayn, deterministic=True)
        paths = skill_trajectories(act, skill_env, task, jnp.eye(num_k), k, steps)
        return -jnp.sum(jnp.linalg.norm(paths[:, 1:] - task.goal, axis=-1), axis=-1)  # [K]

    key = jax.random.fold_in(jax.random.PRNGKey(seed), 4)
    returns = jax.jit(jax.vmap(skill_returns))(states, jax.random.split(key, config.num_seeds))
    best = jnp.argmax(returns, axis=-1)  # [S]
    actors = jax.vmap(lambda p, k: actor_from_skill(p, jax.nn.one_hot(k, num_k), 2))(
        states.sac.params["actor"], best)
    sac, cfg, space = SAC(env), config.finetune, fixed_space(task)
    keys = jax.random.split(jax.random.fold_in(key, 1), config.num_seeds)

    def init(from_skill):
        fresh = sac.init_seeds(keys, cfg, space)
        if not from_skill:
            return fresh
        return fresh.replace(params=dict(fresh.params, actor=actors))

    finals = {}
    for phase in ("finetune_skill", "finetune_scratch"):
        train_phase(run_dir, phase, init=lambda: init(phase == "finetune_skill"),
                    chunk=lambda s, n: sac.train_chunk_seeds(s, cfg, n, log_every=config.log_every),
                    num_updates=cfg.num_updates // config.log_every,
                    updates_per_chunk=config.updates_per_chunk,
                    steps_per_update=cfg.steps_per_update * config.log_every * config.num_seeds)
        lines = phase_metrics(run_dir, phase)
        early = lines[len(lines) // 4]  # a quarter into the budget
        finals[phase] = {"first": early["episode_return_per_seed"]
                         if config.num_seeds > 1 else [early["episode_return"]],
                         "last": lines[-1]["episode_return_per_seed"]
                         if config.num_seeds > 1 else [lines[-1]["episode_return"]]}
    return dict(
        selected_skill_per_seed=np.asarray(best).tolist(),
        zero_shot_skill_return=stats.seed_summary(np.asarray(returns).max(-1)),
        skill_init_return_quarter_budget=stats.seed_summary(finals["finetune_skill"]["first"]),
        scratch_return_quarter_budget=stats.seed_summary(finals["finetune_scratch"]["first"]),
        skill_init_return=stats.seed_summary(finals["finetune_skill"]["last"]),
        scratch_return=stats.seed_summary(finals["finetune_scratch"]["last"]),
        budget_env_steps=cfg.total_steps, goal=list(config.downstream_goal))




def plot_skills(path, paths, random_paths, config: Config, titles):
    colours = [plots_colour(i) for i in range(config.num_skills)]
    panels = list(paths) + [random_paths]
    fig = Figure(figsize=(4.0 * len(panels), 4.0))
    lim = config.coverage_range
    for i, p in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for j, trace in enumerate(p):
            skill = j // config.rollouts_per_skill
            colour = colours[skill] if i < len(paths) else "grey"
            ax.plot(trace[:, 0], trace[:, 1], lw=0.8, alpha=0.7, color=colour)
        ax.plot(0, 0, "k*", ms=10)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
               title=titles[i] if i < len(paths) else "uniformly random policy")
    plots._save(fig, path)


def plots_colour(i: int):
    from matplotlib import colormaps

    return colormaps["tab20" if i >= 10 else "tab10"](i % 20)


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    diayn, states = train(run_dir, config, seed)
    metrics, paths, random_paths = evaluate(diayn, states, config,
                                            jax.random.fold_in(jax.random.PRNGKey(seed), 1))
    results = {k: stats.seed_summary(v) for k, v in metrics.items()}
    results["num_skills"] = config.num_skills
    results["chance_accuracy"] = 1.0 / config.num_skills
    results["pseudo_reward_ceiling"] = float(np.log(config.num_skills))

    results["skill_init"] = finetune_from_skill(run_dir, config, diayn, states, seed)
    results["meta_controller"] = meta_controller(run_dir, config, diayn, states, seed,
                                                 config.diayn.sac, config.num_skills)

    titles = [f"seed {s}: accuracy {metrics['discriminator_accuracy'][s]:.2f}"
              for s in range(config.num_seeds)]
    plot_skills(run_dir / "skills.png", paths, random_paths, config, titles)
    lines = phase_metrics(run_dir, PHASE)
    steps = [line["step"] for line in lines]
    plots.plot_curves(run_dir / "curves.png", {
        "discriminator accuracy (train batches)": (steps, [x["disc_accuracy"] for x in lines]),
        "pseudo-reward / ln K": (steps, [x["pseudo_reward"] / np.log(config.num_skills)
                                         for x in lines]),
    }, xlabel="env steps (all seeds)", ylabel="", title=f"DIAYN, K={config.num_skills}")
    table = format_table([dict(metric=k, mean=v["mean"],
                               ci95=v["ci95"] if v["ci95"] is not None else float("nan"))
                          for k, v in results.items() if isinstance(v, dict) and "mean" in v]
                         + [dict(metric=f"skill_init.{k}", mean=v["mean"],
                                 ci95=v["ci95"] if v["ci95"] is not None else float("nan"))
                            for k, v in results["skill_init"].items() if isinstance(v, dict)]
                         + [dict(metric=f"meta_controller.{k}", mean=v["mean"],
                                 ci95=v["ci95"] if v["ci95"] is not None else float("nan"))
                            for k, v in results["meta_controller"].items()
                            if isinstance(v, dict)])
    return finish(run_dir, {"results": results}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
