"""Skills as options (``transfer/skill_options.py``): an option runs exactly ``k`` low-level
steps (fewer when the episode ends inside it), its reward is the sum of theirs, its observation
the low-level one at its end. PPO on it end to end: ``tests/test_diayn.py``'s quick run."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.point_nav import PointNav2D
from experiments._skill_controller import check_config, controller_config
from metarl_jax.algos.ppo import PPOConfig
from metarl_jax.core.env import Discrete
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.transfer.skill_options import SkillOptionParams, SkillOptions, SkillOptionSpace
from tests.compile_count import count_compiles

# Four hand-made skills: full speed along +x, +y, -x, -y (the "weights" are params data).
DIRECTIONS = jnp.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])


def compass(policy_params, key, obs):
    del key
    return policy_params["speed"] * (obs[2:] @ policy_params["directions"])  # obs = [x, y, z]


POLICY = {"speed": jnp.float32(0.1), "directions": DIRECTIONS}


def make(max_steps=7, k=3, goal=(0.25, -0.1)):
    env = SkillOptions(PointNav2D(max_steps=max_steps), compass, 4, option_steps=k)
    inner = PointNav2D().default_params().replace(goal=jnp.asarray(goal, jnp.float32))
    return env, SkillOptionSpace(fixed_space(inner), POLICY)


def test_option_runs_k_steps_sums_their_rewards_and_stops_at_the_episode_end():
    env, space = make(max_steps=7, k=3)
    params = space.nominal
    assert env.action_space == Discrete(4) and env.max_steps == 3  # ceil(7 / 3) options
    step = jax.jit(env.step)
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    goal, position = np.array([0.25, -0.1]), np.zeros(2)
    for option, (skill, runs) in enumerate([(0, 3), (1, 3), (3, 1)]):  # 3 + 3 + 1 = 7 steps
        state, obs, reward, done, info = step(jax.random.PRNGKey(option), state,
                                              jnp.int32(skill), params)
        expected = 0.0
        for _ in range(runs):  # by hand: move 0.1 along the skill, reward -|p - goal|
            position = position + 0.1 * np.asarray(DIRECTIONS[skill])
            expected -= np.linalg.norm(position - goal)
        assert int(info["option_steps"]) == runs
        assert int(state.inner.time) == 3 * option + runs
        np.testing.assert_allclose(np.asarray(obs), position, atol=1e-6)
        np.testing.assert_allclose(float(reward), expected, rtol=1e-5)
        assert bool(done) == (option == 2) and bool(info["truncated"]) == (option == 2)


def test_continuous_skills_are_clipped_and_bad_arguments_are_named():
    env = SkillOptions(PointNav2D(max_steps=4), compass, 4, option_steps=2, prior="uniform")
    assert env.action_space.shape == (4,)
    np.testing.assert_array_equal(np.asarray(env.skill(jnp.array([3.0, -0.5, 0, -9]))),
                                  [1.0, -0.5, 0.0, -1.0])
    with pytest.raises(ValueError, match="option_steps"):
        SkillOptions(PointNav2D(), compass, 4, option_steps=0)
    with pytest.raises(ValueError, match="skill_obs_size"):
        SkillOptions(PointNav2D(), compass, 4, option_steps=2, skill_obs_size=3)
    with pytest.raises(ValueError, match="prior"):
        SkillOptions(PointNav2D(), compass, 4, option_steps=2, prior="gaussian")


def test_skill_obs_size_hides_the_goal_from_the_skill_policy():
    """A goal-conditioned downstream env (obs [x, y, gx, gy]) with skills learned on [x, y]."""
    env = SkillOptions(PointNav2D(max_steps=4, goal_in_obs=True), compass, 4, option_steps=2,
                       skill_obs_size=2)
    params = SkillOptionSpace(fixed_space(PointNav2D().default_params()), POLICY).nominal
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    state, obs, _, _, _ = env.step(jax.random.PRNGKey(1), state, jnp.int32(1), params)
    np.testing.assert_allclose(np.asarray(obs), [0.0, 0.2, 0.3, -0.2], atol=1e-6)


def test_new_skill_weights_and_goals_do_not_recompile_the_option_step():
    """The skill policy's weights and the task are data: another skill set (here slower,
    rotated skills) and another goal reuse the compiled step."""
    env, space = make(max_steps=7, k=3)
    step = jax.jit(env.step)
    state, _ = env.reset(jax.random.PRNGKey(0), space.nominal)
    step(jax.random.PRNGKey(1), state, jnp.int32(0), space.nominal)  # compile
    other = SkillOptionParams(space.nominal.inner.replace(goal=jnp.array([-1.0, 2.0])),
                              {"speed": jnp.float32(0.05), "directions": DIRECTIONS[::-1]})
    with count_compiles() as compiles:
        _, obs, _, _, _ = step(jax.random.PRNGKey(1), state, jnp.int32(0), other)
        obs.block_until_ready()
    assert compiles.count == 0
    np.testing.assert_allclose(np.asarray(obs), [0.0, -0.15], atol=1e-6)  # 3 x 0.05 along -y


def test_controller_config_is_the_flat_config_per_option():
    flat = PPOConfig(num_envs=4, num_steps=50, total_steps=4000, num_minibatches=2,
                     gamma=0.99, init_log_std=-2.3)
    high = controller_config(flat, 5, action_ratio=10.0)
    assert (high.num_steps, high.total_steps, high.num_updates) == (10, 800, flat.num_updates)
    assert high.gamma == pytest.approx(0.99 ** 5)
    assert high.init_log_std == pytest.approx(-2.3 + np.log(10.0))
    with pytest.raises(ValueError, match="must divide"):
        check_config(flat, 3, episode_steps=50, log_every=1)
