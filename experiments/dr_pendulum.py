"""Domain randomization vs nominal training on Pendulum, evaluated on held-out physics.

    python -m experiments.dr_pendulum --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.dr_pendulum --resume runs/dr_pendulum/<timestamp>
    python -m experiments.dr_pendulum --preset accel --devices all   # seeds / envs over devices

Story: train PPO twice with the same seeds and budget -- once on the nominal pendulum, once with
mass, length, gravity, max torque and action latency redrawn every episode inside the compiled
program -- then evaluate both deterministic policies on a grid of (mass, length, latency) that
training never saw, including masses and lengths outside the randomization range. Both phases
share one compiled program: the randomization distribution is data (a ``ParamSpace``), not code.

Writes to the run folder: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.nominal``
and ``results.dr`` with ``heldout_mean`` / ``heldout_worst`` / ``heldout_cvar10``, per-seed
numbers and the per-cell returns; ``grid`` lists the cells), ``heatmap.png`` (return over mass x
length, averaged over latencies), ``curves.png`` (training return), ``policies/nominal|dr.npz|json``
(the deterministic policies, numpy forward pass; ``<phase>_seed<i>`` with several seeds) and
``checkpoints/`` (``metarl_jax.load_run`` reads them back through ``policies(config)``);
``summary.json``'s ``devices`` is how many devices trained (``--devices``).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax

from envs.pendulum import Pendulum
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.core.wrappers import ActionDelay
from metarl_jax.io import plots
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics
from metarl_jax.randomization.distributions import int_uniform, uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.scale import mesh_size, run_mesh
from metarl_jax.transfer.evaluation import (
    check_grid_axis,
    grid_params,
    seed_evaluator,
    summarize_seeds,
)
from metarl_jax.transfer.phases import export_policies, phase_curves, train_ppo_phases

NAME = "dr_pendulum"


@dataclasses.dataclass(frozen=True)
class Config:
    ppo: PPOConfig = PPOConfig(num_envs=64, num_steps=200, total_steps=2_560_000, num_epochs=10,
                               num_minibatches=16, learning_rate=1e-3, reward_scale=0.1)
    num_seeds: int = 2
    updates_per_chunk: int = 10
    max_delay: int = 3  # size of the action-latency buffer (steps)
    # Training randomization: relative scales of the nominal m, l, g, max_torque; delay in steps.
    mass_scale: Tuple[float, float] = (0.5, 2.0)
    length_scale: Tuple[float, float] = (0.6, 1.5)
    gravity_scale: Tuple[float, float] = (0.8, 1.2)
    torque_scale: Tuple[float, float] = (0.8, 1.2)
    delay_steps: Tuple[int, int] = (0, 2)
    # Held-out grid (mass and length as scales of the nominal, latency in steps).
    eval_mass_scales: Tuple[float, ...] = (0.3, 0.7, 1.3, 1.8, 2.4)
    eval_length_scales: Tuple[float, ...] = (0.4, 0.8, 1.2, 1.7)
    eval_delays: Tuple[int, ...] = (0, 1, 3)
    eval_episodes: int = 8

    def __post_init__(self):
        self.ppo.validate()
        check_at_least_one(self, ("num_seeds", "updates_per_chunk", "eval_episodes"))
        for name in ("mass_scale", "length_scale", "gravity_scale", "torque_scale", "delay_steps"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"{name} must be a range 0 <= low <= high, got {low},{high}")
        if self.delay_steps[1] > self.max_delay:
            raise ValueError(f"delay_steps must be <= max_delay={self.max_delay}")
        check_grid_axis("eval_mass_scales", self.eval_mass_scales, "scale")
        check_grid_axis("eval_length_scales", self.eval_length_scales, "scale")
        check_grid_axis("eval_delays", self.eval_delays, "delay", max_value=self.max_delay)


PRESETS = {
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=32, total_steps=32 * 200 * 12),
                    num_seeds=1, updates_per_chunk=4, eval_mass_scales=(0.5, 1.5, 2.4),
                    eval_length_scales=(0.6, 1.4), eval_delays=(0, 3), eval_episodes=2),
    "cpu": Config(),
    "accel": Config(ppo=dataclasses.replace(Config.ppo, num_envs=2048, num_minibatches=32,
                                            total_steps=100_000_000), num_seeds=8,
                    updates_per_chunk=20, eval_episodes=32),
}


def randomized_space(config: Config, nominal):
    return make_param_space(nominal, {
        "m": uniform(*config.mass_scale, relative=True),
        "l": uniform(*config.length_scale, relative=True),
        "g": uniform(*config.gravity_scale, relative=True),
        "max_torque": uniform(*config.torque_scale, relative=True),
        "action_delay": int_uniform(*config.delay_steps),
    })


def policies(config: Config):
    """The trained policies, rebuilt from ``config``: ``{phase: (learner, learner config,
    init args)}``. ``main`` trains exactly these; ``metarl_jax.load_run`` restores them."""
    env = ActionDelay(Pendulum(), config.max_delay)
    nominal = env.default_params()
    # The nominal space has the same structure with every range collapsed to the nominal point,
    # so both phases run the very same compiled program (the distribution is data).
    point = dataclasses.replace(config, mass_scale=(1.0, 1.0), length_scale=(1.0, 1.0),
                                gravity_scale=(1.0, 1.0), torque_scale=(1.0, 1.0),
                                delay_steps=(0, 0))
    ppo = PPO(env)
    return {"nominal": (ppo, config.ppo, (randomized_space(point, nominal),)),
            "dr": (ppo, config.ppo, (randomized_space(config, nominal),))}


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    phases = policies(config)
    ppo = phases["dr"][0]
    env, nominal = ppo.env, ppo.env.default_params()
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    # --devices N: the seeds (or each seed's envs) split over N devices; several processes:
    # over all of theirs. The same numbers up to float reduction order (metarl_jax.scale).
    # Several processes: each gets (and evaluates) its own whole copy of the states.
    mesh = run_mesh(args.devices)
    states = train_ppo_phases(run_dir, {p: (ppo, space) for p, (_, _, (space,)) in phases.items()},
                              config.ppo, seed_keys, config.updates_per_chunk, mesh=mesh)
    export_policies(run_dir, states, config.ppo, env.action_space,  # process 0 writes
                    metadata={"env": "Pendulum", "max_delay": config.max_delay,
                              "experiment": NAME, "seed": seed})

    axes = {"m": config.eval_mass_scales, "l": config.eval_length_scales,
            "action_delay": config.eval_delays}
    grid, cells = grid_params(nominal, axes, relative=("m", "l"))
    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    results, heatmaps = {}, {}
    shape = tuple(len(v) for v in axes.values())
    policy_of = lambda state: ppo.make_policy(state, config.ppo, deterministic=True)
    # One evaluator for both phases: one compile (their states share one structure).
    evaluate = seed_evaluator(policy_of, env, grid, config.eval_episodes, eval_key)
    for phase in phases:
        per_seed = jax.device_get(evaluate(states[phase]))  # [S, C], deterministic policy
        results[phase] = dict(
            summarize_seeds(per_seed),
            final_train_return=phase_metrics(run_dir, phase)[-1]["episode_return"])
        heatmaps[phase] = per_seed.mean(0).reshape(shape).mean(-1)  # average over latencies

    plots.plot_heatmaps(run_dir / "heatmap.png", heatmaps,  # plots: process 0 writes
                        x_values=config.eval_length_scales, y_values=config.eval_mass_scales,
                        xlabel="length scale", ylabel="mass scale",
                        title="held-out return (mean over latencies)",
                        colorbar_label="episode return")
    plots.plot_curves(run_dir / "curves.png", phase_curves(run_dir, phases),
                      xlabel="env steps (all seeds)", ylabel="episode return",
                      title="PPO on Pendulum")
    grid_info = {name: values.tolist() for name, values in cells.items()}
    grid_info["relative"] = ["m", "l"]
    table = format_table([dict(policy=p, **{k: results[p][k] for k in (
        "heldout_mean", "heldout_worst", "heldout_cvar10", "final_train_return")})
        for p in phases])
    return finish(run_dir, {"results": results, "grid": grid_info,
                            "devices": mesh_size(mesh)}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
