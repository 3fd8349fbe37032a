"""MAML-TRPO vs ProMP vs a pretrained policy on 2-D point navigation (Finn et al. 2017, sec. 5.3).

    python -m experiments.maml_nav2d --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.maml_nav2d --resume runs/maml_nav2d/<timestamp>
    python -m experiments.maml_nav2d --preset accel --devices all   # meta-batch over devices

Story: a point starts at the origin and must reach a hidden goal ``~ U[-0.5, 0.5]^2`` (velocity
actions clipped to +-0.1, reward = -distance, 100 steps; staying still scores about -38). Three
learners, each one compiled program per meta-iteration (tasks, rollouts, inner policy-gradient
step, post-adaptation rollouts, outer update):

* ``maml``: MAML-TRPO, the inner step's estimator ``maml.estimator`` (``pg`` is the original
  MAML's, ``dice`` the unbiased one), trust region on the post-adaptation KL;
* ``promp``: ProMP, LVC inner estimator, clipped surrogate with an adaptive KL penalty;
* ``pretrained``: one policy trained by TRPO on random goals (MAML with zero inner steps).

All three are then adapted on ``eval_goals`` held-out goals with the same inner step (the
``maml`` config's estimator and rate for the baseline), 0..``eval_steps`` times.

Writes: ``summary.json`` (``results.returns_by_steps.<method>``: mean return after 0..S inner
steps, ``results.returns_ci95``, ``results.final_train``), ``trajectories.png`` (paths before and
after adaptation for a few goals), ``curves.png``, ``metrics.jsonl``, ``config.json``,
``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from envs.point_nav import PointNav2D
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.scale import mesh_size, run_mesh
from metarl_jax.transfer.few_shot import (
    held_out_tasks,
    meta_phases,
    plot_meta_training,
    returns_by_steps,
    steps_table_rows,
    train_meta_phases,
)

NAME = "maml_nav2d"
METHODS = ("maml", "promp", "pretrained")
_SHARED = dict(hidden_sizes=(32, 32), init_log_std=-3.0, inner_lr=0.01, meta_batch_size=20,
               episodes_per_task=20)


@dataclasses.dataclass(frozen=True)
class Config:
    maml: MAMLRLConfig = MAMLRLConfig(outer="trpo", estimator="pg", **_SHARED)
    promp: MAMLRLConfig = MAMLRLConfig(outer="promp", estimator="lvc", **_SHARED)
    pretrained: MAMLRLConfig = MAMLRLConfig(outer="trpo", estimator="pg", num_inner_steps=0,
                                            **_SHARED)
    maml_iterations: int = 100
    promp_iterations: int = 200
    pretrained_iterations: int = 100
    updates_per_chunk: int = 5
    goal_range: float = 0.5  # goals ~ U[-goal_range, goal_range]^2
    eval_goals: int = 100
    eval_steps: int = 3
    plot_goals: int = 4

    def __post_init__(self):
        for method in METHODS:
            getattr(self, method).validate()
        if self.pretrained.num_inner_steps != 0:
            raise ValueError("pretrained.num_inner_steps must be 0 (it is trained on all goals)")
        check_at_least_one(self, ("maml_iterations", "promp_iterations", "pretrained_iterations",
                                  "updates_per_chunk", "eval_goals", "eval_steps", "plot_goals"))
        if not self.goal_range > 0:
            raise ValueError(f"goal_range must be > 0, got {self.goal_range}")


_TINY = dict(meta_batch_size=8, episodes_per_task=8)
PRESETS = {
    "quick": Config(maml=dataclasses.replace(Config.maml, cg_iters=5, **_TINY),
                    promp=dataclasses.replace(Config.promp, **_TINY),
                    pretrained=dataclasses.replace(Config.pretrained, cg_iters=5, **_TINY),
                    maml_iterations=4, promp_iterations=4, pretrained_iterations=2,
                    updates_per_chunk=2, eval_goals=16, plot_goals=3),
    "cpu": Config(),
    "accel": Config(maml=dataclasses.replace(Config.maml, meta_batch_size=40,
                                             hidden_sizes=(64, 64)),
                    promp=dataclasses.replace(Config.promp, meta_batch_size=40,
                                              hidden_sizes=(64, 64)),
                    pretrained=dataclasses.replace(Config.pretrained, meta_batch_size=40,
                                                   hidden_sizes=(64, 64)),
                    maml_iterations=500, promp_iterations=1000, pretrained_iterations=300,
                    updates_per_chunk=10, eval_goals=400),
}


def eval_config(config: Config, method: str) -> MAMLRLConfig:
    """The config a method adapts with: its own, except that the baseline uses MAML's step."""
    mconfig = getattr(config, method)
    if method == "pretrained":
        return mconfig.replace(estimator=config.maml.estimator, inner_lr=config.maml.inner_lr)
    return mconfig


def plot_trajectories(path, goals: np.ndarray, positions: dict, num_steps: int) -> None:
    """Rows: methods; columns: 0..num_steps inner steps; one sampled path per goal."""
    fig = Figure(figsize=(3.0 * (num_steps + 1), 3.0 * len(positions)), layout="constrained")
    axes = fig.subplots(len(positions), num_steps + 1, squeeze=False)
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    # One square window for every panel that holds every path and goal (paths of a barely
    # trained policy wander past the goals; a fixed window cut them off).
    extent = max(0.7, float(np.abs(goals).max()), *(float(np.abs(p).max())
                                                    for p in positions.values()))
    lim = 1.05 * extent
    for row, (method, pos) in enumerate(positions.items()):  # pos: [G, S+1, T, N, 2]
        for step in range(num_steps + 1):
            ax = axes[row, step]
            for g, goal in enumerate(goals):
                c = colors[g % len(colors)]
                path_xy = np.concatenate([np.zeros((1, 2)), pos[g, step, :, 0]])
                ax.plot(path_xy[:, 0], path_xy[:, 1], "-", color=c, lw=1)
                ax.plot(*goal, "*", color=c, ms=12, mec="k")
            ax.plot(0, 0, "ko", ms=4)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_title(f"{method}: {step} inner step{'s' if step != 1 else ''}", fontsize=9)
    fig.suptitle("one sampled path per goal (star: goal, dot: start)")
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100, bbox_inches="tight")


def policies(config: Config):
    """``{method: Phase(MAMLRL, method config, (goal space,))}``: what ``main`` trains;
    ``metarl_jax.load_run`` restores them (``act`` is the pre-adaptation meta-policy)."""
    env = PointNav2D(max_steps=100)
    space = make_param_space(env.default_params(),
                             {"goal": uniform(-config.goal_range, config.goal_range)})
    return meta_phases(MAMLRL(env), config, space, METHODS)


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    phases = policies(config)
    learner, _, (space,) = phases[METHODS[0]][:3]
    base_key = jax.random.PRNGKey(seed)
    # --devices N: each update's meta-batch of tasks split over N devices (metarl_jax.scale).
    mesh = run_mesh(args.devices)
    states = train_meta_phases(run_dir, phases, base_key, config.updates_per_chunk, mesh=mesh)

    goals, rollout_key = held_out_tasks(space, base_key, config.eval_goals)
    by_steps, ci95, final, positions = {}, {}, {}, {}
    for method in METHODS:
        returns, pos = learner.evaluate(states[method].meta, eval_config(config, method), goals,
                                        rollout_key, config.eval_steps)
        by_steps[method], ci95[method] = returns_by_steps(returns)  # returns: [G, S+1]
        positions[method] = np.asarray(pos[:config.plot_goals])
        last = phase_metrics(run_dir, method)[-1]
        final[method] = {"return_pre": last["return_pre"], "return_post": last["return_post"]}

    plot_trajectories(run_dir / "trajectories.png", np.asarray(goals.goal[:config.plot_goals]),
                      positions, config.eval_steps)
    plot_meta_training(run_dir / "curves.png", run_dir, METHODS, ylabel="mean return",
                       title="training on PointNav2D goals")
    rows = steps_table_rows({m: by_steps[m] for m in METHODS})
    results = {"returns_by_steps": by_steps, "returns_ci95": ci95, "final_train": final}
    return finish(run_dir, {"results": results, "eval_goals": config.eval_goals,
                            "devices": mesh_size(mesh)}, format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
