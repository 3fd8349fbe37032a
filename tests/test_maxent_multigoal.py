"""The max-ent multigoal experiment end to end (quick preset), its resume, and the env."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
import metarl_jax
from envs.multigoal import MultiGoal2D
from experiments import maxent_multigoal
from tests.experiment_contract import check_run_folder, resume_matches, run_quick

pytestmark = pytest.mark.slow


def test_env_reaches_a_goal_and_terminates_with_the_papers_reward():
    env = envs.make("MultiGoal2D")
    params = env.default_params().replace(init_sigma=jnp.float32(0.0))
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(np.asarray(obs), [0.0, 0.0])
    right = jnp.array([1.0, 0.0])
    for t in range(3):  # x = 1, 2, 3: nearest goal (5, 0), not reached yet
        state, obs, reward, done, info = env.step(jax.random.PRNGKey(0), state, right, params)
        # -30 * 1 - 1 * (5 - x)^2
        assert abs(float(reward) - (-30.0 - (4 - t) ** 2)) < 1e-5 and not bool(done)
    state, obs, reward, done, info = env.step(jax.random.PRNGKey(0), state, 5 * right, params)
    # Clipped to speed 1: x = 4, distance 1 is not < 1; then x = 5 reaches goal 0 (+10).
    assert abs(float(reward) - (-30.0 - 1.0)) < 1e-5 and not bool(done)
    state, obs, reward, done, info = env.step(jax.random.PRNGKey(0), state, right, params)
    assert abs(float(reward) - (-30.0 + 10.0)) < 1e-5
    assert bool(done) and bool(info["terminated"]) and not bool(info["truncated"])
    assert int(info["goal"]) == 0


def test_env_truncates_at_the_horizon():
    env = MultiGoal2D(max_steps=3)
    params = env.default_params()
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    for _ in range(3):
        state, _, _, done, info = env.step(jax.random.PRNGKey(0), state, jnp.zeros(2), params)
    assert bool(done) and bool(info["truncated"]) and int(info["goal"]) == -1


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("multigoal") / "run"
    assert run_quick(maxent_multigoal, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    config = maxent_multigoal.PRESETS["quick"]
    lines = config.sac.num_updates // config.log_every
    check_run_folder(quick_run, {m: lines for m in config.methods},
                     ("trajectories.png", "curves.png"))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    assert set(results) == set(config.methods)
    for r in results.values():
        hist = r["goal_histogram"]
        assert sum(hist.values()) == config.eval_rollouts * config.num_seeds
        assert r["goals_reached"] == sum(hist[f"goal_{g}"] >= 0.05 * config.eval_rollouts
                                         for g in range(4))
    assert results["low_entropy"]["final_alpha"] == pytest.approx(config.low_alpha)
    # Even at the quick budget the fixed-temperature policy stays spread over several goals.
    assert results["sac_fixed"]["goals_reached"] >= 2


def test_load_run_gives_each_methods_sac_policy(quick_run):
    config = maxent_multigoal.PRESETS["quick"]
    run = metarl_jax.load_run(quick_run)
    assert set(run.policies) == set(config.methods)
    start = np.zeros((1, 2), np.float32)
    for method, trained in run.policies.items():
        assert trained.complete and trained.num_seeds == config.num_seeds, method
        assert trained.update == config.sac.num_updates // config.log_every
        action = trained.act(start)
        high = np.asarray(trained.learner.env.action_space.high)
        assert action.shape == (1, 2) and np.all(np.abs(action) <= high + 1e-6)
    # The temperatures differ per method and were restored with the state.
    assert not np.allclose(run["sac_fixed"].act(start), run["low_entropy"].act(start))


def test_resume_matches_the_uninterrupted_run(quick_run, tmp_path, capsys):
    resume_matches(maxent_multigoal, quick_run, tmp_path, ["low_entropy"], capsys)


@pytest.mark.parametrize("override, message", [
    ("methods=sac,ddpg", "subset"),
    ("goal_fraction=0", "goal_fraction"),
    ("sac.buffer_size=10", "must hold a batch"),
])
def test_bad_config_exits_2(tmp_path, override, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(maxent_multigoal, tmp_path / "bad", override)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
