"""Sim-to-real: PPO trained in MJX (nominal vs domain-randomized), deployed in MuJoCo C.

    python -m experiments.sim2real_cheetah --preset quick|cpu|cpu_seeds|accel [--seed N] [--out DIR]
    python -m experiments.sim2real_cheetah env=hopper          # Hopper-v5 instead of HalfCheetah-v5
    python -m experiments.sim2real_cheetah --resume runs/sim2real_cheetah/<timestamp>
    python -m experiments.sim2real_cheetah --preset accel --devices all   # seeds/envs split

Story: train PPO twice in MJX with the same seeds and budget -- once on nominal physics, once
with mass, friction, joint damping, actuator strength (one factor each for the whole robot, or
per body / dof / actuator with ``per_element_physics=True``), action latency and sensor noise
redrawn every episode inside the compiled program -- export both deterministic policies to
portable files (``.npz`` + JSON, numpy forward pass), then run those files in "the real world":
gymnasium's MuJoCo-C environment (another engine, float64, full solver) under a one-at-a-time
grid of perturbations (body mass, friction, actuator strength, action latency, sensor noise) that
reaches beyond the training ranges. ``privileged_critic=True``: an asymmetric actor-critic whose
critic also sees the episode's physics, latency and noise level (the exported actor does not).

Presets: ``quick`` (tests, ~1 min), ``cpu`` (1.02M steps per policy, one seed), ``cpu_seeds``
(5 vmapped seeds, 2.048M steps per policy per seed: issue #18's comparison, ~97 min on 2 cores;
docs/sim2real.md for results), ``accel`` (2048
envs, 4 seeds, 100M steps per policy, for a GPU; not run yet).

Writes to the run folder: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.nominal``
/ ``results.dr``: ``sim_return`` (MJX, nominal physics), ``real_nominal``, ``real_mean``,
``real_worst``, per-cell returns, ``per_seed``; over several seeds ``results.over_seeds``
(``{phase: {metric: {mean, ci95, per_seed}}}``), ``results.dr_minus_nominal`` (paired per-seed
differences, same form) and ``results.dr_vs_nominal`` (CI verdicts, DR's real_mean / nominal's);
``results.real_engine``; ``grid``), ``policies/<phase>.npz|json``,
``sim2real.png`` (return vs each perturbation, both policies), ``curves.png``, ``checkpoints/``
(``metarl_jax.load_run`` reads them back through ``policies(config)``).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import numpy as np

import envs
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.core.context_wrappers import ParamObservation
from metarl_jax.core.wrappers import ActionDelay, ObservationNoise
from metarl_jax.io import plots
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics
from metarl_jax.randomization.distributions import int_uniform, uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.scale import is_primary, mesh_size, run_mesh, sync
from metarl_jax.sim2real.deploy import RealWorld, summarize_real, sweep_grid
from metarl_jax.sim2real.export import export_ppo, load_policy
from metarl_jax.sim2real.report import plot_sweeps
from metarl_jax.stats import paired_comparison, seed_summary
from metarl_jax.transfer.evaluation import check_grid_axis, seed_evaluator
from metarl_jax.transfer.phases import phase_curves, train_ppo_phases

NAME = "sim2real_cheetah"
ROBOTS = {"halfcheetah": "HalfCheetah", "hopper": "Hopper"}  # config.env -> envs registry name


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "halfcheetah"
    ppo: PPOConfig = PPOConfig(num_envs=32, num_steps=128, total_steps=1_024_000, num_epochs=10,
                               num_minibatches=32, learning_rate=3e-4, reward_scale=0.1,
                               init_log_std=-0.5)
    num_seeds: int = 1
    updates_per_chunk: int = 10
    max_steps: int = 1000  # episode horizon in MJX and in the real engine (gymnasium's TimeLimit)
    solver_iterations: int = 4  # MJX constraint-solver caps (see envs/mjx_locomotion.py)
    ls_iterations: int = 4  # 8 before #18: 1.4x slower, and 4 is what test_mjx_envs checks
    max_delay: int = 2  # size of the MJX action-latency buffer (steps)
    # Training randomization (relative scales of the nominal). ``per_element_physics``: one
    # factor per body (mass), per dof (damping) and per actuator (strength), drawn independently;
    # False: one factor per quantity for the whole robot -- the form of the real-world grid's axes.
    per_element_physics: bool = False
    # Asymmetric actor-critic (both phases): the critic also sees the episode's physics, latency
    # and noise level (``ParamObservation``, each DR range mapped to [-1, 1]); the actor, and so
    # the exported policy, sees only the robot's observation. Needs whole-robot factors.
    privileged_critic: bool = False
    mass_scale: Tuple[float, float] = (0.6, 1.5)
    friction_scale: Tuple[float, float] = (0.4, 1.5)
    damping_scale: Tuple[float, float] = (0.7, 1.3)
    strength_scale: Tuple[float, float] = (0.5, 1.3)
    delay_steps: Tuple[int, int] = (0, 2)
    obs_noise_std: Tuple[float, float] = (0.0, 0.05)  # absolute std, drawn per episode
    # Real-world grid: one axis at a time around nominal (values beyond the training ranges too).
    eval_mass_scales: Tuple[float, ...] = (0.5, 0.75, 1.25, 1.5, 2.0)
    eval_friction_scales: Tuple[float, ...] = (0.25, 0.5, 1.5, 2.0)
    eval_strength_scales: Tuple[float, ...] = (0.5, 0.7, 1.3)
    eval_delays: Tuple[int, ...] = (1, 2)
    eval_noise_stds: Tuple[float, ...] = (0.05, 0.1)
    eval_episodes: int = 2  # per cell, in the real engine
    sim_eval_episodes: int = 4  # in MJX, nominal physics

    def __post_init__(self):
        if self.env not in ROBOTS:
            raise ValueError(f"env must be one of {', '.join(ROBOTS)}, got {self.env!r}")
        self.ppo.validate()
        check_at_least_one(self, ("num_seeds", "updates_per_chunk", "max_steps",
                                  "solver_iterations", "ls_iterations", "eval_episodes",
                                  "sim_eval_episodes"))
        for name in ("mass_scale", "friction_scale", "damping_scale", "strength_scale",
                     "delay_steps", "obs_noise_std"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {low},{high}")
        for name in ("eval_mass_scales", "eval_friction_scales", "eval_strength_scales"):
            check_grid_axis(name, getattr(self, name), "scale")
        if self.privileged_critic and self.per_element_physics:
            raise ValueError("privileged_critic needs per_element_physics=False (one factor per "
                             "quantity: the critic's inputs are those scalars)")
        if self.delay_steps[1] > self.max_delay:
            raise ValueError(f"delay_steps must be <= max_delay={self.max_delay}")
        # The real engine's latency buffer is sized per cell: no max_delay bound here.
        check_grid_axis("eval_delays", self.eval_delays, "delay")
        check_grid_axis("eval_noise_stds", self.eval_noise_stds, "nonnegative")


PRESETS = {
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=8, num_steps=32,
                                            total_steps=8 * 32 * 4, num_epochs=2,
                                            num_minibatches=2),
                    updates_per_chunk=2, max_steps=50, eval_mass_scales=(0.5, 2.0),
                    eval_friction_scales=(0.25,), eval_strength_scales=(0.5,), eval_delays=(2,),
                    eval_noise_stds=(0.1,), eval_episodes=1, sim_eval_episodes=1),
    "cpu": Config(),
    # Issue #18's comparison: 5 seeds vmapped in one program, each phase 2.048M env steps per seed
    # (twice the cpu preset: DR was still learning at 1.024M). 97.3 min wall (wall_time_s 5836)
    # on the 2-core EPYC, load ~1.5-4.5 (pre-registered run of 2026-12-03, docs/sim2real.md).
    "cpu_seeds": Config(ppo=dataclasses.replace(Config.ppo, total_steps=2_048_000), num_seeds=5),
    "accel": Config(ppo=dataclasses.replace(Config.ppo, num_envs=2048, num_steps=64,
                                            num_minibatches=32, total_steps=100_000_000),
                    num_seeds=4, updates_per_chunk=20, eval_episodes=8, sim_eval_episodes=16),
}


def training_space(config: Config, nominal):
    """Physics, latency and sensor noise, redrawn per episode (relative ranges; noise absolute).
    ``nominal``: ``nominal_params(config, env)``."""
    return make_param_space(nominal, {
        "body_mass_scale": uniform(*config.mass_scale, relative=True),
        "friction_scale": uniform(*config.friction_scale, relative=True),
        "damping_scale": uniform(*config.damping_scale, relative=True),
        "gear_scale": uniform(*config.strength_scale, relative=True),
        "action_delay": int_uniform(*config.delay_steps),
        "obs_noise_std": uniform(*config.obs_noise_std),
    })


def nominal_params(config: Config, env):
    """The env's nominal params; with ``per_element_physics=False`` the mass, damping and
    strength factors are scalars (one draw scales every body / dof / actuator alike: the same
    physics at 1.0, and both phases keep one params structure, so they share one program)."""
    nominal = env.default_params()
    if config.per_element_physics:
        return nominal
    one = np.float32(1.0)
    return nominal.replace(body_mass_scale=jax.numpy.asarray(one),
                           damping_scale=jax.numpy.asarray(one), gear_scale=jax.numpy.asarray(one))


PRIVILEGED_RANGES = (("body_mass_scale", "mass_scale"), ("friction_scale", "friction_scale"),
                     ("damping_scale", "damping_scale"), ("gear_scale", "strength_scale"),
                     ("action_delay", "delay_steps"), ("obs_noise_std", "obs_noise_std"))


def critic_view(config: Config, env):
    """``env`` with the privileged critic's inputs appended to its observation (module doc):
    every randomized Params field (``PRIVILEGED_RANGES``: the field and its DR range in
    ``config``; fixed ones are left out), normalized to [-1, 1] over its training range. The
    env itself when ``privileged_critic`` is off."""
    if not config.privileged_critic:
        return env
    ranges = [(field, getattr(config, name)) for field, name in PRIVILEGED_RANGES
              if getattr(config, name)[0] < getattr(config, name)[1]]
    if not ranges:
        raise ValueError("privileged_critic needs at least one randomized range")
    return ParamObservation(env, [f for f, _ in ranges], [float(r[0]) for _, r in ranges],
                            [float(r[1]) for _, r in ranges])


def real_grid(config: Config):
    return sweep_grid({"mass_scale": config.eval_mass_scales,
                       "friction_scale": config.eval_friction_scales,
                       "strength_scale": config.eval_strength_scales,
                       "action_delay": config.eval_delays,
                       "obs_noise_std": config.eval_noise_stds})


def policies(config: Config, robot=None):
    """The trained policies, rebuilt from ``config``: ``{phase: (PPO, learner config, init
    args)}``. ``main`` trains exactly these; ``metarl_jax.load_run`` restores them. ``robot``:
    the MJX env, if already built."""
    robot = robot or make_robot(config)
    env = critic_view(config, ObservationNoise(ActionDelay(robot, config.max_delay)))
    nominal = nominal_params(config, env)
    # Nominal = the same space with every range collapsed to the nominal point: one program.
    point = dataclasses.replace(config, mass_scale=(1.0, 1.0), friction_scale=(1.0, 1.0),
                                damping_scale=(1.0, 1.0), strength_scale=(1.0, 1.0),
                                delay_steps=(0, 0), obs_noise_std=(0.0, 0.0))
    # The actor reads the robot's observation (the first entries); with privileged_critic the
    # critic also reads the physics appended after it.
    ppo = PPO(env, actor_obs_size=robot.observation_size if config.privileged_critic else None)
    return {"nominal": (ppo, config.ppo, (training_space(point, nominal),)),
            "dr": (ppo, config.ppo, (training_space(config, nominal),))}


SEED_METRICS = ("sim_return", "real_nominal", "real_mean", "real_worst")


def seed_comparison(results: dict) -> dict:
    """Over-seed statistics of ``results[phase]["per_seed"]``: ``{"over_seeds": {phase: {metric:
    {mean, ci95, per_seed}}}, "dr_minus_nominal": {metric: {mean, ci95, per_seed}},
    "dr_vs_nominal": {...}}`` for ``SEED_METRICS``.

    Here ``real_worst`` is each seed's own worst cell, then averaged (the phase's top-level
    ``real_worst`` is the worst cell of the seed-averaged returns: at one seed the two agree).
    ``dr_minus_nominal``: the paired per-seed differences (both phases train from the same seed
    keys; ``stats.paired_comparison``, with its paired and CI verdicts). ``dr_vs_nominal``:
    ``ci_verdict`` of DR against nominal per metric ("better"/"worse" only when the two 95%
    intervals do not overlap; ``None`` at one seed) and DR's ``real_mean`` as a fraction of
    nominal's (of the over-seed means)."""
    over = {phase: {k: seed_summary([s[k] for s in results[phase]["per_seed"]])
                    for k in SEED_METRICS} for phase in ("nominal", "dr")}
    diff = {k: paired_comparison(over["dr"][k]["per_seed"], over["nominal"][k]["per_seed"])
            for k in SEED_METRICS}
    dr, nom = over["dr"], over["nominal"]
    verdicts = {k: diff[k]["ci_verdict"] for k in SEED_METRICS}
    ratio = dr["real_mean"]["mean"] / nom["real_mean"]["mean"] if nom["real_mean"]["mean"] else None
    return {"over_seeds": over, "dr_minus_nominal": diff,
            "dr_vs_nominal": dict(verdict=verdicts, real_mean_ratio=ratio)}


def make_robot(config: Config):
    return envs.make(ROBOTS[config.env], max_steps=config.max_steps,
                     solver_iterations=config.solver_iterations,
                     ls_iterations=config.ls_iterations)


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    robot = make_robot(config)
    trained = policies(config, robot)
    ppo = trained["dr"][0]
    env, nominal = ppo.env, nominal_params(config, ppo.env)
    spaces = {phase: space for phase, (_, _, (space,)) in trained.items()}
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    mesh = run_mesh(args.devices)  # --devices N: seeds (or each seed's envs) split over N
    states = train_ppo_phases(run_dir, {p: (ppo, space) for p, space in spaces.items()},
                              config.ppo, seed_keys, config.updates_per_chunk, mesh=mesh)

    # MJX return at nominal physics, all seeds at once (one compiled program for both phases).
    sim_returns = seed_evaluator(lambda s: ppo.make_policy(s, config.ppo, deterministic=True),
                                 env, jax.tree.map(lambda x: x[None], nominal),
                                 config.sim_eval_episodes, jax.random.fold_in(
                                     jax.random.PRNGKey(seed), 1))  # states -> [S, 1 cell]

    world = RealWorld(robot.gym_id, max_episode_steps=config.max_steps)
    cells = real_grid(config)
    results, per_cell = {}, {}
    for phase in spaces:
        sim = np.asarray(sim_returns(states[phase]))[:, 0]  # [S]
        names = [phase if config.num_seeds == 1 else f"{phase}_seed{s}"
                 for s in range(config.num_seeds)]
        for s, name in enumerate(names):
            if is_primary():  # one writer; every process evaluates what was written
                export_ppo(run_dir / "policies" / name, select_seed(states[phase], s),
                           config.ppo, robot.action_space, obs_layout=robot.observation_structure,
                           metadata={"env": ROBOTS[config.env], "real_env": robot.gym_id,
                                     "phase": phase, "seed": seed + s, "experiment": NAME})
        sync(f"{NAME}/{phase}/policies")
        seed_cells = []
        for name in names:
            policy = load_policy(run_dir / "policies" / name)  # evaluate what was written
            seed_cells.append(world.evaluate(policy, cells, config.eval_episodes, seed).mean(-1))
        seed_cells = np.asarray(seed_cells)  # [S, C]
        per_cell[phase] = seed_cells.mean(0)
        results[phase] = dict(
            sim_return=float(sim.mean()), **summarize_real(seed_cells.mean(0)[:, None]),
            per_seed=[dict(sim_return=float(r), **summarize_real(c[:, None]),
                           cell_returns=c.tolist())
                      for r, c in zip(sim, seed_cells)],
            cell_returns=per_cell[phase].tolist(),
            final_train_return=phase_metrics(run_dir, phase)[-1]["episode_return"],
        )
    world.close()
    results.update(seed_comparison(results))
    results["real_engine"] = robot.gym_id

    plot_sweeps(run_dir / "sim2real.png", cells, per_cell,
                title=f"{robot.gym_id} (MuJoCo C): trained in MJX, nominal vs DR")
    plots.plot_curves(run_dir / "curves.png", phase_curves(run_dir, spaces),
                      xlabel="env steps (all seeds)", ylabel="episode return (MJX)",
                      title=f"PPO on {robot.name}")
    grid = {"cells": [c.changed() for c in cells], "labels": [c.label() for c in cells]}
    table = format_table([dict(policy=p, **{k: results[p][k] for k in (
        "sim_return", "real_nominal", "real_mean", "real_worst", "final_train_return")})
        for p in spaces])
    return finish(run_dir, {"results": results, "grid": grid, "devices": mesh_size(mesh)}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
