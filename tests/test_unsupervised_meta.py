"""Unsupervised meta-RL: the acquired-task env and space against hand-computed rewards, and the
experiment's quick preset end to end (DIAYN -> acquired tasks -> MAML -> held-out goals)."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.point_nav import PointNav2D
from experiments import unsupervised_meta
from metarl_jax.algos.diayn import Discriminator
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.transfer.acquired_tasks import (
    AcquiredTasks,
    SkillDensity,
    acquired_task_space,
    fit_skill_density,
)
from tests.experiment_contract import check_run_folder, run_quick

pytestmark = pytest.mark.slow


def _linear_discriminator():
    """A 3-skill discriminator with no hidden layer whose logits are ``W s`` (bias 0):
    skill 0 likes +x, skill 1 likes +y, skill 2 likes -x."""
    disc = Discriminator(3, ())
    kernel = jnp.array([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    params = {"params": {"MLP_0": {"Dense_0": {"kernel": kernel, "bias": jnp.zeros(3)}}}}
    return disc, params


def test_acquired_reward_is_log_q_of_the_next_state_and_the_goal_task_is_the_envs():
    disc, disc_params = _linear_discriminator()
    env = PointNav2D(max_steps=10)
    tasks = AcquiredTasks(env, disc, feature_size=2)
    goals = make_param_space(env.default_params(), {"goal": uniform(-1.0, 1.0)})
    space = acquired_task_space(goals, disc_params, 3, acquired=True, min_log_q=-5.0)
    params = space.nominal.replace(skill=jnp.int32(1))
    step = jax.jit(tasks.step)  # one compile for the three steps below
    state, obs = tasks.reset(jax.random.PRNGKey(0), params)
    np.testing.assert_array_equal(np.asarray(obs), [0.0, 0.0])
    action = jnp.array([0.1, -0.05])
    state, obs, reward, done, _ = step(jax.random.PRNGKey(0), state, action, params)
    # s' = (0.1, -0.05): logits (0.1, -0.05, -0.1); log q(1 | s') by hand.
    logits = np.array([0.1, -0.05, -0.1])
    expected = logits[1] - math.log(np.exp(logits).sum())
    assert float(reward) == pytest.approx(expected, abs=1e-6) and not bool(done)
    # Far along -x, skill 0's log q is about -2 * 40 = -80: floored at min_log_q.
    far = state.replace(position=jnp.array([-40.0, 0.0]))
    _, _, reward, _, _ = step(jax.random.PRNGKey(0), far, jnp.zeros(2),
                                    params.replace(skill=jnp.int32(0)))
    assert float(reward) == pytest.approx(-5.0)
    # The same state and action on the true-task side: PointNav2D's -distance to the goal.
    goal_params = params.replace(acquired=jnp.bool_(False))
    _, _, reward, _, _ = step(jax.random.PRNGKey(0), far, jnp.zeros(2), goal_params)
    goal = np.asarray(goal_params.inner.goal)
    assert float(reward) == pytest.approx(-np.linalg.norm(np.array([-40.0, 0.0]) - goal),
                                          abs=1e-4)


def test_acquired_task_space_samples_every_skill_and_keeps_the_discriminator():
    disc, disc_params = _linear_discriminator()
    env = PointNav2D()
    goals = make_param_space(env.default_params(), {"goal": uniform(-2.0, 2.0)})
    space = acquired_task_space(goals, disc_params, 3)
    batch = jax.jit(lambda k: space.sample(k, (600,)))(jax.random.PRNGKey(0))
    assert batch.skill.shape == (600,) and batch.inner.goal.shape == (600, 2)
    counts = np.bincount(np.asarray(batch.skill), minlength=3)
    assert counts.sum() == 600 and counts.min() > 150  # ~200 each
    kernel = batch.disc_params["params"]["MLP_0"]["Dense_0"]["kernel"]
    assert kernel.shape == (600, 2, 3) and bool(jnp.all(kernel == kernel[0]))
    assert bool(jnp.all(batch.acquired))
    assert float(jnp.abs(batch.inner.goal).max()) <= 2.0
    single = jax.jit(lambda k: space.collapse_to_nominal().sample(k, (50,)))(
        jax.random.PRNGKey(1))
    assert bool(jnp.all(single.skill == 0))
    assert space.support()["skill"] == (0, 2)
    with pytest.raises(ValueError, match="num_skills"):
        acquired_task_space(goals, disc_params, 0)
    with pytest.raises(ValueError, match="min_log_q"):
        acquired_task_space(goals, disc_params, 3, min_log_q=1.0)
    with pytest.raises(ValueError, match="feature_size"):
        AcquiredTasks(env, disc, feature_size=3)


def test_skill_density_fit_is_the_maximum_likelihood_spherical_gaussian():
    rng = np.random.default_rng(0)
    # Skill 0 around (1, 2) with std 0.5, skill 1 around (-3, 0) with std 2, skill 2 never moves.
    states = np.stack([rng.normal((1.0, 2.0), 0.5, (4000, 2)),
                       rng.normal((-3.0, 0.0), 2.0, (4000, 2)),
                       np.zeros((4000, 2))]).astype(np.float32)
    params = fit_skill_density(states, min_std=0.1)["params"]
    np.testing.assert_allclose(params["mean"], states.mean(1), atol=1e-5)
    std = np.exp(0.5 * np.asarray(params["log_var"]))
    np.testing.assert_allclose(std[:2], [0.5, 2.0], rtol=0.03)
    assert std[2] == pytest.approx(0.1)  # floored: a still skill is not an infinitely sharp task
    # The module's logits are log N(x; mean_z, var_z I), by hand at one point.
    x = np.array([0.5, 1.0], np.float32)
    logits = np.asarray(SkillDensity(3).apply({"params": params}, jnp.asarray(x)))
    var = std ** 2
    by_hand = (-0.5 * np.sum((x - np.asarray(params["mean"])) ** 2, 1) / var
               - np.log(2 * np.pi * var))
    np.testing.assert_allclose(logits, by_hand, rtol=1e-5)
    for bad in (states[:, :1], states[0], np.full((2, 5, 2), np.nan)):
        with pytest.raises(ValueError, match="states"):
            fit_skill_density(bad)


def test_density_reward_is_carmls_lambda_log_q_s_given_z_minus_log_q_s():
    # Two skills' Gaussians; the reward of skill 1 at s' must be lambda log N_1(s') -
    # log(mean_z N_z(s')) - log K, and lambda = 1 must give the posterior log q(1 | s') exactly.
    params = {"params": {"mean": jnp.array([[1.0, 0.0], [0.0, 2.0]]),
                         "log_var": jnp.log(jnp.array([0.25, 1.0]))}}
    env = PointNav2D(max_steps=10)
    tasks = AcquiredTasks(env, SkillDensity(2), feature_size=2)
    goals = make_param_space(env.default_params(), {"goal": uniform(-1.0, 1.0)})
    obs = jnp.array([0.3, 0.4])
    log_n = np.asarray(SkillDensity(2).apply(params, obs), np.float64)
    log_mix = np.log(np.mean(np.exp(log_n)))
    for weight in (1.0, 2.0, 5.0):
        task = acquired_task_space(goals, params, 2, density_weight=weight).nominal.replace(
            skill=jnp.int32(1))
        expected = weight * log_n[1] - log_mix - math.log(2)
        assert float(tasks.acquired_reward(task, obs)) == pytest.approx(expected, abs=1e-5)
    posterior = log_n[1] - np.log(np.sum(np.exp(log_n)))
    assert float(tasks.log_q(task, obs)) == pytest.approx(posterior, abs=1e-5)
    # A bowl: with lambda > 1 the reward falls the further s' is from the skill's centre,
    # also along the direction where the posterior saturates at log q = 0.
    far_task = task.replace(density_weight=jnp.float32(2.0))
    rewards = [float(tasks.acquired_reward(far_task, jnp.array([0.0, y]))) for y in (2, 4, 8)]
    assert rewards[0] > rewards[1] > rewards[2]
    assert float(tasks.log_q(far_task, jnp.array([0.0, 8.0]))) > -1e-3  # saturated cone
    # A NaN state (a diverged policy) keeps its NaN reward under a floor, also compiled: it
    # must show up as a diverged chain, never as a finite floored return.
    floored = task.replace(min_log_q=jnp.float32(-1e30))
    assert math.isnan(float(jax.jit(tasks.acquired_reward)(floored, jnp.array([jnp.nan, 0.0]))))
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="density_weight"):
            acquired_task_space(goals, params, 2, density_weight=bad)


def test_density_task_model_fits_each_seed_and_skill_from_skill_major_rollouts():
    config = dataclasses.replace(unsupervised_meta.PRESETS["quick"], task_reward="density",
                                 density_weight=3.0)
    num_seeds, num_k = config.skills.num_seeds, config.skills.num_skills
    reps, steps = 5, 6
    rng = np.random.default_rng(1)
    centres = rng.normal(0.0, 3.0, (num_seeds, num_k, 2))
    paths = rng.normal(np.repeat(centres, reps, axis=1)[:, :, None], 0.3,
                       (num_seeds, num_k * reps, steps + 1, 2))
    paths[:, :, 0] = 100.0  # the start state is not a visited state: it must not be fitted
    module, params, weight = unsupervised_meta.task_model(config, None, None, paths)
    assert isinstance(module, SkillDensity) and weight == 3.0
    assert params["params"]["mean"].shape == (num_seeds, num_k, 2)
    np.testing.assert_allclose(params["params"]["mean"], centres, atol=0.3)
    with pytest.raises(ValueError, match="multiple"):
        unsupervised_meta.task_model(config, None, None, paths[:, 1:])
    for bad in (dict(task_reward="cone"), dict(density_weight=0.9), dict(density_min_std=0.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            dataclasses.replace(config, **bad)


def test_eval_goals_are_hand_designed_on_a_circle():
    config = unsupervised_meta.PRESETS["cpu"]
    goals = np.asarray(unsupervised_meta.eval_goals(config))
    assert goals.shape == (config.eval_goals, 2)
    np.testing.assert_allclose(np.linalg.norm(goals, axis=1), config.eval_goal_radius, rtol=1e-6)
    assert np.abs(goals).min() > 0.1  # none on an axis
    assert np.abs(goals).max() <= config.goal_range  # inside the true task distribution
    far = np.asarray(unsupervised_meta.eval_goals(config, config.far_goal_radius))
    np.testing.assert_allclose(np.linalg.norm(far, axis=1), config.far_goal_radius, rtol=1e-6)
    assert np.abs(far).max() <= config.goal_range  # the far family too
    assert list(unsupervised_meta.families(config)) == ["near", "far"]


def test_compare_calls_overlapping_cis_a_tie():
    a = dict(mean=-10.0, ci95=2.0)
    assert unsupervised_meta.compare(a, dict(mean=-13.0, ci95=0.5))["verdict"] == "better"
    assert unsupervised_meta.compare(a, dict(mean=-13.0, ci95=1.5))["verdict"] == "tie"
    assert unsupervised_meta.compare(a, dict(mean=-5.0, ci95=1.0))["verdict"] == "worse"


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("unsupervised_meta") / "run"
    assert run_quick(unsupervised_meta, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    config = unsupervised_meta.PRESETS["quick"]
    skills = config.skills
    check_run_folder(quick_run, {"diayn": skills.diayn.num_updates // skills.log_every,
                                 "meta_acquired": config.meta_iterations,
                                 "meta_true_goals": config.meta_iterations},
                     ("trajectories.png", "curves.png"))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    by_steps = results["returns_by_steps"]
    assert set(by_steps) == set(unsupervised_meta.METHODS)
    for method, rows in by_steps.items():
        assert len(rows) == config.eval_steps + 1, method
        for row in rows:
            assert len(row["per_seed"]) == skills.num_seeds and row["ci95"] >= 0
            # -distance per step: never above 0, never below staying put at the start
            # minus the farthest a point can wander in T steps at max speed.
            worst = -(config.eval_goal_radius + 0.1 * math.sqrt(2) * skills.episode_steps)
            assert worst * skills.episode_steps <= row["mean"] <= 0, method
    # Scratch and the two meta-learners start from the same initial policy (paired seeds), so
    # before training they would be identical; the untrained one is scored by the same
    # adaptation: its 0-step return is that of a barely moving point, about -radius * T.
    assert by_steps["scratch"][0]["mean"] == pytest.approx(
        -config.eval_goal_radius * skills.episode_steps, rel=0.25)
    for method in ("acquired", "scratch", "true_goals"):  # the mean of steps 1..eval_steps
        curve = np.mean([r["mean"] for r in by_steps[method][1:]])
        assert results["mean_over_adapted_steps"][method]["mean"] == pytest.approx(curve,
                                                                                  rel=1e-9)
    assert set(results["comparisons"]) == {"acquired_vs_scratch", "acquired_vs_true_goals",
                                           "true_goals_vs_scratch"}
    for rows in results["comparisons"].values():
        assert set(rows) == {f"{k}_steps" for k in range(config.eval_steps + 1)} | {
            "improvement", "mean_over_adapted_steps"}
        assert all(r["verdict"] in ("better", "worse", "tie") for r in rows.values())
    # The far family: the same summary on goals at far_goal_radius; the paired (a) - (b)
    # difference per seed is the difference of the per-seed values it pairs.
    far = results["far_goals"]
    assert far["radius"] == config.far_goal_radius > config.eval_goal_radius
    np.testing.assert_allclose(np.linalg.norm(far["eval_goals"], axis=1), far["radius"],
                               rtol=1e-6)
    assert far["returns_by_steps"]["scratch"][0]["mean"] == pytest.approx(
        -config.far_goal_radius * skills.episode_steps, rel=0.25)
    for part in (results, far):
        paired = part["paired_acquired_minus_scratch"]
        assert len(paired["by_steps"]) == config.eval_steps + 1
        for k, row in enumerate(paired["by_steps"]):
            a, b = (part["returns_by_steps"][m][k]["per_seed"] for m in ("acquired", "scratch"))
            np.testing.assert_allclose(row["per_seed"], np.subtract(a, b), rtol=1e-9, atol=1e-9)
        assert paired["mean_over_adapted_steps"]["mean"] == pytest.approx(
            part["mean_over_adapted_steps"]["acquired"]["mean"]
            - part["mean_over_adapted_steps"]["scratch"]["mean"], rel=1e-9, abs=1e-9)
    # The acquired training tasks (the presets' density tasks), adapted by every method the
    # same way: finite returns (a NaN would be null here), none diverged.
    assert config.task_reward == "density"
    training = results["training_tasks"]
    for method, rows in training["returns_by_steps"].items():
        assert len(rows) == config.eval_steps + 1, method
        assert all(math.isfinite(row["mean"]) for row in rows), method
    assert set(training["diverged_chains"].values()) == {0}
    assert training["paired_acquired_minus_scratch"]["mean_over_adapted_steps"]["ci95"] >= 0
    # The fitted bowls, one per seed and skill, from DIAYN's rollouts.
    density = results["skill_density"]
    assert np.shape(density["mean"]) == (skills.num_seeds, skills.num_skills, 2)
    assert np.min(density["std"]) >= config.density_min_std * (1 - 1e-6)
    assert density["density_weight"] == config.density_weight > 1
    diayn = results["diayn"]
    assert 0 <= diayn["train_disc_accuracy"] <= 1
    assert diayn["train_pseudo_reward"] <= math.log(skills.num_skills) + 1e-6


def test_bad_config_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(unsupervised_meta, tmp_path / "bad", "maml.num_inner_steps=0")
    assert exit_info.value.code == 2
    assert "num_inner_steps" in capsys.readouterr().err


def test_a_diverged_adaptation_is_counted_and_gets_no_verdict():
    # ProMP-trained policies (maml.outer=promp) once sent one true_goals chain to NaN at inner
    # step 7: the summary must say so, not crash or call NaN a tie.
    config = unsupervised_meta.PRESETS["cpu"]
    rng = np.random.default_rng(0)
    returns = rng.normal(-100.0, 5.0, (3, 3, 4, config.eval_steps + 1))  # [M, S, G, k+1]
    returns[2, 1, 3, 7:] = np.nan  # true_goals, seed 1, task 3, steps 7..10
    out = unsupervised_meta.summarize(returns, config)
    assert out["diverged_chains"] == {"acquired": 0, "scratch": 0, "true_goals": 1}
    assert math.isnan(out["returns_by_steps"]["true_goals"][7]["mean"])
    assert math.isfinite(out["returns_by_steps"]["true_goals"][6]["mean"])
    rows = out["comparisons"]["true_goals_vs_scratch"]
    assert rows["7_steps"]["verdict"] == rows["mean_over_adapted_steps"]["verdict"] == "undefined"
    assert rows["6_steps"]["verdict"] in ("better", "worse", "tie")
