"""The four-goal 2-D point mass of soft Q-learning (Haarnoja et al. 2017, "Reinforcement Learning
with Deep Energy-Based Policies", sec. 6.1 / the ``MultiGoalEnv`` of its code).

A point starts near the origin and moves by its (clipped) velocity command; four goals sit at
``(+-5, 0)`` and ``(0, +-5)``. Every goal is equally good, so an optimal deterministic policy picks
one while a maximum-entropy policy keeps all four.

Shapes (unbatched): obs [2] float32 = position; action [2] float32 velocity, clipped elementwise
to ``+-params.max_speed``; reward [] float32; done [] bool.

    position' = clip(position + clip(action, -max_speed, max_speed), -bound, bound)
    reward    = - action_cost ||a||^2 - distance_cost min_g ||position' - g||^2
                + goal_reward [min_g ||position' - g|| < goal_threshold]
Reset: position ~ N(start, init_sigma^2 I) (clipped to the box). The episode terminates when a goal
is reached; ``truncated`` is set after ``max_steps`` steps (30, the paper's path length). The
paper's defaults: action_cost 30, distance_cost 1, goal_reward 10, init_sigma 0.1, threshold 1,
velocity bound 1, box [-7, 7]^2. ``info["goal"]`` is the index of the goal reached on this step
(``-1`` if none).
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from metarl_jax.core.env import Box, Env, EnvParams, Info, PRNGKey, time_limit

GOALS = ((5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0))


@struct.dataclass
class MultiGoalParams(EnvParams):
    """Task and costs; arrays in ``default_params()``.

    Attributes:
        goals: [4, 2] float32, goal positions.
        goal_reward: [] bonus on reaching a goal (the episode then ends).
        goal_threshold: [] distance at which a goal counts as reached.
        action_cost: [] coefficient of ``||a||^2``.
        distance_cost: [] coefficient of the squared distance to the nearest goal.
        max_speed: [] per-coordinate bound on the velocity command.
        bound: [] half-width of the square the point is kept in.
        start: [2] mean start position; init_sigma: [] its std.
    """

    goals: jax.Array = GOALS
    goal_reward: jax.Array = 10.0
    goal_threshold: jax.Array = 1.0
    action_cost: jax.Array = 30.0
    distance_cost: jax.Array = 1.0
    max_speed: jax.Array = 1.0
    bound: jax.Array = 7.0
    start: jax.Array = (0.0, 0.0)
    init_sigma: jax.Array = 0.1


@struct.dataclass
class MultiGoalState:
    """Attributes: position [2]; time [] int32 steps taken."""

    position: jax.Array
    time: jax.Array


def nearest_goal(position: jax.Array, goals: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """``(index [...] int32, squared distance [...])`` of the goal nearest to
    ``position[..., 2]``."""
    sq = jnp.sum((position[..., None, :] - goals) ** 2, axis=-1)  # [..., G]
    return jnp.argmin(sq, axis=-1).astype(jnp.int32), jnp.min(sq, axis=-1)


class MultiGoal2D(Env):
    """Point mass with four equally rewarding goals (module doc)."""

    def __init__(self, max_steps: int = 30):
        self.max_steps = int(max_steps)

    def default_params(self) -> MultiGoalParams:
        return params_as_arrays(MultiGoalParams())

    def reset(self, key: PRNGKey, params: MultiGoalParams) -> Tuple[MultiGoalState, jax.Array]:
        position = params.start + params.init_sigma * jax.random.normal(key, (2,))
        position = jnp.clip(position, -params.bound, params.bound).astype(jnp.float32)
        state = MultiGoalState(position=position, time=jnp.zeros((), jnp.int32))
        return state, state.position

    def step(
        self, key: PRNGKey, state: MultiGoalState, action: jax.Array, params: MultiGoalParams
    ) -> Tuple[MultiGoalState, jax.Array, jax.Array, jax.Array, Info]:
        del key  # deterministic dynamics
        action = jnp.clip(action, -params.max_speed, params.max_speed)
        position = jnp.clip(state.position + action, -params.bound, params.bound)
        goal, sq_dist = nearest_goal(position, params.goals)
        reached = sq_dist < params.goal_threshold**2
        reward = (-params.action_cost * jnp.sum(action**2) - params.distance_cost * sq_dist
                  + jnp.where(reached, params.goal_reward, 0.0))
        time = state.time + 1
        truncated = time_limit(time, self.max_steps) & ~reached
        info = {"truncated": truncated, "terminated": reached,
                "goal": jnp.where(reached, goal, -1)}
        new_state = MultiGoalState(position=position.astype(jnp.float32), time=time)
        return new_state, new_state.position, reward.astype(jnp.float32), reached | truncated, info

    @property
    def observation_space(self) -> Box:
        bound = MultiGoalParams().bound
        return Box(low=jnp.full((2,), -bound, jnp.float32),
                   high=jnp.full((2,), bound, jnp.float32), shape=(2,))

    @property
    def action_space(self) -> Box:
        max_speed = MultiGoalParams().max_speed
        return Box(low=jnp.full((2,), -max_speed, jnp.float32),
                   high=jnp.full((2,), max_speed, jnp.float32), shape=(2,))
