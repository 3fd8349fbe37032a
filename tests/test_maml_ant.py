"""MAML on the MJX Ant tasks: the quick preset end to end (mjx_e2e), the direction metric and
the task option."""

import json

import jax
import numpy as np
import pytest

from experiments import maml_ant
from metarl_jax.io.cli import cli
from metarl_jax.io.config import ConfigError

pytestmark = pytest.mark.slow


@pytest.mark.mjx_e2e
@pytest.mark.parametrize("task", ["dir", "goal"])
def test_quick_preset_writes_returns_before_and_after_adaptation(tmp_path, task):
    out = tmp_path / "run"
    code = cli(maml_ant.NAME, maml_ant.main, maml_ant.Config, maml_ant.PRESETS,
               argv=["--preset", "quick", "task=" + task, "--out", str(out)])
    assert code == 0
    results = json.loads((out / "summary.json").read_text())["results"]
    config = maml_ant.PRESETS["quick"]
    assert results["task"] == task
    for method in maml_ant.METHODS:
        returns = results["returns_by_steps"][method]
        assert len(returns) == config.eval_steps + 1 and all(np.isfinite(returns))
        # healthy bonus 1 per step at most; goal: -|xy - goal|_1 <= 0 per step, goals within 6 m
        high = 3.0 * config.episode_steps if task == "dir" else 1.0 * config.episode_steps
        assert all(-40.0 * config.episode_steps < r < high for r in returns), (method, returns)
    final = results["final_train"]["pretrained"]
    assert final["return_pre"] == final["return_post"]  # zero inner steps: one policy
    if task == "dir":
        assert len(results["direction_velocity_by_steps"]["maml"]) == config.eval_steps + 1
    assert (out / "curves.png").stat().st_size > 10_000


def test_direction_velocity_projects_on_each_tasks_direction():
    obs = np.zeros((2, 1, 3, 2, 105), np.float32)  # [G, S+1, T, N, obs]
    obs[0, ..., 13] = 1.0  # task 0 walks +x at 1 m/s
    obs[1, ..., 13] = 2.0  # task 1 walks +x at 2 m/s while asked to walk -x
    v = maml_ant.direction_velocity(obs, np.array([0.0, np.pi]))
    np.testing.assert_allclose(v, [[1.0], [-2.0]], atol=1e-6)


def test_tasks_and_bad_task():
    with pytest.raises((ValueError, ConfigError)):
        maml_ant.Config(task="vel")
    env = maml_ant.make_env(maml_ant.Config(task="dir", episode_steps=10))
    tasks = env.task_space().sample(jax.random.PRNGKey(0), (64,))
    np.testing.assert_allclose(np.unique(np.asarray(tasks.direction_angle)), [0.0, np.pi],
                               atol=1e-6)
    assert env.max_steps == 10
    goal_env = maml_ant.make_env(maml_ant.Config(task="goal"))
    goals = np.asarray(goal_env.task_space().sample(jax.random.PRNGKey(1), (64,)).goal)
    assert goals.shape == (64, 2) and np.all(np.abs(goals) <= 3.0)
