"""DADS: the intrinsic reward against hand-computed values, the Gaussian log-density and R^2,
the latent-space planner with an exact skill model, and the experiment's quick preset."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from envs.point_nav import PointNav2D
from experiments import dads as dads_experiment
from metarl_jax.algos.dads import (
    DADS,
    PlannerConfig,
    dads_reward,
    gaussian_log_prob,
    plan_to_goal,
    r_squared,
)
from metarl_jax.algos.diayn import SkillConditioned
from metarl_jax.algos.mppi import MPPIConfig
from tests.experiment_contract import check_run_folder, run_quick

pytestmark = pytest.mark.slow


def test_gaussian_log_prob_matches_scipy():
    x, mean, log_std = np.array([0.3, -1.0]), np.array([0.1, 0.5]), np.log([0.2, 2.0])
    expected = sum(scipy_stats.norm(m, np.exp(s)).logpdf(v) for v, m, s in zip(x, mean, log_std))
    assert float(gaussian_log_prob(jnp.array(x), jnp.array(mean), jnp.array(log_std))) == \
        pytest.approx(expected, abs=1e-5)


def test_reward_on_a_tiny_gaussian_case_by_hand():
    """1-D, ds = 0, unit variances; the executed skill predicts mean 0, L = 2 prior samples
    predict means +1 and -1. q(0|z) = c, q(0|z_l) = c e^{-1/2} with c = 1/sqrt(2 pi), so
    r = log c - log((c + 2 c e^{-1/2}) / 3) = log 3 - log(1 + 2 e^{-1/2}) = 0.304155..."""
    ds = jnp.zeros((1, 1))
    log_q = gaussian_log_prob(ds, jnp.zeros((1, 1)), jnp.zeros((1, 1)))
    log_q_alt = jnp.stack([gaussian_log_prob(ds, jnp.full((1, 1), m), jnp.zeros((1, 1)))
                           for m in (1.0, -1.0)], -1)  # [1, L=2]
    expected = math.log(3) - math.log(1 + 2 * math.exp(-0.5))
    assert float(dads_reward(log_q, log_q_alt)[0]) == pytest.approx(expected, abs=1e-6)
    # All skills predict the same: no information, reward 0; alternatives that cannot explain
    # ds: the ceiling ln(L + 1), never exceeded.
    assert float(dads_reward(log_q, jnp.stack([log_q] * 2, -1))[0]) == pytest.approx(0, abs=1e-6)
    assert float(dads_reward(log_q, log_q_alt - 1e4)[0]) == pytest.approx(math.log(3), abs=1e-5)
    key = jax.random.PRNGKey(0)
    r = dads_reward(20 * jax.random.normal(key, (500,)),
                    20 * jax.random.normal(jax.random.fold_in(key, 1), (500, 7)))
    assert float(r.max()) <= math.log(8) + 1e-5


def test_learner_reward_uses_the_model_and_prior_samples():
    """DADS.reward with a freshly initialized model equals the formula evaluated by hand from
    the same model outputs and the same prior draws."""
    dads = DADS(PointNav2D(max_steps=10), 2, feature_size=2)
    config = dads_experiment.PRESETS["quick"].dads
    model = dads.dynamics(config)
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 2)), jnp.zeros((1, 2)))
    obs = jax.random.normal(jax.random.PRNGKey(1), (5, 4))
    next_obs = obs.at[:, :2].add(0.1)
    key = jax.random.PRNGKey(2)
    got = dads.reward(params, config, obs, next_obs, key)
    alt = dads.skill_env.sample_skills(key, (config.num_prior_samples, 5))
    ds = next_obs[:, :2] - obs[:, :2]
    log_q = gaussian_log_prob(ds, *model.apply(params, obs[:, :2], obs[:, 2:]))
    log_alt = jnp.stack([gaussian_log_prob(ds, *model.apply(params, obs[:, :2], a)) for a in alt])
    expected = log_q - np.log((np.exp(log_q) + np.exp(log_alt).sum(0)) / (len(alt) + 1))
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-4, atol=1e-5)


def test_r_squared():
    y = jnp.array([[1.0, 0.0], [2.0, 1.0], [3.0, -1.0]])
    assert float(r_squared(y, y)) == pytest.approx(1.0)
    assert float(r_squared(y, jnp.broadcast_to(y.mean(0), y.shape))) == pytest.approx(0.0)


def test_planner_with_an_exact_skill_model_reaches_goals():
    """Skill policy ``a = 0.1 z`` on the point mass and the exact model ``ds = 0.1 z``: latent
    MPC must end within 0.3 of every goal in reach (35 steps of speed <= 0.1 per axis)."""
    env = SkillConditioned(PointNav2D(max_steps=100), 2, "uniform")
    act = lambda key, obs: 0.1 * obs[2:]
    predict = lambda s, z: 0.1 * z
    config = PlannerConfig(horizon=2, steps_per_skill=5, num_replans=7,
                           mppi=MPPIConfig(num_samples=128, num_iters=4, noise_std=0.5,
                                           temperature=0.05))
    goals = jnp.array([[2.0, 1.0], [-1.5, -2.5], [0.0, 3.0]])
    plan = jax.jit(jax.vmap(lambda g, k: plan_to_goal(k, act, env, env.default_params(), predict,
                                                      g, config)))
    paths = plan(goals, jax.random.split(jax.random.PRNGKey(0), 3))
    assert paths.shape == (3, 36, 2)
    np.testing.assert_allclose(np.asarray(paths[:, 0]), 0.0)
    final = np.linalg.norm(np.asarray(paths[:, -1] - goals), axis=-1)
    assert np.all(final < 0.3), final


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dads") / "run"
    assert run_quick(dads_experiment, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    config = dads_experiment.PRESETS["quick"]
    lines = config.dads.num_updates // config.log_every
    check_run_folder(quick_run, {"dads": lines, "diayn": lines},
                     ("skills.png", "plans.png", "curves.png"))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    for method in ("dads", "diayn"):
        for name in ("skill_dynamics_r2", "mppi_goal_success", "final_goal_distance"):
            assert len(results[method][name]["per_seed"]) == config.num_seeds
        assert 0 <= results[method]["mppi_goal_success"]["mean"] <= 1
    assert results["skill_dynamics_r2"] == results["dads"]["skill_dynamics_r2"]["mean"]
    assert len(results["goals"]) == config.num_goals


def test_bad_config_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(dads_experiment, tmp_path / "bad", "success_radius=0")
    assert exit_info.value.code == 2
    assert "success_radius" in capsys.readouterr().err
