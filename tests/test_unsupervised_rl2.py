"""Unsupervised meta-RL through RL^2: the acquired-task trial's reward against log q of the
frozen discriminator, (b)'s budget in episodes against the trial's, and the quick preset end to
end (DIAYN -> acquired tasks -> RL^2 -> held-out goals beside RL from scratch)."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.point_nav import PointNav2D
from experiments import _unsupervised_rl2_eval as rl2_eval
from experiments import unsupervised_rl2
from metarl_jax.algos.rl2 import RL2
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import fixed_space, make_param_space
from metarl_jax.transfer.acquired_tasks import AcquiredTasks, acquired_task_space
from tests.experiment_contract import check_run_folder, run_quick
from tests.test_unsupervised_meta import _linear_discriminator

pytestmark = pytest.mark.slow


def test_acquired_trial_reward_is_floored_log_q_of_the_visited_states():
    """RL^2's trial env on an acquired task: every step's reward is ``max(log q(z | s'), floor)``
    of the frozen discriminator at the state reached (before an episode's reset), across the
    episodes of the trial, and the task (skill) is kept across them."""
    disc, disc_params = _linear_discriminator()  # logits = W s, bias 0
    env = PointNav2D(max_steps=4)
    rl2 = RL2(AcquiredTasks(env, disc, feature_size=2), episodes_per_trial=2)
    goals = make_param_space(env.default_params(), {"goal": uniform(-1.0, 1.0)})
    floor = -1.15  # log q(1 | 0) = -log 3 = -1.10: below it going -y, above going +y
    task = acquired_task_space(goals, disc_params, 3, True, floor).nominal.replace(
        skill=jnp.int32(1))
    space = fixed_space(task)
    trial = rl2.trial_env
    step = jax.jit(trial.step)
    state, _ = trial.reset(jax.random.PRNGKey(0), space)
    kernel = np.asarray(disc_params["params"]["MLP_0"]["Dense_0"]["kernel"])
    seen_floor = seen_above = 0
    for t in range(trial.max_steps):
        # Episode 0 walks down (skill 1, "+y", loses), episode 1 up (it gains).
        down = t < env.max_steps
        action = jnp.array([0.05 * np.sin(t), -0.1 if down else 0.1])
        state, _, reward, done, info = step(jax.random.PRNGKey(100 + t), state, action, space)
        logits = np.asarray(info["final_obs"]) @ kernel
        log_q = logits[1] - np.log(np.exp(logits).sum())
        assert float(reward) == pytest.approx(max(log_q, floor), abs=1e-5), t
        seen_floor += log_q < floor
        seen_above += log_q > floor
        assert int(state.params.skill) == 1 and bool(done) == (t == trial.max_steps - 1)
    assert seen_floor and seen_above  # both branches of the floor were exercised


def test_scratch_budget_in_episodes_is_the_trials():
    for config in unsupervised_rl2.PRESETS.values():
        assert rl2_eval.scratch_episodes(config) == config.episodes_per_trial
    with pytest.raises(ValueError, match="episodes_per_task"):
        unsupervised_rl2.Config(scratch=dataclasses.replace(unsupervised_rl2.Config.scratch,
                                                            episodes_per_task=2))


def test_rl2_route_takes_the_same_task_rewards_as_the_maml_route():
    # Its DIAYN stays at 3 seeds when the MAML route's cpu preset went to 8.
    assert unsupervised_rl2.PRESETS["cpu"].skills.num_seeds == 3
    density = unsupervised_rl2.Config(task_reward="density", density_weight=3.0)
    assert (density.task_reward, density.density_weight) == ("density", 3.0)
    for bad in (dict(task_reward="cone"), dict(density_weight=0.5), dict(density_min_std=-1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            unsupervised_rl2.Config(**bad)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("unsupervised_rl2") / "run"
    assert run_quick(unsupervised_rl2, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    config = unsupervised_rl2.PRESETS["quick"]
    skills = config.skills
    check_run_folder(quick_run, {"diayn": skills.diayn.num_updates // skills.log_every,
                                 "rl2_acquired": config.rl2.num_updates,
                                 "rl2_true_goals": config.rl2.num_updates},
                     ("per_episode.png", "curves.png"))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    seeds, episodes, steps = (config.skills.num_seeds, config.episodes_per_trial,
                              config.skills.episode_steps)
    for part, radius in ((results, config.eval_goal_radius),
                         (results["far_goals"], config.far_goal_radius)):
        assert set(part["per_episode"]) == set(rl2_eval.METHODS)
        for method, rows in part["per_episode"].items():
            # (b) has exactly the trial's budget: one return per episode of the trial.
            assert len(rows) == episodes, method
            for row in rows:  # -distance: at most 0, at least a full-speed walk away
                assert len(row["per_seed"]) == seeds and row["ci95"] >= 0
                assert -(radius + 0.15 * steps) * steps <= row["mean"] <= 0, method
            np.testing.assert_allclose(part["trial_mean"][method]["mean"],
                                       np.mean([r["mean"] for r in rows]), rtol=1e-6)
        paired = part["paired_acquired_minus_scratch"]
        for i, row in enumerate(paired["per_episode"]):
            a, b = (part["per_episode"][m][i]["per_seed"] for m in ("acquired", "scratch"))
            np.testing.assert_allclose(row["per_seed"], np.subtract(a, b), atol=1e-9)
        assert all(r["verdict"] in ("better", "worse", "tie")
                   for rows in part["comparisons"].values() for r in rows.values())
    for rows in results["training_tasks"]["per_episode"].values():  # sums of floored log q
        assert all(config.min_log_q * steps <= r["mean"] <= 0 for r in rows)
    for kind in ("goals", "acquired"):  # (b)'s lr, picked on training tasks of each kind
        tuning = results["scratch_lr"][kind]
        assert tuning["picked"] in tuning["candidates"]
        # The learning rate reaches (b)'s updates: different candidates, different returns.
        assert len(set(tuning["mean_episode_return"])) == len(config.scratch_lrs)
