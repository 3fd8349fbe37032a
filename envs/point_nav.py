"""2-D point navigation, the MAML paper's navigation task (Finn et al. 2017, sec. 5.3).

A point starts at ``params.start`` and moves by its (clipped) velocity command each step; the
reward is the negative distance to a goal that is NOT observed, so the goal is a task for
meta-RL: a batch of tasks is a batch of ``PointNavParams`` with different ``goal`` leaves.

Shapes (unbatched): obs [2] float32 = position (or [4] = position, goal with
``goal_in_obs=True``, for multi-task baselines that are told the task); action [2] float32
velocity, clipped elementwise to ``+-params.max_speed``; reward [] float32; done [] bool.

    position' = position + clip(action, -max_speed, max_speed)
    reward    = -|| position' - goal ||_2          (distance after the step)
The env never terminates; ``truncated`` is set after ``max_steps`` steps (100, as in MAML).
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from metarl_jax.core.env import Box, Env, EnvParams, Info, PRNGKey, time_limit


@struct.dataclass
class PointNavParams(EnvParams):
    """Task and actuator limit; arrays in ``default_params()``.

    Attributes:
        goal: [2] float32, the (hidden) target position.
        max_speed: [] float32, per-coordinate bound on the velocity command.
        start: [2] float32, the position at reset.
    """

    goal: jax.Array = (0.3, -0.2)
    max_speed: jax.Array = 0.1
    start: jax.Array = (0.0, 0.0)


@struct.dataclass
class PointNavState:
    """Attributes: position [2]; time [] int32 steps taken."""

    position: jax.Array
    time: jax.Array


def safe_norm(x: jax.Array) -> jax.Array:
    """Euclidean norm of ``x`` [..., d] whose gradient at 0 is 0 instead of NaN (reaching the goal
    exactly must not poison a meta-gradient). NaN stays NaN: a diverged policy's NaN position
    must not score the best possible reward (``sq * 0`` is 0 at 0 and NaN for NaN)."""
    sq = jnp.sum(jnp.square(x), axis=-1)
    positive = sq > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), sq * 0.0)


class PointNav2D(Env):
    """Point-mass navigation to a hidden goal in the plane."""

    def __init__(self, max_steps: int = 100, goal_in_obs: bool = False):
        self.max_steps = int(max_steps)
        self.goal_in_obs = bool(goal_in_obs)

    def default_params(self) -> PointNavParams:
        return params_as_arrays(PointNavParams())

    def reset(self, key: PRNGKey, params: PointNavParams) -> Tuple[PointNavState, jax.Array]:
        del key  # the start is part of the task (params), not random
        state = PointNavState(position=jnp.asarray(params.start), time=jnp.zeros((), jnp.int32))
        return state, self._obs(state, params)

    def step(
        self, key: PRNGKey, state: PointNavState, action: jax.Array, params: PointNavParams
    ) -> Tuple[PointNavState, jax.Array, jax.Array, jax.Array, Info]:
        del key  # deterministic dynamics
        velocity = jnp.clip(action, -params.max_speed, params.max_speed)
        position = state.position + velocity
        reward = -safe_norm(position - params.goal)

        time = state.time + 1
        new_state = PointNavState(position=position, time=time)
        truncated = time_limit(time, self.max_steps)
        terminated = jnp.zeros((), jnp.bool_)
        info = {"truncated": truncated, "terminated": terminated}
        return new_state, self._obs(new_state, params), reward, terminated | truncated, info

    def _obs(self, state: PointNavState, params: PointNavParams) -> jax.Array:
        obs = state.position
        if self.goal_in_obs:  # static flag: a Python branch is fine
            obs = jnp.concatenate([obs, params.goal])
        return obs.astype(jnp.float32)

    @property
    def observation_space(self) -> Box:
        size = 4 if self.goal_in_obs else 2
        return Box(low=jnp.full((size,), -jnp.inf, jnp.float32),
                   high=jnp.full((size,), jnp.inf, jnp.float32), shape=(size,))

    @property
    def action_space(self) -> Box:
        max_speed = PointNavParams().max_speed
        return Box(low=jnp.full((2,), -max_speed, jnp.float32),
                   high=jnp.full((2,), max_speed, jnp.float32), shape=(2,))
