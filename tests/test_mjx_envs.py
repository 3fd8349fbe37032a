"""MJX locomotion envs: gymnasium MuJoCo-C as the oracle, per-episode physics randomization,
and the "only randomized leaves are batched" structure."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import gymnasium as gym
import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest

import envs
from envs.ant import Ant, AntDir, AntGoal
from envs.half_cheetah import HalfCheetah, HalfCheetahDir, HalfCheetahVel
from envs.hopper import Hopper
from envs.mjx_physics import RANDOMIZED_MODEL_FIELDS, apply_physics, batched_models, physics_in_axes
from envs.walker2d import Walker2d
from metarl_jax.core.wrappers import AutoReset
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space

ROOT = Path(__file__).resolve().parent.parent
ROBOTS = {"HalfCheetah": HalfCheetah, "Hopper": Hopper, "Walker2d": Walker2d, "Ant": Ant}


def _gym(env_id):
    env = gym.make(env_id)
    env.reset(seed=1)
    return env


def test_import_envs_does_not_import_mujoco_and_make_builds_every_mjx_env():
    code = ("import sys, envs; assert 'mujoco' not in sys.modules, 'import envs pulled in mujoco'; "
            "env = envs.make('HalfCheetahVel', max_steps=7); "
            "print(type(env).__name__, env.max_steps, 'mujoco' in sys.modules)")
    # A clean environment, but on a GPU the MJX model must not preallocate 75% of its memory
    # beside the test workers' (conftest.suite_settings).
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                              "XLA_PYTHON_CLIENT_PREALLOCATE": "false"})
    assert out.returncode == 0, out.stderr
    # Nothing else on the console: no "Failed to import warp" (mujoco.mjx without NVIDIA Warp),
    # no settotalmass deprecation WARNING and its blank line (#12 item 11).
    assert out.stdout.splitlines() == ["HalfCheetahVel 7 True"], out.stdout
    assert "warp" not in out.stderr.lower() and "settotalmass" not in out.stderr, out.stderr
    for name in ("HalfCheetah", "HalfCheetahVel", "HalfCheetahDir", "Hopper", "Walker2d", "Ant",
                 "AntDir", "AntGoal"):
        assert name in envs.registered()


def test_settotalmass_applied_without_the_deprecated_attribute_is_bit_identical(capfd):
    """half_cheetah.xml's compiler settotalmass="14" is applied after compiling (as MuJoCo's
    deprecation warning asks): every model array and statistic equals MuJoCo's own load."""
    from envs.mjx_locomotion import ASSETS, load_mj_model

    ours = load_mj_model("half_cheetah.xml")
    assert "settotalmass" not in "".join(capfd.readouterr())
    theirs = mujoco.MjModel.from_xml_path(str(ASSETS / "half_cheetah.xml"))
    theirs.opt.iterations, theirs.opt.ls_iterations = ours.opt.iterations, ours.opt.ls_iterations
    assert "settotalmass" in "".join(capfd.readouterr())  # MuJoCo's path still warns
    assert ours.body_mass.sum() == pytest.approx(14.0)
    arrays = [n for n in dir(ours) if not n.startswith("_")
              and isinstance(getattr(ours, n, None), np.ndarray)]
    assert len(arrays) > 100
    for name in arrays:
        np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name), err_msg=name)
    for group in ("stat", "opt"):
        for field in dir(getattr(ours, group)):
            value = getattr(getattr(ours, group), field)
            if not field.startswith("_") and not callable(value):
                np.testing.assert_array_equal(value, getattr(getattr(theirs, group), field),
                                              err_msg=f"{group}.{field}")


@pytest.mark.parametrize("name", list(ROBOTS))
def test_observation_layout_action_space_and_timestep_match_gymnasium(name):
    env, ref = ROBOTS[name](), _gym(ROBOTS[name].gym_id)
    u = ref.unwrapped
    assert env.observation_structure == u.observation_structure
    assert env.observation_size == ref.observation_space.shape[0]
    np.testing.assert_array_equal(env.action_space.low, ref.action_space.low)
    np.testing.assert_array_equal(env.action_space.high, ref.action_space.high)
    assert env.dt == pytest.approx(u.dt) and env.frame_skip == u.frame_skip
    # The observation of the same physical state, part by part.
    state = env.make_state(u.data.qpos, u.data.qvel)
    obs = env._obs(state.qpos, state.qvel, jnp.asarray(u.data.cfrc_ext))
    np.testing.assert_allclose(obs, u._get_obs(), rtol=1e-6, atol=1e-6)
    # Reset draws around the same initial state with gymnasium's noise scale.
    _, reset_obs = env.reset(jax.random.PRNGKey(0), env.default_params())
    initial = np.concatenate([u.init_qpos[env.observation_structure["skipped_qpos"]:], u.init_qvel])
    gap = np.abs(np.asarray(reset_obs)[: initial.size] - initial)
    assert 0 < gap.max() < 5 * env.reset_noise_scale


# Rollouts from the same state with the same actions. Tolerance: MJX integrates in float32,
# MuJoCo C in float64; contact events amplify the 1e-7 roundoff (chaotic dynamics), measured
# worst case over these horizons 7e-3 on HalfCheetah's joint velocities (|qvel| ~ 10), 1e-4 on
# Hopper/Walker2d, 1e-3 on Ant. A wrong frame skip, gear, damping or reward term gives errors of
# order 0.1-1 within a few steps. Ant is compared with an elliptic friction cone on both sides
# and the full solver: with the default pyramidal cone MuJoCo 4.0 and MJX 3.17 orient the
# contact frame differently (see envs/mjx_locomotion.py), which changes Ant's contact forces.
ROLLOUTS = {
    "HalfCheetah": (10, {}, 2e-2),
    "Hopper": (10, {}, 1e-3),
    "Walker2d": (10, {}, 1e-3),
    "Ant": (8, {"elliptic_cone": True, "solver_iterations": 100, "ls_iterations": 50}, 1e-2),
}


@pytest.mark.parametrize("name", list(ROLLOUTS))
def test_short_rollout_matches_gymnasium_mujoco_c(name):
    steps, kwargs, tol = ROLLOUTS[name]
    env, ref = ROBOTS[name](**kwargs), _gym(ROBOTS[name].gym_id)
    u = ref.unwrapped
    if kwargs.get("elliptic_cone"):
        u.model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    params = env.default_params()
    state = env.make_state(u.data.qpos, u.data.qvel)
    step = jax.jit(env.step)
    rng = np.random.default_rng(0)
    for t in range(steps):
        action = rng.uniform(-1, 1, env.action_size).astype(np.float32)
        ref_obs, ref_reward, ref_terminated, _, ref_info = ref.step(action)
        key = jax.random.PRNGKey(t)
        state, obs, reward, done, info = step(key, state, jnp.asarray(action), params)
        where = f"{name} step {t}"
        np.testing.assert_allclose(obs, ref_obs, rtol=tol, atol=tol, err_msg=where)
        np.testing.assert_allclose(reward, ref_reward, rtol=tol, atol=tol, err_msg=where)
        np.testing.assert_allclose(info["x_velocity"], ref_info["x_velocity"], rtol=tol, atol=tol)
        assert bool(info["terminated"]) == ref_terminated and not bool(info["truncated"])
        if t < 2:  # before errors can compound: the same numbers to float32 precision
            np.testing.assert_allclose(obs, ref_obs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["Hopper", "Walker2d", "Ant"])
def test_termination_rule_matches_gymnasium(name):
    env, ref = ROBOTS[name](), _gym(ROBOTS[name].gym_id)
    u = ref.unwrapped
    rng = np.random.default_rng(0)
    outcomes = []
    for _ in range(200):
        qpos = u.init_qpos + rng.normal(0, 0.4, u.model.nq)
        qvel = rng.normal(0, 80, u.model.nv) * (rng.uniform() < 0.2)
        u.set_state(qpos, qvel)
        ours = bool(env.is_healthy(jnp.asarray(qpos, jnp.float32), jnp.asarray(qvel, jnp.float32)))
        assert ours == bool(u.is_healthy), (qpos, qvel)
        outcomes.append(ours)
    assert 0 < sum(outcomes) < len(outcomes)  # both healthy and unhealthy states were tried


def test_apply_physics_scales_exactly_the_listed_fields():
    env = HalfCheetah()
    nbody, nv, nu = env.mj_model.nbody, env.mj_model.nv, env.mj_model.nu
    params = env.default_params().replace(
        body_mass_scale=jnp.linspace(0.5, 2.0, nbody), friction_scale=jnp.float32(0.3),
        damping_scale=jnp.full((nv,), 2.0), armature_scale=jnp.full((nv,), 3.0),
        gear_scale=jnp.linspace(0.5, 1.0, nu), gravity_scale=jnp.float32(0.5))
    model, m = apply_physics(env.model, params), env.mj_model
    s = np.asarray(params.body_mass_scale)
    np.testing.assert_allclose(model.body_mass, m.body_mass * s, rtol=1e-6)
    np.testing.assert_allclose(model.body_inertia, m.body_inertia * s[:, None], rtol=1e-6)
    np.testing.assert_allclose(model.geom_friction, m.geom_friction * 0.3, rtol=1e-6)
    np.testing.assert_allclose(model.dof_damping, m.dof_damping * 2.0, rtol=1e-6)
    np.testing.assert_allclose(model.dof_armature, m.dof_armature * 3.0, rtol=1e-6)
    np.testing.assert_allclose(model.actuator_gear[:, 0],
                               m.actuator_gear[:, 0] * np.linspace(0.5, 1, 6), rtol=1e-6)
    np.testing.assert_array_equal(model.actuator_gear[:, 1:], m.actuator_gear[:, 1:])
    np.testing.assert_allclose(model.opt.gravity, m.opt.gravity * 0.5, rtol=1e-6)
    # Every other field is the shared nominal array itself: nothing else was copied or changed.
    for name in ("body_pos", "geom_size", "dof_invweight0", "jnt_stiffness", "actuator_ctrlrange"):
        assert name not in RANDOMIZED_MODEL_FIELDS
        assert getattr(model, name) is getattr(env.model, name)
    assert model.opt.timestep is env.model.opt.timestep


def test_a_scalar_mass_factor_scales_every_body_like_the_same_vector():
    env = HalfCheetah()
    vector = env.default_params().replace(body_mass_scale=jnp.full((env.mj_model.nbody,), 1.7))
    scalar = env.default_params().replace(body_mass_scale=jnp.float32(1.7))
    a, b = apply_physics(env.model, vector), apply_physics(env.model, scalar)
    np.testing.assert_array_equal(a.body_mass, b.body_mass)
    np.testing.assert_array_equal(a.body_inertia, b.body_inertia)
    np.testing.assert_allclose(b.body_mass, env.mj_model.body_mass * 1.7, rtol=1e-6)


def test_only_randomized_model_fields_are_batched():
    env = HalfCheetah()
    space = make_param_space(env.default_params(), {
        "body_mass_scale": uniform(0.5, 1.5, relative=True),
        "gear_scale": uniform(0.5, 1.5, relative=True)})
    models, axes = batched_models(env.model, space.sample(jax.random.PRNGKey(0), (5,)))
    leaves = jax.tree.leaves(models)
    flat_axes = jax.tree.leaves(axes, is_leaf=lambda a: a is None)
    assert len(leaves) == len(flat_axes)
    batched = [leaf for leaf, a in zip(leaves, flat_axes) if a == 0]
    assert len(batched) == len(RANDOMIZED_MODEL_FIELDS)
    assert all(leaf.shape[0] == 5 for leaf in batched)
    assert not np.allclose(models.body_mass[0], models.body_mass[1])
    # The check has teeth: a per-env model that also touched body_pos is refused by vmap.
    leaky = lambda p: apply_physics(env.model, p).replace(
        body_pos=env.model.body_pos * p.gear_scale[0])
    with pytest.raises(ValueError):
        jax.vmap(leaky, out_axes=physics_in_axes(env.model))(
            space.sample(jax.random.PRNGKey(1), (5,)))


@pytest.fixture(scope="module")
def randomized_rollout():
    """4 envs, 3-step episodes, 8 steps: the per-step episode params and final states."""
    env = AutoReset(HalfCheetah(max_steps=3))
    nominal = env.unwrapped.default_params()
    fields = ("body_mass_scale", "friction_scale", "damping_scale", "armature_scale", "gear_scale",
              "gravity_scale")
    space = make_param_space(nominal, {k: uniform(0.5, 1.5, relative=True) for k in fields})
    traces = []

    @jax.jit
    def run(key, space):
        traces.append(1)
        keys = jax.random.split(key, 4)
        state, _ = jax.vmap(env.reset, in_axes=(0, None))(keys, space)
        # Same initial physical state in every env (own physics each), so step 0 differs only
        # through the physics.
        first = lambda x: jnp.broadcast_to(x[0], x.shape)
        state = state.replace(inner=jax.tree.map(first, state.inner))

        def one(state, k):
            action = jnp.full((4, 6), 0.5)
            state, obs, reward, done, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k, 4), state, action, space)
            return state, (state.params, state.inner.qvel, done)

        return state, jax.lax.scan(one, state, jax.random.split(key, 8))

    return run, space, nominal, traces, env


def test_physics_are_redrawn_per_episode_and_differ_across_envs(randomized_rollout):
    run, space, _, _, _ = randomized_rollout
    _, (_, (params, qvel, done)) = run(jax.random.PRNGKey(0), space)
    mass = np.asarray(params.body_mass_scale)  # [T=8, N=4, nbody]
    gear = np.asarray(params.gear_scale)
    done = np.asarray(done)
    assert done[2].all() and done[5].all() and done.sum() == 8  # 3-step episodes
    for t in range(8):  # within a batch: every env has its own physics
        assert len({tuple(row) for row in mass[t]}) == 4
    for n in range(4):
        # Recorded after each step: an episode's params stay put, and the step that ends an
        # episode already carries the next episode's fresh draw.
        np.testing.assert_array_equal(mass[2, n], mass[4, n])
        np.testing.assert_array_equal(gear[5, n], gear[7, n])
        assert not np.allclose(mass[1, n], mass[2, n]) and not np.allclose(mass[4, n], mass[5, n])
        assert not np.allclose(gear[1, n], gear[2, n])
    assert np.all((mass[:, :, 1:] >= 0.5) & (mass[:, :, 1:] <= 1.5))
    # The dynamics see them: same state, same action, different physics -> different velocities.
    first = np.asarray(qvel)[0]  # [N, nv] after step 0
    assert np.min([np.abs(first[i] - first[j]).max() for i in range(4) for j in range(i)]) > 1e-3


def test_nominal_space_and_new_values_reuse_the_compiled_program(randomized_rollout):
    run, space, nominal, traces, env = randomized_rollout
    run(jax.random.PRNGKey(0), space)
    wider = space.replace(dists={k: uniform(0.9, 1.1, relative=True) for k in space.dists})
    final, (_, (params, _, _)) = run(jax.random.PRNGKey(1), wider)
    assert len(traces) == 1  # distributions are data: new ranges do not retrace
    assert np.all(np.abs(np.asarray(params.body_mass_scale)[:, :, 1:] - 1) <= 0.1 + 1e-6)
    # The carried state is the physics state plus the factors: no mjx.Model or mjx.Data inside.
    per_env = sum(np.asarray(x).nbytes for x in jax.tree.leaves(final)) // 4
    assert per_env < 600, per_env
    # The nominal space runs in the same program too, and draws nothing.
    point = make_param_space(nominal, {k: uniform(1.0, 1.0, relative=True) for k in space.dists})
    _, (_, (params, _, _)) = run(jax.random.PRNGKey(2), point)
    assert len(traces) == 1 and np.all(np.asarray(params.gear_scale) == 1.0)


def test_cheetah_task_rewards_follow_the_maml_definitions():
    vel, direction = HalfCheetahVel(), HalfCheetahDir()
    assert vel.max_steps == direction.max_steps == 200
    before = vel.make_state(jnp.zeros(9), jnp.zeros(9))
    after = before.replace(qpos=before.qpos.at[0].set(0.05 * 1.5))  # v_x = 1.5 m/s over dt 0.05
    action = jnp.full((6,), 0.5)
    params = vel.default_params().replace(target_velocity=jnp.float32(0.4))
    reward, terminated, info = vel._reward(before, after, None, action, params)
    assert float(info["x_velocity"]) == pytest.approx(1.5, rel=1e-5)
    assert float(reward) == pytest.approx(-abs(1.5 - 0.4) - 0.05 * 6 * 0.25, rel=1e-5)
    assert not bool(terminated)
    reward, _, _ = direction._reward(before, after, None, action,
                                     direction.default_params().replace(direction=jnp.float32(-1)))
    assert float(reward) == pytest.approx(-1.5 - 0.05 * 1.5, rel=1e-5)
    tasks = vel.task_space().sample(jax.random.PRNGKey(0), (2000,)).target_velocity
    assert 0 <= float(tasks.min()) < 0.05 and 1.95 < float(tasks.max()) <= 2.0
    assert HalfCheetahVel(target_range=(0.5, 3)).task_space().dists["target_velocity"].high == 3
    with pytest.raises(ValueError, match="target_range"):
        HalfCheetahVel(target_range=(2.0, 2.0))
    dirs = np.asarray(direction.task_space().sample(jax.random.PRNGKey(0), (200,)).direction)
    assert set(np.unique(dirs)) == {-1.0, 1.0}


def test_ant_task_rewards():
    ant_dir, ant_goal = AntDir(), AntGoal()
    data = SimpleNamespace(_impl=SimpleNamespace(cfrc_ext=jnp.zeros((ant_dir.mj_model.nbody, 6))))
    qpos = jnp.asarray(ant_dir.mj_model.qpos0, jnp.float32)
    before = ant_dir.make_state(qpos, jnp.zeros(14))
    moved = qpos.at[0].add(0.05 * 2.0).at[1].add(0.05 * -1.0)
    after = before.replace(qpos=moved, tracked_xy=moved[:2])  # v_xy = (2, -1)
    zero = jnp.zeros(8)
    params = ant_dir.default_params().replace(direction_angle=jnp.float32(np.pi / 2))
    reward, terminated, _ = ant_dir._reward(before, after, data, zero, params)
    assert float(reward) == pytest.approx(-1.0 + 1.0, abs=1e-5)  # v_y + healthy bonus
    assert not bool(terminated)
    goal = ant_goal.default_params().replace(goal=jnp.asarray([1.0, 1.0]))
    reward, _, _ = ant_goal._reward(before, after, data, zero, goal)
    expected = -(abs(float(moved[0]) - 1) + abs(float(moved[1]) - 1)) + 1.0
    assert float(reward) == pytest.approx(expected, abs=1e-5)
    goals = np.asarray(ant_goal.task_space().sample(jax.random.PRNGKey(0), (500,)).goal)
    assert goals.shape == (500, 2) and np.abs(goals).max() <= 3.0 and np.abs(goals).max() > 2.5
    angles = np.asarray(ant_dir.task_space().sample(jax.random.PRNGKey(0), (100,)).direction_angle)
    np.testing.assert_allclose(np.unique(angles), [0.0, np.pi], atol=1e-6)
