"""IFS's 2-link -> 3-link arm transfer for ``experiments.domain_adaptation --method ifs``
(Gupta et al. 2017; the setting is described in that module's doc): the two arms, the proxy
task's goals and the three PPO runs (``ifs``, ``no_transfer``, ``random_features``)."""

from __future__ import annotations

from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.planar_arm import (
    PlanarArm,
    forward_kinematics,
    joint_features,
    paired_states,
    scripted_angles,
    straight_reach,
)
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.ppo import PPO
from metarl_jax.io.training_loop import train_phase
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.transfer import ifs as ifs_lib
from metarl_jax.transfer.evaluation import seed_evaluator

SOURCE_LINKS, TARGET_LINKS, NEW_GOAL = (0.55, 0.45), (0.4, 0.35, 0.25), (-0.52, 0.3)


def ifs_arms(steps: int, radius: float):
    """``(source env, target env, source params, target params, start end-effector [2])``."""
    source_env, target_env = PlanarArm(2, steps), PlanarArm(3, steps)
    goal, radius = jnp.asarray(NEW_GOAL), jnp.float32(radius)
    source = source_env.default_params().replace(goal_radius=radius,
        link_lengths=jnp.asarray(SOURCE_LINKS), start_angles=jnp.array([0.0, 1.2]), goal=goal)
    start = forward_kinematics(source.start_angles, source.link_lengths)
    target = target_env.default_params().replace(link_lengths=jnp.asarray(TARGET_LINKS),
                                                 goal=goal, goal_radius=radius)
    settle = scripted_angles(target, jnp.broadcast_to(start, (300, 2)))[-1]  # same start point
    return source_env, target_env, source, target.replace(start_angles=settle), start


def proxy_goals(seed: int, count: int) -> np.ndarray:
    """``[count, 2]`` reach goals: radius in [0.35, 0.95], angle in [-30, 170] degrees, and at
    least 0.3 from ``NEW_GOAL`` (the new skill's region is not in the proxy task)."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < count:
        r, a = rng.uniform(0.35, 0.95), np.deg2rad(rng.uniform(-30, 170))
        g = np.array([r * np.cos(a), r * np.sin(a)])
        if np.linalg.norm(g - np.asarray(NEW_GOAL)) >= 0.3:
            out.append(g)
    return np.stack(out).astype(np.float32)


def train_ifs_methods(run_dir, c: ifs_lib.IFSConfig, num_seeds: int, skill_radius: float,
                      log_every: int, updates_per_chunk: int, seed: int
                      ) -> Tuple[Dict[str, Tuple[np.ndarray, dict]], dict]:
    """IFS's three runs (module doc of ``experiments.domain_adaptation``), each a checkpointed
    phase of ``run_dir`` over ``num_seeds`` vmapped seeds. Returns ``({method: (target return
    per seed [num_seeds], extra fields)}, IFS-only diagnostics)``."""
    n = num_seeds
    steps = c.ppo.num_steps
    source_env, target_env, source, target, start = ifs_arms(steps, skill_radius)
    reach = lambda goal: straight_reach(start, goal, steps, c.reach_steps)
    pairs = paired_states(source, target, jax.vmap(reach)(jnp.asarray(
        proxy_goals(seed, c.num_proxy_goals))))
    enc_keys = jax.random.split(jax.random.PRNGKey(seed + 11), n)
    sizes = (pairs[0].shape[-1], pairs[1].shape[-1])
    trained, history = jax.jit(jax.vmap(ifs_lib.train_encoders, in_axes=(0, 0, None, None, None)))(
        enc_keys, ifs_lib.init_encoders_seeds(enc_keys, c.encoder, *sizes), c.encoder, *pairs)
    random = ifs_lib.init_encoders_seeds(jax.random.split(jax.random.PRNGKey(seed + 12), n),
                                         c.encoder, *sizes)
    # The new skill: the source's scripted reach to NEW_GOAL; the target's own scripted reach
    # along the same waypoints is only a reference (and a check of the features' alignment).
    skill = reach(jnp.asarray(NEW_GOAL))
    demo = {d: joint_features(scripted_angles(p, skill)[1:]) for d, p in
            (("source", source), ("target", target))}
    encode = lambda params, x: ifs_lib.encode(params, c.encoder, x)

    def reward_params(pair, alpha):
        scale = ifs_lib.feature_scale(encode(pair.f, pairs[0]))
        aligned = jnp.linalg.norm(encode(pair.g, demo["target"]) - encode(pair.f, demo["source"]),
                                  axis=-1).mean() / scale
        return ifs_lib.FeatureRewardParams(
            env=target, encoder=pair.g, targets=encode(pair.f, demo["source"]),
            alpha=alpha, scale=scale), aligned

    reward_params_seeds = jax.jit(jax.vmap(reward_params, in_axes=(0, None)))  # compiles once
    runs = {"ifs": (trained, c.alpha), "no_transfer": (trained, 0.0),
            "random_features": (random, c.alpha)}
    ppo = PPO(ifs_lib.FeatureReward(target_env, c.encoder, sizes[1]))
    ppo_keys = jax.random.split(jax.random.PRNGKey(seed), n)
    evaluate = seed_evaluator(lambda s: ppo.make_policy(s, c.ppo, True), target_env,
                              jax.tree.map(lambda x: x[None], target), 1,
                              jax.random.PRNGKey(seed + 8))  # built once: compiles once
    in_goal = lambda p, angles: float(jnp.sum(jnp.linalg.norm(
        forward_kinematics(angles[1:], p.link_lengths) - p.goal, axis=-1) < p.goal_radius))
    results = {}
    for method, (encoders, alpha) in runs.items():
        params, aligned = reward_params_seeds(encoders, jnp.float32(alpha))
        states = train_phase(
            run_dir, method, init=lambda: jax.tree.map(lambda *xs: jnp.stack(xs), *[
                ppo.init(k, c.ppo, fixed_space(select_seed(params, i)))
                for i, k in enumerate(ppo_keys)]),
            chunk=lambda s, u: ppo.train_chunk_seeds(s, c.ppo, u, log_every=log_every),
            num_updates=c.num_updates // log_every, updates_per_chunk=updates_per_chunk,
            steps_per_update=c.ppo.batch_size * log_every * n, show=("episode_return",))
        results[method] = (np.asarray(evaluate(states))[:, 0], dict(
            alpha=float(alpha), new_skill_feature_distance=[float(a) for a in aligned]))
    diagnostics = dict(
        compiles=ppo.traces.get("train_chunk_seeds", 0),
        encoder_similarity_loss=[float(x) for x in history["similarity"][:, -1]],
        encoder_reconstruction_loss=[float(x) for x in history["reconstruction"][:, -1]],
        source_demo_return=in_goal(source, scripted_angles(source, skill)),
        target_scripted_return=in_goal(target, scripted_angles(target, skill)))
    return results, diagnostics
