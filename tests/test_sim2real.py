"""Policy export (numpy round trip, validation, no JAX on the loading side) and the MuJoCo-C
deployment harness (perturbations really change the model; latency and noise semantics)."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.half_cheetah import HalfCheetah
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.core import normalization
from metarl_jax.core.context_wrappers import ParamObservation
from metarl_jax.sim2real import PolicyFormatError, export_ppo, load_policy
from metarl_jax.sim2real.deploy import Perturbation, RealWorld, summarize_real, sweep_grid
from metarl_jax.sim2real.report import plot_sweeps, sweep_curves

ROOT = Path(__file__).resolve().parent.parent
CONFIG = PPOConfig(num_envs=2, num_steps=2, total_steps=4, num_minibatches=1, hidden_sizes=(32, 16))


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A PPO actor with non-trivial weights and normalizer, exported to a policy file."""
    env = HalfCheetah()
    ppo = PPO(env)
    params = ppo.network(CONFIG).init(jax.random.PRNGKey(0), jnp.zeros((1, 17)))
    # Scale the output layer so that some actions leave [-1, 1] and the clip is exercised.
    params = jax.tree_util.tree_map_with_path(
        lambda path, x: x * 300.0 if "Dense_2" in jax.tree_util.keystr(path) and "actor" in
        jax.tree_util.keystr(path) else x, params)
    rng = np.random.default_rng(0)
    stats = normalization.RunningStats(mean=jnp.asarray(rng.normal(size=17), jnp.float32),
                                       var=jnp.asarray(rng.uniform(0.1, 4.0, 17), jnp.float32),
                                       count=jnp.float32(100.0))
    state = SimpleNamespace(params=params, obs_stats=stats)  # the fields export_ppo reads
    path = tmp_path_factory.mktemp("policy") / "cheetah"
    export_ppo(path, state, CONFIG, env.action_space, obs_layout=env.observation_structure,
               metadata={"env": "HalfCheetah"})
    return ppo, state, path


def test_numpy_policy_matches_the_jax_policy(trained_like):
    ppo, state, path = trained_like
    policy = load_policy(path)
    obs = np.random.default_rng(1).normal(0, 3, size=(256, 17)).astype(np.float32)
    jax_actions = ppo.make_policy(state, CONFIG, deterministic=True)(None, jnp.asarray(obs))
    expected = np.clip(np.asarray(jax_actions), -1, 1)
    got = policy(obs)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert 0.05 < np.mean(np.abs(got) == 1.0) < 0.95  # the clip is active on some entries only
    np.testing.assert_allclose(policy.act(obs[3]), expected[3], atol=1e-5)  # single observation
    spec = json.loads(path.with_suffix(".json").read_text())
    assert spec["network"]["layer_sizes"] == [17, 32, 16, 6]
    assert spec["observation"]["layout"] == [{"name": "qpos", "size": 8},
                                             {"name": "qvel", "size": 9}]
    assert spec["format_version"] == 1 and spec["metadata"]["env"] == "HalfCheetah"


def test_asymmetric_critic_export_keeps_the_actor_and_its_normalizer_slice(tmp_path):
    """``PPO(env, actor_obs_size=k)``: the actor reads obs[:k], the critic all of it; the file
    is the actor alone and acts on the robot's k entries as make_policy does on the whole obs."""
    env = ParamObservation(HalfCheetah(), ("body_mass_scale", "friction_scale"), (0.5, 0.4),
                           (1.5, 1.5))
    with pytest.raises(ValueError, match="actor_obs_size"):
        PPO(env, actor_obs_size=env.observation_size + 1)
    ppo = PPO(env, actor_obs_size=17)
    params = ppo.network(CONFIG).init(jax.random.PRNGKey(0), jnp.zeros((1, 19)))
    assert params["params"]["actor"]["Dense_0"]["kernel"].shape == (17, 32)
    assert params["params"]["critic"]["Dense_0"]["kernel"].shape == (19, 32)
    rng = np.random.default_rng(0)
    stats = normalization.RunningStats(mean=jnp.asarray(rng.normal(size=19), jnp.float32),
                                       var=jnp.asarray(rng.uniform(0.1, 4.0, 19), jnp.float32),
                                       count=jnp.float32(100.0))
    state = SimpleNamespace(params=params, obs_stats=stats)
    export_ppo(tmp_path / "asym", state, CONFIG, env.action_space,
               obs_layout=HalfCheetah().observation_structure)
    policy = load_policy(tmp_path / "asym")
    obs = rng.normal(0, 3, size=(64, 19)).astype(np.float32)
    act = ppo.make_policy(state, CONFIG, deterministic=True)
    expected = np.clip(np.asarray(act(None, jnp.asarray(obs))), -1, 1)
    np.testing.assert_allclose(policy(obs[:, :17]), expected, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(policy.arrays["obs_mean"], np.asarray(stats.mean)[:17])
    # The privileged entries move the value, never the action.
    other = obs.copy()
    other[:, 17:] += 5.0
    np.testing.assert_array_equal(np.asarray(act(None, jnp.asarray(other))),
                                  np.asarray(act(None, jnp.asarray(obs))))
    norm = lambda o: normalization.normalize(stats, jnp.asarray(o))  # noqa: E731
    net = ppo.network(CONFIG)
    assert not np.allclose(net.apply(params, norm(other))[1], net.apply(params, norm(obs))[1])


def test_loader_runs_without_importing_jax(trained_like):
    *_, path = trained_like
    code = ("import sys, numpy as np\n"
            "from metarl_jax.sim2real.export import load_policy\n"
            f"p = load_policy({str(path)!r})\n"
            "a = p(np.zeros(17))\n"
            "bad = [m for m in sys.modules\n"
            "       if m == 'jax' or m.startswith(('jax.', 'jaxlib', 'flax'))]\n"
            "assert not bad, bad\n"
            "print(a.shape)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(6,)"


def _copy(trained_like, tmp_path):
    *_, path = trained_like
    spec = json.loads(path.with_suffix(".json").read_text())
    arrays = dict(np.load(path.with_suffix(".npz")))
    return tmp_path / "p", spec, arrays


def _write(target, spec, arrays):
    target.with_suffix(".json").write_text(json.dumps(spec))
    np.savez(target.with_suffix(".npz"), **arrays)


def test_wrong_format_version_is_refused(trained_like, tmp_path):
    target, spec, arrays = _copy(trained_like, tmp_path)
    spec["format_version"] = 2
    _write(target, spec, arrays)
    with pytest.raises(PolicyFormatError, match="format_version 2 is not supported"):
        load_policy(target)


def test_missing_array_is_named(trained_like, tmp_path):
    target, spec, arrays = _copy(trained_like, tmp_path)
    del arrays["bias_1"], arrays["obs_var"]
    _write(target, spec, arrays)
    with pytest.raises(PolicyFormatError, match=r"missing arrays \['bias_1', 'obs_var'\]"):
        load_policy(target)


def test_shape_mismatch_is_named(trained_like, tmp_path):
    target, spec, arrays = _copy(trained_like, tmp_path)
    arrays["kernel_1"] = arrays["kernel_1"][:, :8]
    _write(target, spec, arrays)
    message = r"'kernel_1' has shape \(32, 8\), the spec needs \(32, 16\)"
    with pytest.raises(PolicyFormatError, match=message):
        load_policy(target)


def test_inconsistent_spec_and_unreadable_files_are_refused(trained_like, tmp_path):
    target, spec, arrays = _copy(trained_like, tmp_path)
    spec["observation"]["size"] = 11
    _write(target, spec, arrays)
    with pytest.raises(PolicyFormatError, match="must run from observation size 11"):
        load_policy(target)
    target.with_suffix(".json").write_text("{not json")
    with pytest.raises(PolicyFormatError, match="not a readable JSON"):
        load_policy(target)
    with pytest.raises(PolicyFormatError, match="does not exist"):
        load_policy(tmp_path / "nowhere")


def test_observation_of_the_wrong_size_is_refused_at_act_time(trained_like):
    policy = load_policy(trained_like[-1])
    with pytest.raises(ValueError, match="observations of size 17.*got shape \\(11,\\)"):
        policy(np.zeros(11))


# ----------------------------------------------------------------------------- deploy harness
def test_the_real_world_loads_without_the_settotalmass_warning(capfd):
    import mujoco

    world = RealWorld("HalfCheetah-v5")  # gymnasium's half_cheetah.xml sets settotalmass
    out, err = capfd.readouterr()
    assert "settotalmass" not in out + err and out.strip() == "", (out, err)
    assert mujoco.get_mju_user_warning() is None  # MuJoCo's own handler is back
    assert world.env.unwrapped.model.body_mass.sum() == pytest.approx(14.0)
    world.close()


def test_perturbations_set_model_fields_from_the_nominal_copy():
    world = RealWorld("HalfCheetah-v5")
    model = world.env.unwrapped.model
    mass, friction = model.body_mass.copy(), model.geom_friction.copy()
    gear = model.actuator_gear.copy()
    cell = Perturbation(mass_scale=2.0, friction_scale=0.5, strength_scale=0.25)
    world.apply(cell)
    world.apply(cell)  # applied twice: set from the nominal copy, never compounded
    np.testing.assert_allclose(model.body_mass, mass * 2.0)
    np.testing.assert_allclose(model.geom_friction, friction * 0.5)
    np.testing.assert_allclose(model.actuator_gear[:, 0], gear[:, 0] * 0.25)
    np.testing.assert_array_equal(model.actuator_gear[:, 1:], gear[:, 1:])
    world.apply(Perturbation())
    np.testing.assert_array_equal(model.body_mass, mass)
    world.close()


def test_action_delay_and_sensor_noise_semantics():
    world = RealWorld("HalfCheetah-v5", max_episode_steps=6)
    applied, seen, true_obs = [], [], []
    inner_step = world.env.step

    def recording_step(action):
        applied.append(np.array(action))
        out = inner_step(action)
        true_obs.append(out[0])
        return out

    world.env.step = recording_step
    chosen = [np.full(6, 0.1 * (t + 1), np.float32) for t in range(6)]

    def act(obs):
        seen.append(obs)
        return chosen[len(seen) - 1]

    result = world.episode(act, Perturbation(action_delay=2, obs_noise_std=0.5), seed=3)
    assert result["length"] == 6
    np.testing.assert_array_equal(applied[0], 0)  # nothing chosen 2 steps before the start
    np.testing.assert_array_equal(applied[1], 0)
    for t in range(2, 6):
        np.testing.assert_allclose(applied[t], chosen[t - 2])  # the action chosen 2 steps earlier
    noise = np.asarray(seen[1:]) - np.asarray(true_obs[:-1])
    assert 0.35 < noise.std() < 0.65 and abs(noise.mean()) < 0.15


def test_evaluate_is_repeatable_and_perturbations_change_the_return():
    world = RealWorld("HalfCheetah-v5", max_episode_steps=40)
    act = lambda obs: np.tanh(np.arange(6) - 2.5 + obs[:6])  # a fixed, state-dependent controller
    cells = sweep_grid({"mass_scale": [2.0], "strength_scale": [0.3]})
    returns = world.evaluate(act, cells, episodes=2, seed=0)
    assert returns.shape == (3, 2)
    np.testing.assert_array_equal(returns, world.evaluate(act, cells, episodes=2, seed=0))
    assert abs(returns[1, 0] - returns[0, 0]) > 1e-3 and abs(returns[2, 0] - returns[0, 0]) > 1e-3
    summary = summarize_real(returns)
    assert summary["real_worst"] == pytest.approx(returns.mean(-1).min())
    assert summary["real_nominal"] == pytest.approx(returns[0].mean())
    world.close()


def test_sweep_grid_is_one_at_a_time_with_the_nominal_first(tmp_path):
    cells = sweep_grid({"mass_scale": [0.5, 1.0, 2.0], "action_delay": [1, 2]})
    assert cells[0] == Perturbation() and len(cells) == 5
    assert all(len(c.changed()) == 1 for c in cells[1:])
    assert cells[3] == Perturbation(action_delay=1) and cells[3].label() == "action_delay=1"
    with pytest.raises(ValueError, match="unknown perturbation axes"):
        sweep_grid({"mass": [1.0]})
    with pytest.raises(ValueError, match="must be > 0"):
        Perturbation(mass_scale=0.0)
    curves = sweep_curves(cells, [10.0, 5.0, 7.0, 9.0, 8.0])
    assert curves["mass_scale"] == ([0.5, 1.0, 2.0], [5.0, 10.0, 7.0])
    assert curves["action_delay"] == ([0.0, 1.0, 2.0], [10.0, 9.0, 8.0])
    png = plot_sweeps(tmp_path / "s.png", cells, {"a": [10, 5, 7, 9, 8], "b": [9, 6, 6, 8, 8]}, "t")
    assert png.stat().st_size > 5000
