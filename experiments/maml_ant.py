"""MAML-TRPO on MJX Ant direction / goal tasks vs a pretrained policy (Finn 2017, sec. 5.3).

    python -m experiments.maml_ant --preset quick|cpu|accel [--task dir|goal] [--seed N]
                                   [--out DIR] [field=value ...]
    python -m experiments.maml_ant --resume runs/maml_ant/<timestamp>
    python -m experiments.maml_ant --preset accel --devices all   # meta-batch over devices
    python -m experiments.maml_ant --preset accel num_seeds=5     # 5 seeds in one program

Story (the MAML paper's ant tasks): the ant must walk forward or backward (``--task dir``:
``envs.AntDir``, direction angle in {0, pi}, reward ``v_xy . (cos a, sin a)`` + healthy - costs)
or to a goal position ``~ U[-3, 3]^2`` (``--task goal``: ``envs.AntGoal``, reward
``-|xy - goal|_1`` + healthy - costs), the task drawn per meta-batch entry and hidden from the
policy. The methods, training and evaluation are ``experiments.maml_cheetah``'s (MAML-TRPO vs
a TRPO policy pretrained on all tasks and adapted with MAML's inner step), on the Ant; unlike
``maml_cheetah``'s ``cpu`` preset this one keeps TRPO (``maml.outer=promp maml.estimator=lvc
pretrained.outer=promp`` switches to ProMP; not yet measured on the Ant).

Presets: ``quick`` (tests: 2 iterations on 4 tasks x 2 episodes x 20 steps), ``cpu`` (8 tasks
x 8 episodes x 100 steps, 32x32 policy, 100 meta-iterations per method), ``accel`` (the paper's
scale: 40 tasks x 20 episodes x 200 steps, 2x100 ReLU policy, 500 iterations).

Writes: ``summary.json`` (``results.returns_by_steps.<method>``: mean return per episode after
0..S inner steps over ``eval_tasks`` held-out tasks; ``results.returns_ci95``;
``results.returns_per_task``; ``results.paired_over_tasks``: ``maml_cheetah.paired_gains``;
``results.final_train``; ``results.task``; dir: ``results.direction_velocity_by_steps`` (mean
velocity along the task's direction); with ``num_seeds=S``, per seed under ``results.per_seed``
and over seeds as ``maml_cheetah``'s), ``curves.png``, ``metrics.jsonl``, ``config.json``,
``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import ClassVar, Tuple

import numpy as np

from experiments import maml_cheetah as cheetah
from metarl_jax.algos.maml_rl import MAMLRL
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.experiment import finish
from metarl_jax.transfer.few_shot import meta_phases, plot_meta_training

NAME = "maml_ant"
METHODS = cheetah.METHODS
TASKS = ("dir", "goal")
# obs = (qpos[2:] [13], qvel [14], contact forces [78]); qvel[0:2]: the torso's xy velocity
XY_VELOCITY = slice(13, 15)


@dataclasses.dataclass(frozen=True)
class Config(cheetah.LocomotionMetaConfig):
    TASKS: ClassVar[Tuple[str, ...]] = TASKS
    task: str = "dir"
    maml_iterations: int = 100
    pretrained_iterations: int = 100


def _scaled(config: Config, sizes: dict, **fields) -> Config:
    """``config`` with both methods' ``MAMLRLConfig`` resized by ``sizes`` and ``fields`` set."""
    return dataclasses.replace(config, maml=config.maml.replace(**sizes),
                               pretrained=config.pretrained.replace(**sizes), **fields)


_TINY = dict(meta_batch_size=4, episodes_per_task=2, cg_iters=3, max_backtracks=5)
_PAPER = dict(meta_batch_size=40, episodes_per_task=20, hidden_sizes=(100, 100),
              activation="relu")
PRESETS = {
    "quick": _scaled(Config(), _TINY, episode_steps=20, maml_iterations=2,
                     pretrained_iterations=2, updates_per_chunk=1, eval_tasks=4, eval_steps=1),
    "cpu": Config(),
    "accel": _scaled(Config(), _PAPER, episode_steps=200, maml_iterations=500,
                     pretrained_iterations=500, updates_per_chunk=10, eval_tasks=200,
                     eval_steps=3),
}


# The config each method adapts with at test time (``metarl_jax.transfer.adapt_sweep`` reads it).
eval_config = cheetah.eval_config


def make_env(config: Config):
    """The MJX Ant task env (imported here: MuJoCo loads only when the experiment runs)."""
    from envs.ant import AntDir, AntGoal

    cls = AntDir if config.task == "dir" else AntGoal
    return cls(max_steps=config.episode_steps)


def direction_velocity(obs: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """``[G, S+1]`` mean torso velocity along each task's direction (``angles`` ``[G]``,
    radians) from observed trajectories ``obs`` ``[G, S+1, T, N, 105]``, over T and episodes."""
    v = obs[..., XY_VELOCITY].mean(axis=(2, 3))  # [G, S+1, 2]
    return v[..., 0] * np.cos(angles)[:, None] + v[..., 1] * np.sin(angles)[:, None]


def policies(config: Config):
    """``{method: Phase(MAMLRL, method config, (task space,))}`` as ``maml_cheetah``'s;
    ``metarl_jax.load_run`` restores them (``act`` is the pre-adaptation meta-policy)."""
    env = make_env(config)
    return meta_phases(MAMLRL(env), config, env.task_space(), METHODS)


@supports_devices
def main(args) -> dict:
    def describe(tasks, results, obs):
        if results["task"] == "dir":
            angles = np.asarray(tasks.direction_angle)
            results["direction_velocity_by_steps"] = {
                m: direction_velocity(obs[m], angles).mean(0).tolist() for m in METHODS}

    run_dir, config, results, _ = cheetah.train_and_evaluate(NAME, args, make_env, describe)
    plot_meta_training(run_dir / "curves.png", run_dir, METHODS, ylabel="mean episode return",
                       title=f"Ant-{config.task} (MJX) meta-training")
    return finish(run_dir, {"results": results, "eval_tasks": config.eval_tasks},
                  cheetah.summary_table(results))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__,
                 argv=cheetah.task_flag_to_override(sys.argv[1:])))
