"""DIAYN: the pseudo-reward and its ln K ceiling, the skill-conditioned env, skill inference,
a tiny training run, and the experiment's quick preset end to end."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.point_nav import PointNav2D
from experiments import diayn as diayn_experiment
from experiments._skill_controller import controller_config
from metarl_jax.algos.diayn import (
    DIAYN,
    SkillConditioned,
    binned_entropy,
    pseudo_reward,
    skill_trajectories,
)
from metarl_jax.algos.sac import Actor
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import METRICS_FILE
from metarl_jax.transfer.skills import actor_from_skill, infer_skill
from tests.experiment_contract import check_run_folder, run_quick

pytestmark = pytest.mark.slow


def test_pseudo_reward_is_log_q_minus_log_p_and_never_exceeds_ln_k():
    logits = jnp.array([[2.0, 0.0, -1.0, 0.5]])
    skill = jax.nn.one_hot(jnp.array([0]), 4)
    p = np.exp([2.0, 0.0, -1.0, 0.5])
    expected = math.log(p[0] / p.sum()) - math.log(1 / 4)
    assert float(pseudo_reward(logits, skill)[0]) == pytest.approx(expected, abs=1e-6)
    # Uniform logits: chance, reward 0; a certain and right discriminator: ln K.
    assert float(pseudo_reward(jnp.zeros((1, 4)), skill)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(pseudo_reward(jnp.array([[50.0, 0, 0, 0]]), skill)[0]) == pytest.approx(
        math.log(4), abs=1e-6)
    for k in (2, 5, 16):  # random logits of every scale: never above ln K
        key = jax.random.PRNGKey(k)
        logits = 30.0 * jax.random.normal(key, (1000, k))
        skills = jax.nn.one_hot(jax.random.randint(key, (1000,), 0, k), k)
        assert float(jnp.max(pseudo_reward(logits, skills))) <= math.log(k) + 1e-6


def test_skill_conditioned_env_holds_the_skill_for_the_episode():
    env = SkillConditioned(PointNav2D(max_steps=5), 3)
    params = env.default_params()
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (5,) and env.observation_size == 5
    assert float(jnp.sum(obs[2:])) == 1.0  # one-hot
    for _ in range(3):
        state, next_obs, _, _, _ = env.step(jax.random.PRNGKey(1), state, jnp.ones(2), params)
        np.testing.assert_array_equal(np.asarray(next_obs[2:]), np.asarray(obs[2:]))
    skills = env.sample_skills(jax.random.PRNGKey(2), (3000,))
    np.testing.assert_allclose(np.asarray(skills.mean(0)), [1 / 3] * 3, atol=0.03)
    uniform = SkillConditioned(PointNav2D(), 2, "uniform").sample_skills(jax.random.PRNGKey(3),
                                                                         (1000,))
    assert float(uniform.min()) >= -1 and float(uniform.max()) <= 1
    with pytest.raises(ValueError, match="prior"):
        SkillConditioned(PointNav2D(), 2, "gaussian")
    with pytest.raises(ValueError, match="num_skills"):
        DIAYN(PointNav2D(), 1)


def test_skill_inference_recovers_the_generating_skill():
    """Each skill moves the point in its own direction; a discriminator that knows the
    directions (logits = cosine to each direction) must name the skill of every trajectory,
    although single states near the start are ambiguous."""
    k = 5
    angles = 2 * np.pi * np.arange(k) / k
    directions = jnp.array(np.stack([np.cos(angles), np.sin(angles)], 1), jnp.float32)
    env = SkillConditioned(PointNav2D(max_steps=20), k)
    act = lambda key, obs: 0.1 * (obs[2:] @ directions) + 0.05 * jax.random.normal(key, (2,))
    skills = jnp.eye(k)
    paths = skill_trajectories(act, env, env.default_params(), skills, jax.random.PRNGKey(0), 20)
    assert paths.shape == (k, 21, 2)
    logits = 3.0 * paths[:, 1:] @ directions.T  # [K, T, K]
    np.testing.assert_array_equal(np.asarray(infer_skill(logits)), np.arange(k))
    # The sum over states matters: a trajectory whose first state points the wrong way is
    # still attributed to the skill most of its states favour.
    mixed = logits[0].at[0].set(2.0 * jax.nn.one_hot(3, k))
    assert int(jnp.argmax(mixed[0])) == 3 and int(infer_skill(mixed)) == 0


def test_binned_entropy_of_known_histograms():
    corners = np.array([[-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5], [0.5, 0.5]])
    assert binned_entropy(corners, -1, 1, 2) == pytest.approx(math.log(4))
    assert binned_entropy(np.zeros((7, 2)), -1, 1, 4) == pytest.approx(0.0)
    assert binned_entropy(np.array([[9.0, 9.0], [-9.0, -9.0]]), -1, 1, 2) == pytest.approx(
        math.log(2))  # outside points land in the border bins


def test_actor_from_skill_equals_the_skill_conditioned_actor():
    actor = Actor(2, (16, 16))
    params = actor.init(jax.random.PRNGKey(0), jnp.zeros((1, 2 + 3)))
    skill = jnp.array([0.0, 1.0, 0.0])
    folded = actor_from_skill(params, skill, 2)
    obs = jax.random.normal(jax.random.PRNGKey(1), (7, 2))
    with_skill = actor.apply(params, jnp.concatenate([obs, jnp.tile(skill, (7, 1))], -1))
    for a, b in zip(actor.apply(folded, obs), with_skill):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("diayn") / "run"
    assert run_quick(diayn_experiment, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    config = diayn_experiment.PRESETS["quick"]
    check_run_folder(quick_run, {"diayn": config.diayn.num_updates // config.log_every},
                     ("skills.png", "curves.png"))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    for name in ("discriminator_accuracy", "mean_pseudo_reward", "state_coverage",
                 "random_policy_coverage", "skill_inference_accuracy"):
        assert len(results[name]["per_seed"]) == config.num_seeds, name
    assert results["mean_pseudo_reward"]["mean"] <= math.log(config.num_skills) + 1e-6
    assert 0 <= results["discriminator_accuracy"]["mean"] <= 1
    assert results["chance_accuracy"] == pytest.approx(1 / config.num_skills)
    # Even the quick budget tells its 4 skills apart better than chance (0.25).
    assert results["discriminator_accuracy"]["mean"] > 0.4
    init = results["skill_init"]
    assert 0 <= init["selected_skill_per_seed"][0] < config.num_skills
    for name in ("zero_shot_skill_return", "skill_init_return", "scratch_return"):
        assert len(init[name]["per_seed"]) == config.num_seeds
    check_run_folder(quick_run, {"finetune_skill": config.finetune.num_updates // config.log_every,
                                 "finetune_scratch": config.finetune.num_updates
                                 // config.log_every}, ())
    # The learned meta-controller (PPO over the skills) and flat PPO: the same low-level budget.
    high = controller_config(config.controller_ppo, config.controller_option_steps)
    check_run_folder(quick_run, {"meta_controller": high.num_updates // config.log_every,
                                 "flat_ppo": config.controller_ppo.num_updates
                                 // config.log_every}, ("controller_paths.png",))
    lines = read_metrics(quick_run / METRICS_FILE)
    last_step = {p: [x["step"] for x in lines if x["phase"] == p][-1]
                 for p in ("meta_controller", "flat_ppo")}
    assert last_step["meta_controller"] == last_step["flat_ppo"] == (
        config.controller_ppo.total_steps * config.num_seeds)
    control = results["meta_controller"]
    assert control["budget_env_steps"] == config.controller_ppo.total_steps
    for name in ("controller", "flat", "random_skills"):
        assert len(control[f"{name}_eval_return"]["per_seed"]) == config.num_seeds
        # a sum of 50 low-level rewards -distance (< 0: no goal is at the start)
        assert control[f"{name}_eval_return"]["mean"] < 0
        assert control[f"{name}_final_distance"]["mean"] > 0


def test_bad_config_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(diayn_experiment, tmp_path / "bad", "num_skills=1")
    assert exit_info.value.code == 2
    assert "num_skills" in capsys.readouterr().err
