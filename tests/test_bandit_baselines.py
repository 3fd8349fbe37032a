"""Bandit envs and baselines against closed forms, brute force and their definitions; the
rl2_bandits experiment's quick preset end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metarl_jax
from envs.bandits import (
    BernoulliBandit,
    DependentBandit,
    bernoulli_task_space,
    dependent_task_space,
)
from experiments import rl2_bandits
from metarl_jax import stats
from metarl_jax.baselines import bandits as bl
from tests.compile_count import count_compiles
from tests.experiment_contract import check_run_folder, resume_matches, run_quick


# ----------------------------------------------------------------------------------- envs
def test_bernoulli_bandit_pays_with_the_arm_probability_and_stops_after_n_pulls():
    env = BernoulliBandit(num_arms=3, max_steps=4)
    params = env.default_params().replace(probs=jnp.array([0.0, 1.0, 0.3]))
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (1,) and float(obs[0]) == 0.0
    dones, step = [], jax.jit(env.step)
    for t, arm in enumerate([1, 0, 1, 1]):
        state, obs, reward, done, info = step(jax.random.PRNGKey(t), state, jnp.int32(arm),
                                                  params)
        assert float(reward) == float(arm == 1)  # p = 1 always pays, p = 0 never
        assert float(info["best_prob"]) == 1.0
        dones.append(bool(done))
    assert dones == [False, False, False, True]
    keys = jax.random.split(jax.random.PRNGKey(1), 20000)
    rewards = jax.vmap(lambda k: env.step(k, state, jnp.int32(2), params)[2])(keys)
    assert abs(float(rewards.mean()) - 0.3) < 0.015


def test_dependent_bandit_arms_are_p_and_one_minus_p():
    env = DependentBandit(max_steps=5)
    params = dependent_task_space().sample(jax.random.PRNGKey(3))
    np.testing.assert_allclose(env.arm_probs(params), [params.p, 1.0 - params.p], rtol=1e-6)
    state, _ = env.reset(jax.random.PRNGKey(0), params)
    _, _, _, _, info = env.step(jax.random.PRNGKey(1), state, jnp.int32(1), params)
    assert abs(float(info["expected_reward"]) - (1.0 - float(params.p))) < 1e-6


def test_task_space_draws_independent_uniform_arm_probabilities():
    probs = bernoulli_task_space(5).sample(jax.random.PRNGKey(0), (20000,)).probs
    assert probs.shape == (20000, 5)
    assert 0.0 <= float(probs.min()) and float(probs.max()) <= 1.0
    np.testing.assert_allclose(probs.mean(0), 0.5, atol=0.01)
    np.testing.assert_allclose(probs.var(0), 1.0 / 12.0, atol=0.003)
    assert abs(float(np.corrcoef(probs[:, 0], probs[:, 1])[0, 1])) < 0.03


# ----------------------------------------------------------------------------------- exact values
@pytest.mark.parametrize("k, n", [(2, 1), (2, 2), (2, 3), (3, 2), (3, 3)])
def test_dp_value_equals_brute_force_over_all_deterministic_policies(k, n):
    assert abs(bl.bayes_optimal_value(k, n) - bl.brute_force_bayes_value(k, n)) < 1e-12


def test_dp_value_closed_forms():
    # One arm: every policy earns n * E[p] = n / 2.
    assert bl.bayes_optimal_value(1, 7) == pytest.approx(3.5, abs=1e-12)
    # k=2, n=2 by hand: pull, stay after a success (posterior 2/3), else switch to a fresh arm.
    assert bl.bayes_optimal_value(2, 2) == pytest.approx(0.5 + 0.5 * 2 / 3 + 0.5 * 0.5, abs=1e-12)
    # With k >= n arms there is always a fresh arm, so more arms change nothing.
    assert bl.bayes_optimal_value(10, 10) == pytest.approx(bl.bayes_optimal_value(50, 10),
                                                           abs=1e-12)
    # More arms can only help; a longer horizon earns more.
    assert bl.bayes_optimal_value(5, 10) > bl.bayes_optimal_value(2, 10) > 5.0
    assert bl.bayes_optimal_value(5, 12) > bl.bayes_optimal_value(5, 10)


@pytest.fixture(scope="module")
def n10k5():
    space = bernoulli_task_space(5)
    probs = space.sample(jax.random.PRNGKey(0), (20000,)).probs
    runs = {"random": (bl.random_arm, 0.0), "eps_one": (bl.eps_greedy, 1.0),
            "greedy": (bl.greedy, 0.0), "thompson": (bl.thompson, 0.0), "ucb1": (bl.ucb1, 0.1),
            "ucb1_classic": (bl.ucb1_classic, 1.0)}
    totals = bl.run_policies(runs, probs, 10, jax.random.PRNGKey(1))
    return probs, {name: np.asarray(t) for name, t in totals.items()}


def test_random_policy_earns_n_times_mean_probability(n10k5):
    probs, totals = n10k5
    for name in ("random", "eps_one"):  # eps = 1 is uniformly random too
        mean, se = stats.mean_stderr(totals[name])
        assert abs(mean - 5.0) < 4 * se  # n * E[p] = n / 2
        # Conditional on the tasks: E[total | p] = n * mean_i(p_i).
        assert abs(mean - 10 * float(probs.mean())) < 4 * se


def test_no_baseline_beats_the_bayes_optimal_value(n10k5):
    _, totals = n10k5
    optimum = bl.bayes_optimal_value(5, 10)
    for name, t in totals.items():
        mean, se = stats.mean_stderr(t)
        assert mean < optimum + 4 * se, name
    # Classic UCB1 pulls every arm once first: its first k pulls are uniformly random.
    assert stats.mean_stderr(totals["greedy"])[0] > stats.mean_stderr(totals["ucb1_classic"])[0]


def test_index_policies_concentrate_on_the_best_arm():
    probs = jnp.tile(jnp.array([[0.2, 0.8, 0.4]]), (500, 1))
    runs = {"greedy": (bl.greedy, 0.0), "thompson": (bl.thompson, 0.0), "ucb1": (bl.ucb1, 0.3),
            "ucb1_classic": (bl.ucb1_classic, 1.41), "eps": (bl.eps_greedy, 0.1)}
    totals = bl.run_policies(runs, probs, 200, jax.random.PRNGKey(2))
    for name, t in totals.items():
        assert float(t.mean()) > 0.7 * 200, name  # best arm pays 0.8 per pull


def test_ties_are_broken_uniformly_at_random():
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    arms = jax.vmap(lambda k: bl.argmax_random_ties(k, jnp.array([1.0, 0.0, 1.0])))(keys)
    counts = np.bincount(np.asarray(arms), minlength=3)
    assert counts[1] == 0 and abs(counts[0] - 2000) < 150


def test_tuning_picks_the_best_grid_value_and_compiles_once():
    probs = bernoulli_task_space(3).sample(jax.random.PRNGKey(0), (500,)).probs
    out = bl.tune({"eps": (bl.eps_greedy, (0.0, 0.5, 1.0))}, probs, 20, jax.random.PRNGKey(1))
    best, scores = out["eps"]
    assert best == max((float(v) for v in scores), key=lambda v: scores[str(v)])
    assert best < 1.0  # always exploring is the worst choice
    with count_compiles() as compiles:
        bl.tune({"eps": (bl.eps_greedy, (0.1, 0.2, 0.3))}, probs, 20, jax.random.PRNGKey(2))
    assert compiles.count == 0  # new grid values: no recompile


# ----------------------------------------------------------------------------------- experiment
@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("rl2_bandits") / "run"
    assert run_quick(rl2_bandits, out) == 0
    return out


@pytest.mark.slow
def test_rl2_bandits_quick_preset_writes_the_table(quick_run):
    out = quick_run
    config = rl2_bandits.PRESETS["quick"]
    check_run_folder(out, {"n10_k5": rl2_bandits.setting_config(config, 0).num_updates},
                     ("curves.png",))
    summary = json.loads((out / "summary.json").read_text())
    row = summary["results"]["table"]["n=10,k=5"]
    se = summary["results"]["stderr"]["n=10,k=5"]
    assert set(row) == set(rl2_bandits.METHODS)
    assert row["bayes_optimal"] == pytest.approx(bl.bayes_optimal_value(5, 10), abs=1e-9)
    assert abs(row["random"] - 5.0) < 4 * se["random"]
    assert summary["eval_tasks"] >= 1000
    assert len(summary["paper_settings_not_run"]) == 8 and "n=100,k=5" in summary[
        "paper_settings_not_run"]
    for method in ("thompson", "ucb1", "greedy", "eps_greedy", "rl2"):
        assert row["random"] + 4 * se[method] < row[method] < row["bayes_optimal"] + 4 * se[method]


@pytest.mark.slow
def test_load_run_plays_the_bandit_with_the_trained_recurrent_policy(quick_run):
    trained = metarl_jax.load_run(quick_run)["n10_k5"]
    assert trained.complete
    actor = trained.recurrent(seed=0)
    obs = np.zeros(trained.learner.env.observation_size, np.float32)
    arms = []
    for t in range(10):  # a bandit whose arm 2 always pays and the others never
        arms.append(int(actor.act(obs)))
        actor.observe(float(arms[-1] == 2), False, trial_done=t == 9)
    assert all(0 <= a < 5 for a in arms), arms
    assert not np.any(np.asarray(actor.memory.hidden))  # the trial ended: memory cleared
    assert int(actor.act(obs)) == arms[0]  # and the next trial starts like the first


def test_rl2_bandits_quick_preset_resumes_to_identical_results(quick_run, tmp_path, capsys):
    resume_matches(rl2_bandits, quick_run, tmp_path, ["n10_k5"], capsys,
                   wall_clock_keys=("train_seconds",))
