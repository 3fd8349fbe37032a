"""``rollout``: ``lax.scan`` over time of an env ``vmap``-ed over a batch of envs.

Time-major throughout: a ``Trajectory`` holds arrays of shape ``[T, N, ...]``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax

from metarl_jax.randomization.keys import like_key, unrolled_key

# policy(key, obs[N, obs_size]) -> (action[N, ...], extras: dict of [N, ...] arrays)
Policy = Callable[[jax.Array, jax.Array], Tuple[jax.Array, Dict[str, jax.Array]]]


class Trajectory(NamedTuple):
    """One rollout; every field is ``[T, N, ...]``.

    ``obs`` is the observation the action was chosen from; ``final_obs`` the observation reached
    by the step (before any auto-reset), which is what a truncated episode bootstraps from.
    ``done = terminated | truncated``; only ``terminated`` cuts the bootstrap.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    done: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    extras: Dict[str, jax.Array]
    info: Dict[str, jax.Array]


class RolloutCarry(NamedTuple):
    key: jax.Array
    env_state: Any
    obs: jax.Array


def rollout(
    policy: Policy,
    env,
    key: jax.Array,
    env_state: Any,
    obs: jax.Array,
    params: Any,
    num_steps: int,
    params_axis: Optional[int] = None,
    info_keys: Tuple[str, ...] = (),
) -> Tuple[RolloutCarry, Trajectory]:
    """Run ``num_steps`` steps of ``N`` envs.

    Args:
        policy: ``policy(key, obs[N, obs_size]) -> (action[N, ...], extras)``.
        env: an ``Env`` (usually ``EpisodeStats(AutoReset(...))``, so episodes restart in place).
        env_state, obs: batched ``[N, ...]`` env state and current observations.
        params: env params, shared by all envs (``params_axis=None``) or batched on axis 0.
        num_steps: ``T``, static.
        info_keys: which entries of the env's ``info`` to keep in ``Trajectory.info``.

    Returns:
        ``(RolloutCarry(key, env_state, obs) after the last step, Trajectory[T, N, ...])``.
    """
    num_envs = obs.shape[0]
    if hasattr(env, "step_batch"):  # wrappers: a batch-level step, bit-identical to vmap(step)
        def step_env(env_key, state, action, params):
            # One key for the batch: env i's is split(env_key, N)[i], hashed where it is used
            # (AutoReset hashes only the keys of the envs it redraws).
            return env.step_batch(env_key, state, action, params, params_axis)
    else:
        def step_env(env_key, state, action, params):
            return jax.vmap(env.step, in_axes=(0, 0, 0, params_axis))(
                jax.random.split(env_key, num_envs), state, action, params)

    def one_step(carry: RolloutCarry, _):
        # The step's keys through straight-line Threefry (same bits; JAX's CPU lowering is a
        # while loop per hash, which on small batches costs more than the hash itself).
        key, policy_key, env_key = jax.random.split(unrolled_key(carry.key), 3)
        key = like_key(key, carry.key)
        action, extras = policy(policy_key, carry.obs)
        env_state, next_obs, reward, done, info = step_env(
            env_key, carry.env_state, action, params)
        final_obs = info.get("final_obs", next_obs)
        transition = Trajectory(
            obs=carry.obs,
            action=action,
            reward=reward,
            done=done,
            terminated=info.get("terminated", done & ~info["truncated"]),
            truncated=info["truncated"],
            final_obs=final_obs,
            extras=extras,
            info={k: info[k] for k in info_keys},
        )
        return RolloutCarry(key, env_state, next_obs), transition

    return jax.lax.scan(one_step, RolloutCarry(key, env_state, obs), None, length=num_steps)


def reset_batch(env, key: jax.Array, params: Any, num_envs: int, params_axis: Optional[int] = None):
    """``vmap``-ed reset of ``num_envs`` envs. Returns ``(env_state[N], obs[N, obs_size])``."""
    keys = jax.random.split(key, num_envs)
    return jax.vmap(env.reset, in_axes=(0, params_axis))(keys, params)
