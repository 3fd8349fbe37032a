"""2-D point navigation whose sensors and walls are data: the source/target pairs of domain
adaptation (``experiments.domain_adaptation``).

A point at ``position`` moves by its clipped velocity command towards a fixed ``goal``; reward is
the negative distance to the goal after the step (as ``PointNav2D``); the start is ``params.start``
(randomize it with a ``ParamSpace`` for random starts). Two things a target domain may change:

* **What the agent sees** (DANN): ``obs = [obs_matrix @ position + obs_bias, distractors]`` with
  ``num_distractors`` (static) extra entries ``distractor_std * N(0, 1)`` drawn afresh every step.
  The source sensor is the identity with silent distractors (``distractor_std = 0``).
* **How it moves** (DARC): a wall segment ``x = wall_x, y in [wall_low, wall_high]`` that the point
  cannot cross when ``wall_on = 1``: a step whose segment crosses it keeps its ``x`` (the point
  slides along the wall) and still moves in ``y``.

Shapes (unbatched): obs [2 + num_distractors] float32; action [2] float32 in ``+-max_speed``;
reward [] float32; never terminates, truncated after ``max_steps``.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from envs.point_nav import safe_norm
from metarl_jax.core.env import Box, Env, EnvParams, Info, PRNGKey, time_limit


@struct.dataclass
class DomainNavParams(EnvParams):
    """Task, sensor and wall; arrays in ``default_params()``.

    Attributes:
        goal: [2] target position.  start: [2] position at reset.  max_speed: [] per-coordinate
        velocity bound.  obs_matrix: [2, 2] and obs_bias: [2], the sensor's affine map of the
        position.  distractor_std: [] scale of the distractor entries.  wall_on: [] 1.0 if the
        wall exists.  wall_x, wall_low, wall_high: [] the wall segment.
    """

    goal: jax.Array = (0.5, 0.3)
    start: jax.Array = (0.0, 0.0)
    max_speed: jax.Array = 0.1
    obs_matrix: jax.Array = ((1.0, 0.0), (0.0, 1.0))
    obs_bias: jax.Array = (0.0, 0.0)
    distractor_std: jax.Array = 0.0
    wall_on: jax.Array = 0.0
    wall_x: jax.Array = 0.5
    wall_low: jax.Array = -0.6
    wall_high: jax.Array = 0.6


@struct.dataclass
class DomainNavState:
    """Attributes: position [2]; time [] int32 steps taken."""

    position: jax.Array
    time: jax.Array


def blocked_by_wall(position: jax.Array, new_position: jax.Array, params: DomainNavParams
                    ) -> jax.Array:
    """``[]`` bool: the segment ``position -> new_position`` (both [2]) meets the wall."""
    before = position[0] - params.wall_x
    after = new_position[0] - params.wall_x
    crosses = (before * after <= 0.0) & (before != after)
    fraction = jnp.where(crosses, before / jnp.where(crosses, before - after, 1.0), 0.0)
    y = position[1] + fraction * (new_position[1] - position[1])
    return (params.wall_on > 0.5) & crosses & (y >= params.wall_low) & (y <= params.wall_high)


class DomainNav2D(Env):
    """Point navigation with an affine sensor, distractor entries and an optional wall."""

    def __init__(self, max_steps: int = 30, num_distractors: int = 0):
        if int(max_steps) < 1 or int(num_distractors) < 0:
            raise ValueError(f"DomainNav2D needs max_steps >= 1 and num_distractors >= 0, got "
                             f"{max_steps}, {num_distractors}")
        self.max_steps = int(max_steps)
        self.num_distractors = int(num_distractors)

    def default_params(self) -> DomainNavParams:
        return params_as_arrays(DomainNavParams())

    def reset(self, key: PRNGKey, params: DomainNavParams) -> Tuple[DomainNavState, jax.Array]:
        state = DomainNavState(position=jnp.asarray(params.start, jnp.float32),
                               time=jnp.zeros((), jnp.int32))
        return state, self.observe(key, state.position, params)

    def step(self, key: PRNGKey, state: DomainNavState, action: jax.Array,
             params: DomainNavParams) -> Tuple[DomainNavState, jax.Array, jax.Array, jax.Array,
                                               Info]:
        velocity = jnp.clip(action, -params.max_speed, params.max_speed)
        moved = state.position + velocity
        blocked = blocked_by_wall(state.position, moved, params)
        position = jnp.where(blocked, jnp.stack([state.position[0], moved[1]]), moved)
        reward = -safe_norm(position - params.goal)
        time = state.time + 1
        truncated = time_limit(time, self.max_steps)
        terminated = jnp.zeros((), jnp.bool_)
        info = {"truncated": truncated, "terminated": terminated, "blocked": blocked}
        new_state = DomainNavState(position=position, time=time)
        return (new_state, self.observe(key, position, params), reward, terminated | truncated,
                info)

    def observe(self, key: PRNGKey, position: jax.Array, params: DomainNavParams) -> jax.Array:
        """The sensor reading ``[obs_size]`` of ``position`` [2] (module doc)."""
        seen = jnp.asarray(params.obs_matrix) @ position + params.obs_bias
        noise = jax.random.normal(key, (self.num_distractors,), jnp.float32)
        return jnp.concatenate([seen, params.distractor_std * noise]).astype(jnp.float32)

    @property
    def observation_space(self) -> Box:
        size = 2 + self.num_distractors
        return Box(low=jnp.full((size,), -jnp.inf, jnp.float32),
                   high=jnp.full((size,), jnp.inf, jnp.float32), shape=(size,))

    @property
    def action_space(self) -> Box:
        max_speed = DomainNavParams().max_speed
        return Box(low=jnp.full((2,), -max_speed, jnp.float32),
                   high=jnp.full((2,), max_speed, jnp.float32), shape=(2,))
