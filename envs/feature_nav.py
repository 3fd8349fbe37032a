"""A 2-D point that moves in four directions among ``K`` feature regions; reward = phi . w.

The successor-feature env (``experiments/successor_features.py``, Barreto et al. 2017): a task is
a weight vector ``params.w[K]`` over features that every task shares,

    phi(s, a, s') = [ ||s' - centers_k|| < radius ]_k      [K] float32 (which region s' is in)
    reward        = phi(s, a, s') . w,

so one policy's successor features evaluate it on every task. ``info["features"]`` is ``phi``.

Why discrete actions on a continuous state: GPI's ``argmax_a max_i psi_i(s, a) . w`` is then an
exact maximum over 5 actions (no inner optimizer), while the state (a position in the unit
square) still needs function approximation. The regions are not consumed (a policy that stays in
the best region keeps collecting), so each task's optimal policy is "go to the best region
reachable in time, avoid the negative ones on the way, stay".

Shapes (unbatched): obs [2] float32 position in [0, 1]^2; action [] int32 in {0: stay, 1: +x,
2: -x, 3: +y, 4: -y}, a move of ``params.step_size`` (position clipped to the square); reward []
float32; done [] bool (only truncation, after ``max_steps``).
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from metarl_jax.core.env import Box, Discrete, Env, EnvParams, Info, PRNGKey, time_limit

MOVES = ((0.0, 0.0), (1.0, 0.0), (-1.0, 0.0), (0.0, 1.0), (0.0, -1.0))


@struct.dataclass
class FeatureNavParams(EnvParams):
    """Task and layout; arrays in ``default_params()``.

    Attributes:
        w: [K] task weights (the task).
        centers: [K, 2] region centres in the unit square.
        radius: [] region radius.
        step_size: [] length of one move.
        start: [2] mean start position; start_noise: [] half-width of a uniform jitter on it.
    """

    w: jax.Array = (1.0, 0.0, 0.0, 0.0)
    centers: jax.Array = ((0.2, 0.2), (0.8, 0.2), (0.2, 0.8), (0.8, 0.8))
    radius: jax.Array = 0.15
    step_size: jax.Array = 0.06
    start: jax.Array = (0.5, 0.5)
    start_noise: jax.Array = 0.1


@struct.dataclass
class FeatureNavState:
    """Attributes: position [2]; time [] int32 steps taken."""

    position: jax.Array
    time: jax.Array


def features(position: jax.Array, params: FeatureNavParams) -> jax.Array:
    """``phi[..., K]`` of arriving at ``position[..., 2]``: 1 inside region k, else 0."""
    distance = jnp.linalg.norm(position[..., None, :] - params.centers, axis=-1)
    return (distance < params.radius).astype(jnp.float32)


class FeatureNav2D(Env):
    """Point navigation with discrete moves; the task is a weight vector over region features."""

    def __init__(self, max_steps: int = 40, num_features: int = 4):
        if max_steps < 1 or num_features < 1:
            raise ValueError(f"need max_steps >= 1 and num_features >= 1, got {max_steps}, "
                             f"{num_features}")
        self.max_steps, self.num_features = int(max_steps), int(num_features)

    def default_params(self) -> FeatureNavParams:
        params = params_as_arrays(FeatureNavParams())
        if params.w.shape != (self.num_features,):
            raise ValueError(f"FeatureNav2D(num_features={self.num_features}): the default "
                             f"layout has {params.w.shape[0]} regions; pass your own params")
        return params

    def reset(self, key: PRNGKey, params: FeatureNavParams
              ) -> Tuple[FeatureNavState, jax.Array]:
        jitter = jax.random.uniform(key, (2,), minval=-1.0, maxval=1.0) * params.start_noise
        position = jnp.clip(params.start + jitter, 0.0, 1.0)
        state = FeatureNavState(position=position, time=jnp.zeros((), jnp.int32))
        return state, position.astype(jnp.float32)

    def step(self, key: PRNGKey, state: FeatureNavState, action: jax.Array,
             params: FeatureNavParams
             ) -> Tuple[FeatureNavState, jax.Array, jax.Array, jax.Array, Info]:
        del key  # deterministic dynamics
        move = jnp.asarray(MOVES, jnp.float32)[action]
        position = jnp.clip(state.position + params.step_size * move, 0.0, 1.0)
        phi = features(position, params)
        time = state.time + 1
        truncated = time_limit(time, self.max_steps)
        info = {"truncated": truncated, "terminated": jnp.zeros((), jnp.bool_), "features": phi}
        new = FeatureNavState(position=position, time=time)
        return new, position.astype(jnp.float32), jnp.dot(phi, params.w), truncated, info

    @property
    def observation_space(self) -> Box:
        return Box(low=jnp.zeros((2,), jnp.float32), high=jnp.ones((2,), jnp.float32),
                   shape=(2,))

    @property
    def action_space(self) -> Discrete:
        return Discrete(len(MOVES))
