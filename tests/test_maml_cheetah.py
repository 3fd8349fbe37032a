"""MAML on the MJX HalfCheetah tasks: the quick preset end to end, and the --task option."""

import json

import jax
import numpy as np
import pytest

from experiments import maml_cheetah
from metarl_jax.io.cli import cli
from metarl_jax.io.config import ConfigError
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import METRICS_FILE

pytestmark = pytest.mark.slow


@pytest.mark.mjx_e2e
def test_quick_preset_writes_returns_before_and_after_adaptation(tmp_path):
    out = tmp_path / "run"
    code = cli(maml_cheetah.NAME, maml_cheetah.main, maml_cheetah.Config, maml_cheetah.PRESETS,
               argv=maml_cheetah.task_flag_to_override(
                   ["--preset", "quick", "--task", "vel", "--out", str(out)]))
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]
    config = maml_cheetah.PRESETS["quick"]
    assert results["task"] == "vel"
    for method in maml_cheetah.METHODS:
        returns = results["returns_by_steps"][method]
        assert len(returns) == config.eval_steps + 1
        # -|v - v*| - 0.05 |a|^2 per step: negative, and bounded by a cheetah's speeds.
        assert all(-30.0 * config.episode_steps < r < 0 for r in returns), (method, returns)
        assert all(c > 0 for c in results["returns_ci95"][method])
        assert len(results["velocity_error_by_steps"][method]) == config.eval_steps + 1
    lines = read_metrics(out / METRICS_FILE)
    for method in maml_cheetah.METHODS:
        updates = [line["update"] for line in lines if line["phase"] == method]
        assert updates == list(range(1, getattr(config, f"{method}_iterations") + 1))
        assert all(np.isfinite(line["return_post"]) for line in lines if line["phase"] == method)
    # Zero inner steps: the baseline's pre- and post-adaptation policies are one policy.
    final = results["final_train"]["pretrained"]
    assert final["return_pre"] == final["return_post"]
    for png in ("adaptation.png", "curves.png"):
        assert (out / png).stat().st_size > 10_000
    assert json.loads((out / "config.json").read_text())["config"]["task"] == "vel"


def test_task_flag_and_bad_task():
    assert maml_cheetah.task_flag_to_override(["--task", "dir", "--preset", "cpu"]) == [
        "task=dir", "--preset", "cpu"]
    assert maml_cheetah.task_flag_to_override(["--task=vel"]) == ["task=vel"]
    with pytest.raises((ValueError, ConfigError)):
        maml_cheetah.Config(task="sideways")
    env = maml_cheetah.make_env(maml_cheetah.Config(task="dir", episode_steps=10))
    tasks = env.task_space().sample(jax.random.PRNGKey(0), (64,))
    directions = maml_cheetah.task_values(tasks, "dir")
    assert set(np.unique(directions)) == {-1.0, 1.0}
    assert env.max_steps == 10
