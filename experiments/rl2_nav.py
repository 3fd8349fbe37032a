"""RL^2 on 2-D navigation to a hidden goal: later episodes of a trial go straight to the goal.

    python -m experiments.rl2_nav --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.rl2_nav --resume runs/rl2_nav/<timestamp>
    python -m experiments.rl2_nav --preset accel --devices all   # seeds/envs over devices

Story: every trial hides a goal ``~ U[-goal_range, goal_range]^2`` in ``PointNav2D`` (the MAML
navigation task: reward = minus the distance to the goal, which the policy never observes) and
lasts ``episodes_per_trial`` episodes, each restarting from the origin. A GRU policy trained with
recurrent PPO over trials has to locate the goal from the rewards during the first episode and
can walk straight to it in the following ones -- the return per episode index rises within a
trial. References on the same held-out goals: the policy that knows the goal (straight line at
full speed) and standing still.

Writes ``summary.json``: ``results.per_episode`` (mean return of each episode index within a
trial: ``rl2``, ``rl2_stderr``, ``oracle``, ``stand_still``), ``results.trial_return``,
``results.adaptation`` (second minus first episode, paired over goals), ``per_episode.png``,
``curves.png`` and ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp

from envs.point_nav import PointNav2D
from metarl_jax.algos.rl2 import RL2, RL2Config
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.scale import mesh_size, run_mesh
from metarl_jax.transfer.evaluation import evaluate_on_params
from metarl_jax.transfer.trials import (
    episode_returns_over_seeds,
    report_per_episode,
    train_rl2_phase,
)

NAME = "rl2_nav"


@dataclasses.dataclass(frozen=True)
class Config:
    rl2: RL2Config = RL2Config(num_envs=128, num_steps=60, total_steps=7_680_000, num_epochs=4,
                               num_minibatches=4, hidden_size=64, encoder_sizes=(64,),
                               head_sizes=(64,), init_log_std=-1.5, learning_rate=1e-3,
                               gamma=0.99, gae_lambda=0.95, ent_coef=0.0, reward_scale=0.2)
    episodes_per_trial: int = 3
    episode_length: int = 20
    goal_range: float = 0.5
    num_seeds: int = 1
    updates_per_chunk: int = 50
    eval_tasks: int = 2000

    def __post_init__(self):
        self.rl2.validate()
        check_at_least_one(self, ("episodes_per_trial", "episode_length", "num_seeds",
                                  "updates_per_chunk", "eval_tasks"))
        if not self.goal_range > 0:
            raise ValueError(f"goal_range must be > 0, got {self.goal_range}")


PRESETS = {
    "quick": Config(rl2=dataclasses.replace(Config.rl2, num_envs=64, total_steps=64 * 60 * 60,
                                            hidden_size=32, encoder_sizes=(32,),
                                            head_sizes=(32,)),
                    updates_per_chunk=20, eval_tasks=500),
    "cpu": Config(),
    "accel": Config(rl2=dataclasses.replace(Config.rl2, num_envs=2048, num_minibatches=16,
                                            total_steps=500_000_000, hidden_size=256,
                                            encoder_sizes=(256,), head_sizes=(256,)),
                    num_seeds=3, updates_per_chunk=20, eval_tasks=10_000),
}


def goal_space(env: PointNav2D, goal_range: float):
    return make_param_space(env.default_params(), {"goal": uniform(-goal_range, goal_range)})


def policies(config: Config):
    """``{"rl2": (RL2, learner config, (goal space,))}``: what ``main`` trains and
    ``metarl_jax.load_run`` restores (``run["rl2"].recurrent()`` plays it)."""
    env = PointNav2D(max_steps=config.episode_length)
    return {"rl2": (RL2(env, config.episodes_per_trial), config.rl2,
                    (goal_space(env, config.goal_range),))}


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    rl2, _, (space,) = policies(config)["rl2"]
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    mesh = run_mesh(args.devices)  # --devices N: the seeds (or each seed's envs) split over N
    states = train_rl2_phase(run_dir, rl2, config.rl2, space, seed_keys,
                             config.updates_per_chunk, mesh=mesh)

    # Held-out goals, drawn with a key training never uses.
    task_key, eval_key = jax.random.split(jax.random.PRNGKey(seed + 1_000_003))
    tasks = space.sample(task_key, (config.eval_tasks,))
    episode_returns = episode_returns_over_seeds(rl2, states, config.rl2, tasks, eval_key,
                                                 deterministic=True)  # [M, E]
    # Every episode restarts at the origin, so the references are the same for each index.
    # The oracle is told the goal (obs = position, goal) and walks straight at it.
    told = PointNav2D(max_steps=config.episode_length, goal_in_obs=True)
    straight = lambda key, obs: obs[2:] - obs[:2]  # clipped to max speed by the env
    references = {
        "oracle": float(evaluate_on_params(straight, told, tasks, 1, eval_key).mean()),
        "stand_still": float(-config.episode_length
                             * jnp.mean(jnp.linalg.norm(tasks.goal - tasks.start, axis=-1))),
    }
    results, table = report_per_episode(
        run_dir, episode_returns, references,
        {"oracle": "goal known", "stand_still": "stand still"},
        later=min(1, config.episodes_per_trial - 1), gain_name="second_minus_first",
        ylabel="mean episode return (held-out goals)",
        title=f"RL^2 on PointNav2D, hidden goals ({config.eval_tasks} held-out)")
    return finish(run_dir, {"results": results, "eval_tasks": config.eval_tasks,
                            "devices": mesh_size(mesh)}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
