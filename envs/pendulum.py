"""Pendulum swing-up, a step-for-step reproduction of gymnasium's ``Pendulum-v1``.

Reference: ``gymnasium/envs/classic_control/pendulum.py`` (``PendulumEnv``, gymnasium 1.x).

Shapes (unbatched): obs [3] float32 = (cos theta, sin theta, theta_dot); action [1] float32 torque,
clipped to ``+-params.max_torque`` inside ``step``; reward [] float32 (the state's dtype: float64
when run under ``jax.enable_x64`` with float64 state and params, as the oracle tests do);
done [] bool.

Dynamics and reward, exactly as gymnasium (theta = 0 is upright):
    u        = clip(action[0], -max_torque, max_torque)
    cost     = normalize(theta)^2 + 0.1 theta_dot^2 + 0.001 u^2      (on the pre-step state)
    theta_dot' = clip(theta_dot + (3 g / (2 l) sin(theta) + 3 / (m l^2) u) dt,
                      -max_speed, max_speed)
    theta'     = theta + theta_dot' dt                                   (semi-implicit Euler)
    reward   = -cost
Reset: theta ~ U[-pi, pi], theta_dot ~ U[-1, 1]. The env never terminates; ``truncated`` is set
after ``max_steps`` steps (200, as gymnasium's ``TimeLimit``). ``theta`` is not wrapped in the
state (gymnasium does not wrap it either), only in the cost.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from metarl_jax.core.env import Box, Env, EnvParams, Info, PRNGKey, time_limit


@struct.dataclass
class PendulumParams(EnvParams):
    """Physics of the pendulum; every field is a [] float32 array in ``default_params()``.

    Attributes:
        max_speed: bound on |theta_dot| (rad/s), applied after each velocity update.
        max_torque: bound on |u| (N m); actions beyond it are clipped.
        dt: integration step (s).
        g: gravity (m/s^2).
        m: mass (kg).
        l: length (m).
    """

    max_speed: jax.Array = 8.0
    max_torque: jax.Array = 2.0
    dt: jax.Array = 0.05
    g: jax.Array = 10.0
    m: jax.Array = 1.0
    l: jax.Array = 1.0  # noqa: E741 -- gymnasium's name for the length; a public field


@struct.dataclass
class PendulumState:
    """Attributes: theta [] (rad, unwrapped), theta_dot [] (rad/s), time [] int32 steps taken."""

    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


def angle_normalize(x: jax.Array) -> jax.Array:
    """Wrap an angle to [-pi, pi), the same floor-modulo formula as gymnasium."""
    return ((x + jnp.pi) % (2 * jnp.pi)) - jnp.pi


class Pendulum(Env):
    """Gymnasium ``Pendulum-v1`` as pure functions of ``(key, state, action, params)``."""

    def __init__(self, max_steps: int = 200):
        self.max_steps = int(max_steps)

    def default_params(self) -> PendulumParams:
        return params_as_arrays(PendulumParams())

    def reset(self, key: PRNGKey, params: PendulumParams) -> Tuple[PendulumState, jax.Array]:
        high = jnp.array([jnp.pi, 1.0])
        theta, theta_dot = jax.random.uniform(key, (2,), minval=-high, maxval=high)
        state = PendulumState(theta=theta, theta_dot=theta_dot, time=jnp.zeros((), jnp.int32))
        return state, self._obs(state)

    def step(
        self, key: PRNGKey, state: PendulumState, action: jax.Array, params: PendulumParams
    ) -> Tuple[PendulumState, jax.Array, jax.Array, jax.Array, Info]:
        del key  # deterministic dynamics
        th, thdot = state.theta, state.theta_dot
        g, m, length, dt = params.g, params.m, params.l, params.dt

        u = jnp.clip(action[0], -params.max_torque, params.max_torque)
        costs = angle_normalize(th) ** 2 + 0.1 * thdot**2 + 0.001 * (u**2)

        new_thdot = thdot + (3 * g / (2 * length) * jnp.sin(th) + 3.0 / (m * length**2) * u) * dt
        new_thdot = jnp.clip(new_thdot, -params.max_speed, params.max_speed)
        new_th = th + new_thdot * dt

        time = state.time + 1
        new_state = PendulumState(theta=new_th, theta_dot=new_thdot, time=time)
        truncated = time_limit(time, self.max_steps)
        terminated = jnp.zeros((), jnp.bool_)
        info = {"truncated": truncated, "terminated": terminated}
        return new_state, self._obs(new_state), -costs, terminated | truncated, info

    @staticmethod
    def _obs(state: PendulumState) -> jax.Array:
        # float32 like gymnasium's observation, whatever precision the state is integrated in.
        return jnp.stack(
            [jnp.cos(state.theta), jnp.sin(state.theta), state.theta_dot]
        ).astype(jnp.float32)

    @property
    def observation_space(self) -> Box:
        high = jnp.array([1.0, 1.0, PendulumParams().max_speed], jnp.float32)
        return Box(low=-high, high=high, shape=(3,))

    @property
    def action_space(self) -> Box:
        max_torque = PendulumParams().max_torque
        return Box(low=jnp.full((1,), -max_torque, jnp.float32),
                   high=jnp.full((1,), max_torque, jnp.float32), shape=(1,))
