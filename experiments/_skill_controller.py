"""The learned hierarchical meta-controller of ``experiments.diayn`` and ``experiments.dads`` (#17
item 3, the third use of skills): PPO choosing one of DIAYN's ``K`` frozen skills (or a DADS
skill vector in ``[-1, 1]^D``, a Gaussian head) every ``option_steps`` env steps
(``transfer.skill_options.SkillOptions``; skills executed by the deterministic SAC actor,
``tanh(mean)``, or sampled with ``controller_sampled_skills``) against flat PPO from scratch on
the same downstream task, at the same number of low-level env steps, seeds vmapped.

Downstream task (fixed before any run): ``PointNav2D`` with the goal in the observation
(``[x, y, gx, gy]``; the skills see ``[x, y]`` only), goals ``U[-r, r]^2`` drawn per episode,
reward ``-distance`` per low-level step, ``episode_steps`` steps. Both learners use the same
``PPOConfig``; the controller's is derived from it (``controller_config``): ``num_steps`` and
``total_steps`` divided by ``k`` (the same episodes per update and the same low-level budget),
``gamma ** k`` per option (the flat learner's per-step discount). Evaluation: the deterministic
policies on ``eval_goals`` goals drawn once from the training distribution with a fixed key, the
same for both, and a uniformly random choice of skills; return = the sum of the 50 low-level
rewards. ``skill_end_radius_*``: the distance from the start after each skill alone for a whole
episode (mean and max over the ``K`` skills), i.e. how far the skills can take the point.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from envs.point_nav import PointNav2D
from metarl_jax import stats
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.io import plots
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.transfer.skill_options import (
    SkillOptionParams,
    SkillOptions,
    SkillOptionSpace,
    sac_policy_params,
    sac_skill_policy,
)

PHASES = {"controller": "meta_controller", "flat": "flat_ppo"}


def controller_config(flat: PPOConfig, option_steps: int, action_ratio: float = 1.0
                      ) -> PPOConfig:
    """The high-level learner's config: ``flat``'s, per option instead of per env step;
    ``action_ratio``: the controller's action range over the env's (continuous skills), which
    scales the initial Gaussian std to explore the same fraction of the range."""
    return dataclasses.replace(flat, num_steps=flat.num_steps // option_steps,
                               total_steps=flat.total_steps // option_steps,
                               gamma=flat.gamma ** option_steps,
                               init_log_std=flat.init_log_std + math.log(action_ratio)
                               ).validate()


def check_config(flat: PPOConfig, option_steps: int, episode_steps: int, log_every: int):
    """``ValueError`` unless both learners' configs are consistent (called by the Config)."""
    if option_steps < 1 or episode_steps % option_steps:
        raise ValueError(f"controller_option_steps={option_steps} must divide "
                         f"episode_steps={episode_steps}")
    if flat.num_steps % option_steps or flat.total_steps % (option_steps * flat.batch_size):
        raise ValueError("controller_ppo.num_steps and total_steps / num_steps must be "
                         f"multiples of controller_option_steps={option_steps}")
    high = controller_config(flat.validate(), option_steps)
    if high.num_updates < log_every:
        raise ValueError("controller_ppo gives fewer updates than log_every")


def goal_episodes(act, env, params, key, num_steps: int):
    """One deterministic-start episode per task of ``params[C]`` (no auto-reset): ``(returns
    [C], positions [C, num_steps + 1, 2])`` -- the x-y after every (high-level) step."""

    def one(p, k):
        state, obs = env.reset(k, p)

        def step(carry, step_key):
            state, obs, total = carry
            act_key, env_key = jax.random.split(step_key)
            state, obs, reward, _, _ = env.step(env_key, state, act(act_key, obs), p)
            return (state, obs, total + reward), obs[:2]

        (_, _, total), path = jax.lax.scan(step, (state, obs, jnp.float32(0)),
                                           jax.random.split(k, num_steps))
        return total, jnp.concatenate([obs[None, :2], path])

    num = jax.tree.leaves(params)[0].shape[0]
    return jax.vmap(one)(params, jax.random.split(key, num))


def meta_controller(run_dir, config: Any, learner, states, seed: int, sac_config,
                    skill_size: int, prior: str = "categorical") -> dict:
    """Train the controller and the flat baseline (two checkpointed phases), evaluate both on
    the same goals; ``results.meta_controller`` (module doc) and ``controller_paths.png``.

    ``learner``: the skill learner (``DIAYN`` or ``DADS``: its ``.sac`` acts), ``states[S]`` its
    trained states (``.sac``), ``sac_config`` their SAC config; ``skill_size`` and ``prior`` as
    ``SkillOptions`` (``"uniform"``: continuous skills in ``[-1, 1]^D``, a Gaussian PPO head)."""
    k, steps, r = config.controller_option_steps, config.episode_steps, config.controller_goal_range
    env = PointNav2D(max_steps=steps, goal_in_obs=True)
    goals = make_param_space(env, {"goal": uniform([-r, -r], [r, r])})
    deterministic = not config.controller_sampled_skills
    options = SkillOptions(env, sac_skill_policy(learner.sac, sac_config, deterministic),
                           skill_size, k, prior, skill_obs_size=2)
    continuous = prior == "uniform"
    policies = sac_policy_params(states.sac)  # [S, ...]: each seed drives its own skills
    flat_cfg = config.controller_ppo
    ratio = 1.0 / float(env.default_params().max_speed) if continuous else 1.0
    cfgs = {"controller": controller_config(flat_cfg, k, ratio), "flat": flat_cfg}
    learners = {"controller": PPO(options), "flat": PPO(env)}
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 6)
    keys = jax.random.split(key, config.num_seeds)

    def init(name):
        ppo, cfg = learners[name], cfgs[name]
        if name == "flat":
            return ppo.init_seeds(keys, cfg, goals)
        spaces = [SkillOptionSpace(goals, jax.tree.map(lambda x: x[i], policies))
                  for i in range(config.num_seeds)]
        return jax.tree.map(lambda *xs: jnp.stack(xs),
                            *[ppo.init(kk, cfg, sp) for kk, sp in zip(keys, spaces)])

    trained, curves = {}, {}
    for name, phase in PHASES.items():
        ppo, cfg = learners[name], cfgs[name]
        low_steps = cfg.batch_size * (k if name == "controller" else 1)
        trained[name] = train_phase(
            run_dir, phase, init=lambda: init(name),
            chunk=lambda s, n: ppo.train_chunk_seeds(s, cfg, n, log_every=config.log_every),
            num_updates=cfg.num_updates // config.log_every,
            updates_per_chunk=config.updates_per_chunk,
            steps_per_update=low_steps * config.log_every * config.num_seeds)
        lines = phase_metrics(run_dir, phase)
        per_seed = lambda line: (line["episode_return_per_seed"] if config.num_seeds > 1
                                 else [line["episode_return"]])
        curves[name] = ([line["step"] / config.num_seeds for line in lines],
                        [line["episode_return"] for line in lines],
                        per_seed(lines[len(lines) // 4]), per_seed(lines[-1]))

    eval_goals = goals.sample(jax.random.fold_in(key, 1), (config.controller_eval_goals,))
    eval_key = jax.random.fold_in(key, 2)

    def evaluate(state, policy):
        flat = learners["flat"].make_policy(state["flat"], cfgs["flat"], deterministic=True)
        high = learners["controller"].make_policy(state["controller"], cfgs["controller"],
                                                  deterministic=True)
        num = config.controller_eval_goals
        option_params = SkillOptionParams(eval_goals, jax.tree.map(
            lambda x: jnp.broadcast_to(x, (num,) + x.shape), policy))
        rand = ((lambda kk, obs: jax.random.uniform(kk, (skill_size,), minval=-1.0, maxval=1.0))
                if continuous else lambda kk, obs: jax.random.randint(kk, (), 0, skill_size))
        return {"flat": goal_episodes(flat, env, eval_goals, eval_key, steps),
                "controller": goal_episodes(high, options, option_params, eval_key, steps // k),
                "random_skills": goal_episodes(rand, options, option_params, eval_key,
                                               steps // k)}

    out = jax.device_get(jax.jit(jax.vmap(evaluate))(trained, policies))

    def skill_ends(policy):  # where each skill alone leads from the start: x-y [K, 2]
        params = jax.tree.map(lambda x: x[None], SkillOptionParams(goals.nominal, policy))
        end = lambda z: goal_episodes(lambda kk, obs: z, options, params, eval_key,
                                      steps // k)[1][0, -1]
        # categorical: every skill; continuous: the 2 D corners +-e_i of the skill box's axes
        fixed = (jnp.concatenate([jnp.eye(skill_size), -jnp.eye(skill_size)]) if continuous
                 else jnp.arange(skill_size))
        return jax.vmap(end)(fixed)

    reach = np.linalg.norm(np.asarray(jax.jit(jax.vmap(skill_ends))(policies)), axis=-1)
    returns = {name: np.asarray(ret).mean(-1) for name, (ret, _) in out.items()}  # [S]
    final_dist = {name: np.linalg.norm(np.asarray(path)[:, :, -1] - np.asarray(eval_goals.goal),
                                       axis=-1).mean(-1) for name, (_, path) in out.items()}
    results = dict(
        option_steps=k, skill_size=skill_size, prior=prior,
        budget_env_steps=flat_cfg.total_steps,
        goal_range=r, eval_goals=config.controller_eval_goals,
        skill_policy="deterministic" if deterministic else "sampled",
        controller_train_return_quarter_budget=stats.seed_summary(curves["controller"][2]),
        flat_train_return_quarter_budget=stats.seed_summary(curves["flat"][2]),
        controller_train_return=stats.seed_summary(curves["controller"][3]),
        flat_train_return=stats.seed_summary(curves["flat"][3]),
        **{f"{name}_eval_return": stats.seed_summary(v) for name, v in returns.items()},
        **{f"{name}_final_distance": stats.seed_summary(v) for name, v in final_dist.items()},
        # Each skill held for a whole episode from the start: how far the skills take the point.
        skill_end_radius_mean=stats.seed_summary(reach.mean(-1)),
        skill_end_radius_max=stats.seed_summary(reach.max(-1)))
    for when in ("train_return_quarter_budget", "train_return", "eval_return"):
        a, b = results[f"controller_{when}"], results[f"flat_{when}"]
        if a["ci95"] is not None:
            results[f"verdict_{when}"] = stats.ci_verdict(a["mean"], a["ci95"], b["mean"],
                                                          b["ci95"])
    plot_paths(run_dir / "controller_paths.png", out, np.asarray(eval_goals.goal), curves, r)
    return results


def plot_paths(path, out, goals, curves, goal_range: float, num_goals: int = 6):
    """Seed 0's paths to the first ``num_goals`` eval goals (controller: x-y at every skill
    switch; flat PPO) beside both learning curves (mean over seeds)."""
    fig = Figure(figsize=(12.0, 4.5))
    colours = [f"C{i}" for i in range(num_goals)]
    for col, name in enumerate(("controller", "flat")):
        ax = fig.add_subplot(1, 3, col + 1)
        paths = np.asarray(out[name][1])[0]  # seed 0: [C, T+1, 2]
        for g in range(min(num_goals, len(goals))):
            ax.plot(paths[g, :, 0], paths[g, :, 1], "-o" if name == "controller" else "-",
                    ms=3, lw=1.2, color=colours[g])
            ax.plot(*goals[g], "*", ms=12, color=colours[g], mec="k")
        lim = goal_range + 2.0
        ax.plot(0, 0, "k+", ms=10)
        ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal",
               title="meta-controller over the skills (dots: skill switches)"
               if name == "controller" else "flat PPO from scratch")
    ax = fig.add_subplot(1, 3, 3)
    for name, (x, y, _, _) in curves.items():
        ax.plot(x, y, label=name)
    ax.set(xlabel="low-level env steps per seed", ylabel="episode return (train goals)")
    ax.legend()
    plots._save(fig, path)
