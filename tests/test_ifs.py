"""Invariant feature spaces (Gupta et al. 2017): the planar arms against closed-form kinematics,
the paired loss against hand-computed values, the feature reward against its formula, and the
proxy task's time-aligned pairs. No training program is compiled here (the experiment's quick
run in tests/test_domain_adaptation.py trains end to end)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.planar_arm import (
    PlanarArm,
    forward_kinematics,
    joint_features,
    paired_states,
    scripted_angles,
    straight_reach,
)
from metarl_jax.transfer import ifs

CFG = ifs.EncoderConfig(feature_size=3, hidden_sizes=(8,), num_steps=40, batch_size=16)
# Jitted once here: op-by-op (eager) flax on a loaded 2-core machine costs seconds per test.
init_encoders = jax.jit(ifs.init_encoders, static_argnums=(2, 3))
paired_loss = jax.jit(ifs.paired_loss)


def closed_form_ee(angles, lengths):
    """End effector by the textbook sum, one link at a time in float64."""
    x = y = total = 0.0
    for q, length in zip(angles, lengths):
        total += q
        x, y = x + length * np.cos(total), y + length * np.sin(total)
    return np.array([x, y])


@pytest.mark.parametrize("num_links", [2, 3])
def test_forward_kinematics_matches_closed_form(num_links):
    rng = np.random.default_rng(num_links)
    angles = rng.uniform(-np.pi, np.pi, (64, num_links))
    lengths = rng.uniform(0.1, 1.0, num_links)
    got = np.asarray(forward_kinematics(jnp.asarray(angles, jnp.float32),
                                        jnp.asarray(lengths, jnp.float32)))
    want = np.stack([closed_form_ee(a, lengths) for a in angles])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_arm_step_dynamics_reward_and_obs():
    env = envs.make("PlanarArm", num_links=3, max_steps=5)
    params = env.default_params().replace(damping=jnp.array([1.0, 2.0, 4.0]))
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    env.step = jax.jit(env.step)  # this instance only: one compile for the three steps
    assert obs.shape == (7,) and env.action_size == 3
    action = jnp.array([1.0, 3.0, -0.5])  # the middle entry is clipped to 1
    state, obs, reward, done, _ = env.step(jax.random.PRNGKey(1), state, action, params)
    want = np.asarray(params.start_angles) + 0.1 * np.array([1.0, 1.0 / 2.0, -0.5 / 4.0])
    np.testing.assert_allclose(state.angles, want, atol=1e-6)
    np.testing.assert_allclose(obs, np.concatenate([np.cos(want), np.sin(want), [0.2]]),
                               atol=1e-6)
    ee = closed_form_ee(want, np.asarray(params.link_lengths))
    inside = np.linalg.norm(ee - np.asarray(params.goal)) < float(params.goal_radius)
    assert float(reward) == float(inside) and not bool(done)
    # A goal on the end effector gives reward 1; differentiable through the step.
    at_goal = params.replace(goal=jnp.asarray(ee, jnp.float32))
    state0, _ = env.reset(jax.random.PRNGKey(0), at_goal)
    assert float(env.step(jax.random.PRNGKey(1), state0, action, at_goal)[2]) == 1.0
    grad = jax.grad(lambda a: forward_kinematics(
        env.step(jax.random.PRNGKey(1), state0, a, at_goal)[0].angles,
        at_goal.link_lengths).sum())(jnp.zeros(3))
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


def test_paired_loss_zero_for_identical_encoders_on_identical_states():
    pair = init_encoders(jax.random.PRNGKey(0), CFG, 4, 4)
    same = pair.replace(g=pair.f, g_dec=pair.f_dec)
    states = jax.random.normal(jax.random.PRNGKey(1), (32, 4))
    loss, parts = paired_loss(same, CFG, states, states)
    assert float(parts["similarity"]) == 0.0
    np.testing.assert_allclose(loss, CFG.recon_coef * parts["reconstruction"], rtol=1e-6)
    # Different encoders (or different states) do not align: the loss can fail.
    _, parts = paired_loss(pair, CFG, states, states)
    assert float(parts["similarity"]) > 1e-3


def test_paired_loss_against_hand_computed_terms():
    pair = init_encoders(jax.random.PRNGKey(2), CFG, 4, 6)
    src = jax.random.normal(jax.random.PRNGKey(3), (10, 4))
    tgt = jax.random.normal(jax.random.PRNGKey(4), (10, 6))
    cfg = CFG.replace(recon_coef=0.3)
    loss, parts = paired_loss(pair, cfg, src, tgt)
    encode = jax.jit(ifs.encode)
    fs, gt = (np.asarray(encode(p, cfg, x)) for p, x in ((pair.f, src), (pair.g, tgt)))
    dec = lambda p, size, z: np.asarray(jax.jit(ifs._decoder(cfg, size).apply)(p, z))
    similarity = np.mean(np.sum((fs - gt) ** 2, -1))
    reconstruction = (np.mean(np.sum((dec(pair.f_dec, 4, fs) - np.asarray(src)) ** 2, -1))
                      + np.mean(np.sum((dec(pair.g_dec, 6, gt) - np.asarray(tgt)) ** 2, -1)))
    np.testing.assert_allclose(parts["similarity"], similarity, rtol=1e-5)
    np.testing.assert_allclose(parts["reconstruction"], reconstruction, rtol=1e-5)
    np.testing.assert_allclose(loss, similarity + 0.3 * reconstruction, rtol=1e-5)


def test_proxy_pairs_are_time_aligned():
    source = PlanarArm(2, 20).default_params().replace(link_lengths=jnp.array([0.55, 0.45]),
                                                       start_angles=jnp.array([0.0, 1.2]))
    start = forward_kinematics(source.start_angles, source.link_lengths)
    goals = jnp.array([[0.2, 0.6], [0.6, -0.2], [0.8, 0.3]])

    @jax.jit
    def proxy(target):
        target = target.replace(start_angles=scripted_angles(
            target, jnp.broadcast_to(start, (200, 2)))[-1])
        waypoints = jax.vmap(lambda g: straight_reach(start, g, 20, 12))(goals)
        return target, waypoints, paired_states(source, target, waypoints)

    target, waypoints, (src, tgt) = proxy(PlanarArm(3, 20).default_params())
    np.testing.assert_allclose(waypoints[:, 11:], jnp.broadcast_to(goals[:, None], (3, 9, 2)),
                               atol=1e-6)
    assert src.shape == (60, 4) and tgt.shape == (60, 6)
    # Pairs = same time step of the same reach: the two end effectors coincide (both track).
    ee = lambda feats, p: forward_kinematics(
        jnp.arctan2(feats[:, feats.shape[1] // 2:], feats[:, : feats.shape[1] // 2]),
        p.link_lengths)
    np.testing.assert_allclose(ee(src, source), ee(tgt, target), atol=0.02)
    np.testing.assert_allclose(joint_features(jnp.zeros(2)), [1.0, 1.0, 0.0, 0.0])
    # (That training f, g on such pairs aligns the new skill's states better than random
    # encoders is asserted on the experiment's quick run, tests/test_domain_adaptation.py.)


def test_feature_reward_is_task_reward_minus_scaled_feature_distance():
    arm = PlanarArm(3, 4)
    env = ifs.FeatureReward(arm, CFG, state_size=6)
    pair = init_encoders(jax.random.PRNGKey(7), CFG, 4, 6)
    targets = jax.random.normal(jax.random.PRNGKey(8), (4, CFG.feature_size))
    params = env.default_params().replace(encoder=pair.g, targets=targets,
                                          alpha=jnp.float32(0.7), scale=jnp.float32(2.0))
    state, obs = env.reset(jax.random.PRNGKey(0), params)
    arm_state, arm_obs = arm.reset(jax.random.PRNGKey(0), params.env)
    env.step, arm.step = jax.jit(env.step), jax.jit(arm.step)  # these instances only
    np.testing.assert_array_equal(obs, arm_obs)
    for t, action in enumerate(jnp.array([[1.0, -1.0, 0.5], [0.2, 0.3, -0.4]])):
        state, obs, reward, _, _ = env.step(jax.random.PRNGKey(t), state, action, params)
        arm_state, _, task, _, _ = arm.step(jax.random.PRNGKey(t), arm_state, action, params.env)
        feature = np.asarray(ifs.encode(pair.g, CFG, obs[:6]))
        want = float(task) - 0.7 * np.linalg.norm(feature - np.asarray(targets[t])) / 2.0
        np.testing.assert_allclose(reward, want, rtol=1e-5)
    # alpha = 0: exactly the arm's reward.
    plain = params.replace(alpha=jnp.float32(0.0))
    s0, _ = env.reset(jax.random.PRNGKey(0), plain)
    a = jnp.array([0.3, 0.3, 0.3])
    assert float(env.step(jax.random.PRNGKey(0), s0, a, plain)[2]) == float(
        arm.step(jax.random.PRNGKey(0), s0, a, plain.env)[2])


def test_bad_configs_raise_one_line_errors():
    with pytest.raises(ValueError, match="alpha"):
        ifs.IFSConfig(alpha=0.0).validate()
    with pytest.raises(ValueError, match="feature_size"):
        ifs.EncoderConfig(feature_size=0).validate()
    with pytest.raises(ValueError, match="num_links"):
        PlanarArm(0)
    feats = jnp.array([[0.0, 0.0], [2.0, 0.0]])
    assert float(ifs.feature_scale(feats)) == pytest.approx(1.0)
