"""Maximum-entropy RL keeps every way of solving a task: SAC on the four-goal point mass.

    python -m experiments.maxent_multigoal --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.maxent_multigoal --resume runs/maxent_multigoal/<timestamp>
    python -m experiments.maxent_multigoal --preset accel --devices all   # SAC over devices

Story: the soft Q-learning paper's 2-D point mass (Haarnoja et al. 2017; ``envs.MultiGoal2D``)
starts at the origin with four equally rewarding goals at (+-5, 0) and (0, +-5). Train SAC with
automatic temperature (``sac_auto``), SAC with a fixed temperature that keeps entropy
(``sac_fixed``), and a low-entropy baseline (SAC with a tiny fixed temperature, ``low_entropy``),
same seeds and budget; then run 1000 rollouts of each stochastic policy from the start and count
which goal each reaches. A goal counts as reached by a policy if >= ``goal_fraction`` (5%) of the
rollouts end there. The fixed-temperature methods share one compiled program (the temperature is
data); ``sac_auto`` compiles its own (``autotune`` is static).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.<method>.goals_reached``:
mean over seeds, with ``goals_reached_per_seed``, ``goal_histogram`` summed over seeds and per
seed, keys ``goal_0..3`` and ``none``), ``trajectories.png`` (rollouts of seed 0 coloured by the
goal they reach), ``curves.png`` and ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from envs.multigoal import MultiGoal2D
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.io import plots
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.load import Phase
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.scale import mesh_size, run_mesh, sharded, to_host

NAME = "maxent_multigoal"
METHODS = ("sac_auto", "sac_fixed", "low_entropy")


@dataclasses.dataclass(frozen=True)
class Config:
    # reward_scale 0.1 as soft Q-learning's multigoal example (costs are O(100) per episode).
    sac: SACConfig = SACConfig(num_envs=8, total_steps=16_000, hidden_sizes=(64, 64),
                               batch_size=256, buffer_size=100_000, learning_starts=1000,
                               reward_scale=0.1)
    methods: Tuple[str, ...] = METHODS
    maxent_alpha: float = 1.0  # sac_fixed's temperature
    low_alpha: float = 1e-3  # low_entropy's temperature
    num_seeds: int = 3
    log_every: int = 10  # updates averaged into one metrics line
    updates_per_chunk: int = 50  # metrics lines per compiled chunk
    eval_rollouts: int = 1000
    goal_fraction: float = 0.05
    plot_rollouts: int = 200

    def __post_init__(self):
        self.sac.validate()
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, got {self.methods}")
        check_at_least_one(self, ("num_seeds", "log_every", "updates_per_chunk", "eval_rollouts",
                                  "plot_rollouts"))
        if self.sac.num_updates < self.log_every:
            raise ValueError(f"sac.total_steps gives {self.sac.num_updates} updates, fewer than "
                             f"log_every={self.log_every}")
        if not 0 < self.goal_fraction <= 1:
            raise ValueError(f"goal_fraction must be in (0, 1], got {self.goal_fraction}")
        if not (self.maxent_alpha > 0 and self.low_alpha > 0):
            raise ValueError("maxent_alpha and low_alpha must be > 0")


PRESETS = {
    "quick": Config(sac=dataclasses.replace(Config.sac, total_steps=2400, learning_starts=800),
                    num_seeds=1, updates_per_chunk=10, eval_rollouts=200, plot_rollouts=50),
    "cpu": Config(),
    "accel": Config(sac=dataclasses.replace(Config.sac, num_envs=64, total_steps=200_000,
                                            hidden_sizes=(256, 256), learning_starts=5000),
                    num_seeds=8),
}


def method_config(config: Config, method: str) -> SACConfig:
    if method == "sac_auto":
        return config.sac.replace(autotune=True)
    alpha = config.maxent_alpha if method == "sac_fixed" else config.low_alpha
    return config.sac.replace(autotune=False, init_alpha=alpha)


def rollouts(sac: SAC, env: MultiGoal2D, states, config: SACConfig, num: int, key):
    """Stochastic rollouts from the start for every seed: ``(goal[S, num] int, -1 = none;
    positions[S, num, T + 1, 2])``."""
    params = env.default_params()

    def one_episode(actor_params, obs_stats, k):
        reset_key, k = jax.random.split(k)
        state, obs = env.reset(reset_key, params)

        def step(carry, _):
            k, state, goal, alive = carry
            k, act_key = jax.random.split(k)
            action = sac.act(actor_params, obs_stats, config, act_key, state.position)
            state, _, _, done, info = env.step(act_key, state, action, params)
            goal = jnp.where(alive & (info["goal"] >= 0), info["goal"], goal)
            return (k, state, goal, alive & ~done), (state.position, alive)

        init = (k, state, jnp.int32(-1), jnp.bool_(True))
        (_, _, goal, _), (path, alive) = jax.lax.scan(step, init, None, length=env.max_steps)
        path = jnp.where(alive[:, None], path, jnp.nan)  # nothing drawn after the episode ends
        return goal, jnp.concatenate([obs[None], path])

    keys = jax.random.split(key, num)
    per_seed = jax.vmap(one_episode, in_axes=(None, None, 0))
    goals, paths = jax.jit(jax.vmap(per_seed, in_axes=(0, 0, None)))(
        states.params["actor"], states.obs_stats, keys)
    return np.asarray(goals), np.asarray(paths)


def histogram(goals: np.ndarray) -> dict:
    out = {f"goal_{g}": int((goals == g).sum()) for g in range(4)}
    out["none"] = int((goals < 0).sum())
    return out


def plot_trajectories(path, paths: dict, goals: dict, titles: dict, goal_positions: np.ndarray):
    colours = ["tab:red", "tab:blue", "tab:green", "tab:orange"]
    fig = Figure(figsize=(4.2 * len(paths), 4.2))
    for i, method in enumerate(paths):
        ax = fig.add_subplot(1, len(paths), i + 1)
        for p, g in zip(paths[method], goals[method]):
            ax.plot(p[:, 0], p[:, 1], lw=0.7, alpha=0.6, color=colours[g] if g >= 0 else "grey")
        for g, (x, y) in enumerate(goal_positions):
            ax.add_patch(Circle((x, y), 1.0, fill=False, color=colours[g], lw=2))
        ax.set(xlim=(-7, 7), ylim=(-7, 7), aspect="equal", title=titles[method])
    plots._save(fig, path)


def policies(config: Config):
    """``{method: Phase(SAC, method config, (space,))}``: what ``main`` trains and
    ``metarl_jax.load_run`` restores (checkpoints count logged blocks of ``log_every``)."""
    env = MultiGoal2D()
    sac, space = SAC(env), fixed_space(env.default_params())
    lines = config.sac.num_updates // config.log_every
    return {m: Phase(sac, method_config(config, m), (space,), num_updates=lines)
            for m in config.methods}


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    sac, _, (space,) = policies(config)[config.methods[0]][:3]
    env = sac.env
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    num_lines = config.sac.num_updates // config.log_every

    # --devices N: the seeds, or each seed's envs, replay buffer and batches, split over N
    # devices (metarl_jax.scale.ShardedSAC); one wrapper, so the methods share its programs.
    mesh = run_mesh(args.devices)
    trainer, states = sharded(sac, mesh), {}
    for method in config.methods:
        cfg = method_config(config, method)
        states[method] = to_host(train_phase(
            run_dir, method,
            init=lambda: trainer.init_seeds(seed_keys, cfg, space),
            chunk=lambda s, n: trainer.train_chunk_seeds(s, cfg, n, log_every=config.log_every),
            num_updates=num_lines, updates_per_chunk=config.updates_per_chunk,
            steps_per_update=cfg.steps_per_update * config.log_every * config.num_seeds,
            show=("episode_return", "entropy"),
        ))

    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    results, plot_paths, plot_goals = {}, {}, {}
    min_count = config.goal_fraction * config.eval_rollouts
    for method in config.methods:
        goals, paths = rollouts(sac, env, states[method], method_config(config, method),
                                config.eval_rollouts, eval_key)
        per_seed = [histogram(g) for g in goals]
        reached = [sum(h[f"goal_{i}"] >= min_count for i in range(4)) for h in per_seed]
        last = phase_metrics(run_dir, method)[-1]
        results[method] = dict(
            goals_reached=float(np.mean(reached)), goals_reached_per_seed=reached,
            goal_histogram=histogram(goals), goal_histogram_per_seed=per_seed,
            final_train_return=last["episode_return"], final_alpha=last["alpha"],
            final_entropy=last["entropy"])
        plot_paths[method] = paths[0, :config.plot_rollouts]
        plot_goals[method] = goals[0, :config.plot_rollouts]

    titles = {m: f"{m}: {results[m]['goals_reached_per_seed'][0]} goals (seed 0)"
              for m in config.methods}
    plot_trajectories(run_dir / "trajectories.png", plot_paths, plot_goals, titles,
                      np.asarray(env.default_params().goals))
    plots.plot_curves(run_dir / "curves.png", {
        m: ([line["step"] for line in phase_metrics(run_dir, m)],
            [line["episode_return"] for line in phase_metrics(run_dir, m)])
        for m in config.methods
    }, xlabel="env steps (all seeds)", ylabel="episode return", title="SAC on MultiGoal2D")
    table = format_table([dict(method=m, goals_reached=results[m]["goals_reached"],
                               **results[m]["goal_histogram"],
                               final_alpha=results[m]["final_alpha"],
                               final_return=results[m]["final_train_return"])
                          for m in config.methods])
    return finish(run_dir, {"results": results, "min_rollouts_per_goal": min_count,
                            "devices": mesh_size(mesh)}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
