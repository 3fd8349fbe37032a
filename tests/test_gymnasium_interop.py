"""Gymnasium front-ends (metarl_jax.interop.gymnasium): gymnasium's own env checker, equality with
our env stepped directly, the vector env's SAME_STEP autoreset and per-episode physics, seeding."""

import warnings

import gymnasium
import jax
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from envs import make
from metarl_jax.interop import GymnasiumEnv, GymnasiumVectorEnv
from metarl_jax.randomization.distributions import SpecError, uniform
from metarl_jax.randomization.param_space import fixed_space, make_param_space


def _mass_space(env):
    return make_param_space(env, {"m": uniform(0.5, 2.0, relative=True)})


@pytest.mark.parametrize("name", ["Pendulum", "CartPole"])
def test_gymnasium_env_checker_passes(name):
    env = make(name)
    space = _mass_space(env) if name == "Pendulum" else None
    genv = GymnasiumEnv(env, space, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's advice (unnormalized / infinite Box, spec)
        check_env(genv)
    assert isinstance(genv.observation_space, gymnasium.spaces.Box)
    assert genv.observation_space.dtype == np.float32
    if name == "CartPole":
        assert genv.action_space == gymnasium.spaces.Discrete(2)
    else:
        assert genv.action_space.shape == (1,) and genv.action_space.high[0] == 2.0


@pytest.mark.parametrize("name,max_steps", [("Pendulum", 30), ("CartPole", 500)])
def test_rollout_equals_direct_env(name, max_steps):
    env = make(name, max_steps=max_steps)
    params = env.default_params().replace(m=1.3) if name == "Pendulum" else \
        env.default_params().replace(masspole=0.2)
    genv = GymnasiumEnv(env, fixed_space(params), seed=1)
    direct_step = jax.jit(env.step)
    rng = np.random.default_rng(0)
    obs, info = genv.reset()
    field = "m" if name == "Pendulum" else "masspole"
    assert info["params"][field] == pytest.approx(float(getattr(params, field)))
    state, key = genv.state, jax.random.PRNGKey(0)
    ends = {"terminated": 0, "truncated": 0}
    for t in range(50):
        action = genv.action_space.sample() if name == "Pendulum" else int(rng.integers(2))
        obs, reward, terminated, truncated, info = genv.step(action)
        key, step_key = jax.random.split(key)
        state, d_obs, d_reward, d_done, d_info = direct_step(
            step_key, state, np.asarray(action).reshape(genv.action_space.shape or ()), params)
        np.testing.assert_allclose(obs, np.asarray(d_obs), rtol=1e-5, atol=1e-6)
        assert reward == pytest.approx(float(d_reward), rel=1e-5, abs=1e-6)
        assert truncated == bool(d_info["truncated"])
        assert terminated == bool(d_info["terminated"])
        assert isinstance(terminated, bool) and isinstance(reward, float)
        if terminated or truncated:
            assert bool(d_done)
            ends["terminated" if terminated else "truncated"] += 1
            obs, info = genv.reset()
            state = genv.state
    if name == "Pendulum":  # never terminates; the time limit ends it at max_steps
        assert ends == {"terminated": 0, "truncated": 50 // max_steps}
    else:  # random actions drop the pole well before 500 steps
        assert ends["terminated"] >= 1 and ends["truncated"] == 0


def test_every_reset_redraws_physics_and_space_can_be_swapped():
    env = make("Pendulum")
    genv = GymnasiumEnv(env, _mass_space(env), seed=0)
    masses = {float(genv.reset()[1]["params"]["m"]) for _ in range(5)}
    assert len(masses) == 5 and all(0.5 <= m <= 2.0 for m in masses)
    genv.space = fixed_space(env.default_params().replace(m=1.7))
    assert genv.reset()[1]["params"]["m"] == pytest.approx(1.7)


def test_space_the_env_cannot_use_is_refused():
    env = make("Pendulum")
    space = fixed_space(env.default_params().replace(action_delay=1))  # no ActionDelay wrapper
    with pytest.raises(SpecError):
        GymnasiumEnv(env, space)


def test_seeding_is_reproducible():
    env = make("Pendulum")
    space = _mass_space(env)
    a, b, c = (GymnasiumEnv(env, space, seed=s) for s in (3, 3, 4))
    obs_a, info_a = a.reset()
    obs_b, info_b = b.reset()
    obs_c, _ = c.reset()
    np.testing.assert_array_equal(obs_a, obs_b)
    assert info_a["params"]["m"] == info_b["params"]["m"]
    assert not np.array_equal(obs_a, obs_c)
    # reset(seed=...) overrides the constructor's seed; the same actions replay the episode
    runs = []
    for genv in (a, c):
        obs, info = genv.reset(seed=11)
        steps = [genv.step(np.array([0.5 * (-1) ** t], np.float32))[0] for t in range(5)]
        runs.append((obs, info["params"]["m"], np.stack(steps)))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


def test_vector_env_shapes_autoreset_and_physics_redraw():
    env = make("Pendulum", max_steps=5)
    venv = GymnasiumVectorEnv(env, _mass_space(env), num_envs=4, seed=0)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert venv.single_observation_space.shape == (3,)
    assert venv.observation_space.shape == (4, 3) and venv.action_space.shape == (4, 1)
    obs, _ = venv.reset(seed=0)
    assert obs.shape == (4, 3) and obs.dtype == np.float32 and obs in venv.observation_space
    masses = venv.params["m"]
    assert masses.shape == (4,) and len(set(masses.tolist())) == 4
    venv.action_space.seed(0)
    for t in range(1, 6):
        obs, reward, terminated, truncated, infos = venv.step(venv.action_space.sample())
        assert obs.shape == (4, 3) and reward.shape == (4,) and reward.dtype == np.float32
        assert terminated.dtype == bool and not terminated.any()
        if t < 5:  # mid-episode: same physics, no final observation
            assert not truncated.any() and not infos["_final_obs"].any()
            np.testing.assert_array_equal(venv.params["m"], masses)
    # step 5 hits the time limit everywhere: SAME_STEP autoreset returns the next episode's first
    # observation, the last one of the finished episode in final_obs, and fresh physics
    assert truncated.all() and infos["_final_obs"].all()
    assert infos["final_obs"].shape == (4, 3)
    assert not np.allclose(infos["final_obs"], obs)
    np.testing.assert_array_equal(infos["episode_length"], 5)
    new_masses = venv.params["m"]
    assert np.all(new_masses != masses) and np.all((new_masses >= 0.5) & (new_masses <= 2.0))
    # the new episode runs its full length again
    for t in range(5):
        obs, reward, terminated, truncated, infos = venv.step(venv.action_space.sample())
        assert truncated.all() == (t == 4)


def test_vector_env_discrete_and_seeding():
    env = make("CartPole")
    a = GymnasiumVectorEnv(env, None, num_envs=3, seed=0)
    b = GymnasiumVectorEnv(env, None, num_envs=3, seed=1)
    assert not np.array_equal(a.reset()[0], b.reset()[0])  # constructor seeds differ
    np.testing.assert_array_equal(a.reset(seed=5)[0], b.reset(seed=5)[0])
    np.testing.assert_array_equal(a.reset()[0], b.reset()[0])  # seed=5 reseeded np_random too
    obs_a, _ = a.reset(seed=[1, 2, 3])
    obs_b, _ = b.reset(seed=[1, 9, 9])
    np.testing.assert_array_equal(obs_a[0], obs_b[0])
    assert not np.array_equal(obs_a[1], obs_b[1])
    ended = np.zeros(3, bool)
    for _ in range(100):
        obs, reward, terminated, truncated, infos = a.step(np.ones(3, np.int64))  # push right
        assert obs.shape == (3, 4) and np.all(reward == 1.0)
        np.testing.assert_array_equal(infos["_final_obs"], terminated | truncated)
        ended |= terminated
    assert ended.all() and not truncated.any()  # pushing one way drops the pole, no time limit
