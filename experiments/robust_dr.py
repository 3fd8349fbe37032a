"""Robust and adaptive domain randomization: DR vs EPOpt vs MRPO vs ADR (Pendulum / MJX cheetah).

    python -m experiments.robust_dr --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.robust_dr --preset cpu env=halfcheetah ...   # the MJX robot instead
    python -m experiments.robust_dr --resume runs/robust_dr/<timestamp>

Story: four PPO learners with the same seeds, network and sample budget, differing only in how
physics (pendulum mass and length) enter training. ``dr`` draws them uniformly from a box every
episode; ``epopt`` (Rajeswaran et al. 2017) does the same but, after a warm start, updates only on
the worst epsilon-fraction of episodes; ``mrpo`` (Jiang et al. 2021) keeps the worst 10% plus the
episodes whose return beats them by more than a parameter-distance penalty; ``adr`` (OpenAI et
al. 2019) starts from the nominal physics and widens each range while the policy copes at its
boundary, up to the DR box. Every learner is one compiled program: the selection rules and range
updates run inside it. All four are then evaluated, deterministically, on a held-out
(mass x length) grid that reaches outside the training box; ``heldout_cvar10`` (mean of the
worst 10% of cells) measures robustness.

Envs (``env=``): ``pendulum`` (pure JAX; axes: the pendulum's mass ``m`` and length ``l``) and
``halfcheetah`` (MJX; axes: one mass factor on every body, ``body_mass_scale`` as a scalar, and
the global friction factor ``friction_scale``; one episode = ``ppo.num_steps`` steps, so every env
still plays exactly one episode per update, as the selection hooks need).

Presets: ``quick`` (tests, ~1 min), ``cpu`` (Pendulum, 2 seeds x 2.56M steps per method, 256
envs x 50 updates, about 13 minutes on a shared 2-core CPU), ``accel`` (MJX HalfCheetah for a
GPU: 2048 envs x 250-step episodes, 4 seeds, 61M steps per method; its ADR thresholds and MRPO
coefficient are scaled to HalfCheetah's returns but untuned; not run yet), ``accel_pendulum``
(the large pure-JAX run: 2048 envs, 8 seeds, 49M steps per method), ``quick_mjx`` (tests: the
MJX path with EPOpt only, tiny; ADR's range updates are env-agnostic and tested on Pendulum).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.<method>`` with
``heldout_mean`` / ``heldout_worst`` / ``heldout_cvar10`` over the whole grid, the same numbers
over the cells inside the training box (``inbox``), per-seed numbers, per-cell returns and
the training ``curve``; ``grid``; ``compiles``), ``curves.png`` (training return, mean and worst
10%), ``heatmap.png``, ``policies/<method>.npz|json`` (deterministic policies, numpy forward pass;
``<method>_seed<i>`` with several seeds) and ``checkpoints/`` (``metarl_jax.load_run`` reads them
back through ``policies(config)``).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.pendulum import Pendulum
from metarl_jax.algos.epopt import EPOpt
from metarl_jax.algos.mrpo import MRPO
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics
from metarl_jax.randomization.adr import ADR, make_adr_space
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.randomization.robust import PlainDR
from metarl_jax.transfer.evaluation import (
    check_grid_axis,
    evaluate_seeds,
    grid_params,
    summarize_grid,
    summarize_seeds,
)
from metarl_jax.transfer.phases import export_policies, train_ppo_phases

NAME = "robust_dr"
METHODS = ("dr", "epopt", "mrpo", "adr")
ENVS = ("pendulum", "halfcheetah")


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "pendulum"  # or "halfcheetah" (MJX)
    methods: Tuple[str, ...] = METHODS
    # num_steps must be the episode length (200): every env plays one whole episode per update.
    # 256 envs = 256 sampled physics per iteration, close to EPOpt's N = 240, so that the
    # epsilon = 0.1 tail holds ~26 trajectories (with 128 envs, 13: too few, see the README).
    ppo: PPOConfig = PPOConfig(num_envs=256, num_steps=200, total_steps=2_560_000, num_epochs=10,
                               num_minibatches=32, learning_rate=1e-3, reward_scale=0.1)
    num_seeds: int = 2
    updates_per_chunk: int = 10
    mass_scale: Tuple[float, float] = (0.5, 2.0)  # training box, scales of the nominal mass
    length_scale: Tuple[float, float] = (0.6, 1.5)  # pendulum: length
    friction_scale: Tuple[float, float] = (0.5, 1.5)  # halfcheetah: friction
    epopt_epsilon: float = 0.1
    epopt_warmup_frac: float = 0.4  # fraction of updates with epsilon = 1 (EPOpt's warm start)
    # MRPO's discrepancy coefficient, return units per unit of range-normalized L1 distance (the
    # authors' kappa0 = 1 keeps every Pendulum episode: MRPO would be DR; see algos/mrpo.py).
    mrpo_kappa0: float = 100.0
    mrpo_growth: float = 1.01
    adr_t_low: float = -800.0  # return thresholds at a boundary: shrink below, widen above
    adr_t_high: float = -400.0
    adr_delta: float = 0.05  # boundary step, as a fraction of the nominal value
    adr_p_boundary: float = 0.5
    adr_buffer: int = 16
    eval_mass_scales: Tuple[float, ...] = (0.3, 0.7, 1.0, 1.5, 2.0, 2.5)
    eval_length_scales: Tuple[float, ...] = (0.4, 0.8, 1.2, 1.5, 1.8)
    eval_friction_scales: Tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0)
    eval_episodes: int = 8

    def __post_init__(self):
        self.ppo.validate()
        if self.env not in ENVS:
            raise ValueError(f"env must be one of {ENVS}, got {self.env!r}")
        if not self.methods or any(m not in METHODS for m in self.methods):
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, "
                             f"got {self.methods}")
        if self.env == "pendulum" and self.ppo.num_steps != Pendulum().max_steps:
            raise ValueError(f"ppo.num_steps must be the episode length {Pendulum().max_steps} "
                             f"(one episode per env per update), got {self.ppo.num_steps}")
        check_at_least_one(self, ("num_seeds", "updates_per_chunk", "eval_episodes", "adr_buffer"))
        if self.ppo.num_updates % self.updates_per_chunk:
            raise ValueError(f"updates_per_chunk={self.updates_per_chunk} must divide the "
                             f"{self.ppo.num_updates} updates (one compile per method)")
        for name in ("mass_scale", "length_scale", "friction_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= 1.0 <= high:
                raise ValueError(f"{name} must be a range 0 < low <= 1 <= high, got {low},{high}")
        if not 0 < self.epopt_epsilon <= 1 or not 0 <= self.epopt_warmup_frac <= 1:
            raise ValueError("need 0 < epopt_epsilon <= 1 and 0 <= epopt_warmup_frac <= 1")
        for name in ("eval_mass_scales", "eval_length_scales", "eval_friction_scales"):
            check_grid_axis(name, getattr(self, name), "scale")
        if not self.adr_t_low < self.adr_t_high:
            raise ValueError(f"need adr_t_low < adr_t_high, got {self.adr_t_low}, "
                             f"{self.adr_t_high}")


PRESETS = {
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=32, total_steps=32 * 200 * 8,
                                            num_minibatches=8),
                    num_seeds=1, updates_per_chunk=4, eval_mass_scales=(0.5, 2.5),
                    eval_length_scales=(0.6, 1.8), eval_episodes=2),
    "cpu": Config(),
    "accel_pendulum": Config(ppo=dataclasses.replace(Config.ppo, num_envs=2048,
                                                     num_minibatches=32,
                                                     total_steps=2048 * 200 * 120),
                             num_seeds=8, updates_per_chunk=20, adr_buffer=64, eval_episodes=32),
    "accel": Config(env="halfcheetah",
                    ppo=dataclasses.replace(Config.ppo, num_envs=2048, num_steps=250,
                                            total_steps=2048 * 250 * 120, num_minibatches=32,
                                            learning_rate=3e-4, init_log_std=-0.5),
                    num_seeds=4, updates_per_chunk=5, mass_scale=(0.7, 1.5),
                    mrpo_kappa0=100.0, adr_t_low=300.0, adr_t_high=700.0, adr_buffer=64,
                    eval_mass_scales=(0.5, 0.75, 1.0, 1.5, 2.0), eval_episodes=4),
    "quick_mjx": Config(env="halfcheetah", methods=("epopt",),
                        ppo=dataclasses.replace(Config.ppo, num_envs=8, num_steps=20,
                                                total_steps=8 * 20 * 4, num_epochs=2,
                                                num_minibatches=2),
                        num_seeds=1, updates_per_chunk=2, eval_mass_scales=(0.5, 2.0),
                        eval_friction_scales=(0.5,), eval_episodes=1),
}


def make_env(config: Config):
    """``(env, nominal params, {field: (training box, held-out values)})`` for ``config.env``.

    Both axes are scale factors of scalar ``Params`` fields. HalfCheetah's per-body mass vector
    is replaced by one scalar factor (``apply_physics`` broadcasts it over the bodies): the
    robust-selection hooks and ADR act on scalar fields."""
    if config.env == "pendulum":
        env = Pendulum()
        axes = {"m": (config.mass_scale, config.eval_mass_scales),
                "l": (config.length_scale, config.eval_length_scales)}
        return env, env.default_params(), axes
    from envs.half_cheetah import HalfCheetah  # MuJoCo loads only for this env

    env = HalfCheetah(max_steps=config.ppo.num_steps, ls_iterations=8)
    nominal = env.default_params().replace(body_mass_scale=jnp.float32(1.0))
    axes = {"body_mass_scale": (config.mass_scale, config.eval_mass_scales),
            "friction_scale": (config.friction_scale, config.eval_friction_scales)}
    return env, nominal, axes


def build(config: Config, nominal, axes):
    """The methods: ``{name: (hook, space)}``; ADR's ranges are in value units."""
    box = {f: training_box for f, (training_box, _) in axes.items()}
    space = make_param_space(nominal, {f: uniform(*box[f], relative=True) for f in box})
    base = {f: float(getattr(nominal, f)) for f in box}
    width = [(box[f][1] - box[f][0]) * base[f] for f in box]
    adr_space = make_adr_space(
        nominal, {f: (box[f][0] * base[f], box[f][1] * base[f]) for f in box},
        delta={f: config.adr_delta * base[f] for f in box}, p_boundary=config.adr_p_boundary,
        t_low=config.adr_t_low, t_high=config.adr_t_high, buffer_size=config.adr_buffer)
    warmup = int(round(config.epopt_warmup_frac * config.ppo.num_updates))
    methods = {
        "dr": (PlainDR(), space),
        "epopt": (EPOpt(config.epopt_epsilon, warmup), space),
        "mrpo": (MRPO(tuple(box), width, config.mrpo_kappa0, config.mrpo_growth), space),
        "adr": (ADR(), adr_space),
    }
    return {m: methods[m] for m in config.methods}


def policies(config: Config, env_nominal_axes=None):
    """The trained policies, rebuilt from ``config``: ``{method: (PPO with the method's hook,
    learner config, init args)}``. ``main`` trains exactly these; ``metarl_jax.load_run``
    restores them. ``env_nominal_axes``: ``make_env(config)``'s result, if already built."""
    env, nominal, env_axes = env_nominal_axes or make_env(config)
    return {m: (PPO(env, robust=hook), config.ppo, (space,))
            for m, (hook, space) in build(config, nominal, env_axes).items()}


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    env, nominal, env_axes = make_env(config)
    (name1, (box1, values1)), (name2, (box2, values2)) = env_axes.items()
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    axes = {name1: values1, name2: values2}
    grid, cells = grid_params(nominal, axes, relative=(name1, name2))
    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    inbox = ((cells[name1] >= box1[0]) & (cells[name1] <= box1[1])
             & (cells[name2] >= box2[0]) & (cells[name2] <= box2[1]))

    phases = {m: (ppo, space) for m, (ppo, _, (space,))
              in policies(config, (env, nominal, env_axes)).items()}
    states = train_ppo_phases(run_dir, phases, config.ppo, seed_keys, config.updates_per_chunk,
                              show=("train_return_mean", "train_return_cvar10"))
    export_policies(run_dir, states, config.ppo, env.action_space,
                    metadata={"env": config.env, "experiment": NAME, "seed": seed})
    results, heatmaps, compiles, curves = {}, {}, {}, {}
    for method, (ppo, _) in phases.items():
        state = states[method]
        compiles[method] = ppo.traces.get("train_chunk_seeds", 0)  # 0: finished before a resume
        policy_of = lambda s: ppo.make_policy(s, config.ppo, deterministic=True)
        per_seed = evaluate_seeds(policy_of, state, env, grid, config.eval_episodes, eval_key)
        cell_mean = per_seed.mean(0)  # per_seed: [S, C]
        lines = phase_metrics(run_dir, method)
        curve = {k: [line[k] for line in lines] for k in ("step", "train_return_mean",
                                                    "train_return_cvar10")}
        results[method] = dict(summarize_seeds(per_seed), inbox=summarize_grid(cell_mean[inbox]),
                               curve=curve, final_train_return=curve["train_return_mean"][-1])
        if method == "adr":  # the ranges ADR reached, mean over seeds (value units)
            low, high = np.asarray(state.space.low), np.asarray(state.space.high)  # [S, D]
            results[method]["final_ranges"] = {
                f: [float(low[:, i].mean()), float(high[:, i].mean())]
                for i, f in enumerate(state.space.fields)}
        heatmaps[method] = cell_mean.reshape(len(values1), len(values2))
        curves[method] = (curve["step"], curve["train_return_mean"])
        curves[f"{method} worst 10%"] = (curve["step"], curve["train_return_cvar10"])

    title = "Pendulum" if config.env == "pendulum" else "HalfCheetah (MJX)"
    plots.plot_heatmaps(run_dir / "heatmap.png", heatmaps, x_values=values2, y_values=values1,
                        xlabel=f"{name2} (x nominal)", ylabel=f"{name1} (x nominal)",
                        title=f"{title}: held-out return per cell",
                        colorbar_label="episode return")
    # A method's worst-10% curve: its mean curve's colour, dashed.
    styles = {f"{m} worst 10%": {"color": f"C{i}", "linestyle": "--"}
              for i, m in enumerate(phases)}
    styles.update({m: {"color": f"C{i}"} for i, m in enumerate(phases)})
    plots.plot_curves(run_dir / "curves.png", curves, xlabel="env steps (all seeds)",
                      ylabel="training episode return",
                      title=f"{title}: mean and worst-10% training return", styles=styles)
    grid_info = {name: values.tolist() for name, values in cells.items()}
    grid_info["relative"] = [name1, name2]
    table = format_table([dict(method=m, **{k: results[m][k] for k in (
        "heldout_mean", "heldout_worst", "heldout_cvar10")}, inbox_mean=results[m]["inbox"][
        "heldout_mean"], inbox_cvar10=results[m]["inbox"]["heldout_cvar10"],
        final_train_return=results[m]["final_train_return"]) for m in config.methods])
    return finish(run_dir, {"results": results, "grid": grid_info, "compiles": compiles}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
