"""Cart-pole balancing, a step-for-step reproduction of gymnasium's ``CartPole-v1``.

Reference: ``gymnasium/envs/classic_control/cartpole.py`` (``CartPoleEnv``, gymnasium 1.x,
``kinematics_integrator="euler"``, default reward 1.0 per step).

Shapes (unbatched): obs [4] float32 = (x, x_dot, theta, theta_dot); reward [] float32 (1.0 every
step, the terminating one included); done [] bool.
    ``CartPole``: action [] int32 in {0, 1}, force = -force_mag / +force_mag (gymnasium's rule:
    ``force_mag if action == 1 else -force_mag``).
    ``CartPoleContinuous``: action [1] float32, clipped to [-1, 1], force = force_mag * action.
Both variants share one dynamics function (``cartpole_dynamics``), so action +1 / -1 of the
continuous variant equals action 1 / 0 of the discrete one.

Reset: every state entry ~ U[-0.05, 0.05]. ``terminated`` when |x| > x_threshold or
|theta| > theta_threshold_radians after the step; ``truncated`` after ``max_steps`` steps (500, as
gymnasium's ``TimeLimit`` for v1). The derived ``total_mass`` and ``polemass_length`` are computed
from the params inside every step, so randomizing a mass or the length stays consistent.
"""

from __future__ import annotations

import math
from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from metarl_jax.core.env import Box, Discrete, Env, EnvParams, Info, PRNGKey, time_limit


@struct.dataclass
class CartPoleParams(EnvParams):
    """Physics and failure thresholds; every field is a [] float32 array in ``default_params()``.

    Attributes:
        gravity: m/s^2.
        masscart, masspole: kg.
        length: HALF the pole's length (m), as in gymnasium.
        force_mag: magnitude of the push (N).
        tau: integration step (s).
        x_threshold: |x| beyond which the episode terminates (m).
        theta_threshold_radians: |theta| beyond which the episode terminates (12 degrees).
    """

    gravity: jax.Array = 9.8
    masscart: jax.Array = 1.0
    masspole: jax.Array = 0.1
    length: jax.Array = 0.5
    force_mag: jax.Array = 10.0
    tau: jax.Array = 0.02
    x_threshold: jax.Array = 2.4
    theta_threshold_radians: jax.Array = 12 * 2 * math.pi / 360


@struct.dataclass
class CartPoleState:
    """Attributes: x, x_dot, theta, theta_dot: []; time: [] int32 steps taken."""

    x: jax.Array
    x_dot: jax.Array
    theta: jax.Array
    theta_dot: jax.Array
    time: jax.Array


def cartpole_dynamics(state: CartPoleState, force: jax.Array,
                      params: CartPoleParams) -> CartPoleState:
    """One explicit-Euler step of the cart-pole under ``force`` [] (N); ``time`` is left unchanged.

    The operations are in gymnasium's order, so float64 runs agree with it to rounding.
    """
    total_mass = params.masspole + params.masscart
    polemass_length = params.masspole * params.length
    costheta = jnp.cos(state.theta)
    sintheta = jnp.sin(state.theta)

    temp = (force + polemass_length * jnp.square(state.theta_dot) * sintheta) / total_mass
    thetaacc = (params.gravity * sintheta - costheta * temp) / (
        params.length * (4.0 / 3.0 - params.masspole * jnp.square(costheta) / total_mass)
    )
    xacc = temp - polemass_length * thetaacc * costheta / total_mass

    return state.replace(
        x=state.x + params.tau * state.x_dot,
        x_dot=state.x_dot + params.tau * xacc,
        theta=state.theta + params.tau * state.theta_dot,
        theta_dot=state.theta_dot + params.tau * thetaacc,
    )


class _CartPoleBase(Env):
    """Reset, termination, observation and spaces shared by both action variants."""

    def __init__(self, max_steps: int = 500):
        self.max_steps = int(max_steps)

    def default_params(self) -> CartPoleParams:
        return params_as_arrays(CartPoleParams())

    def reset(self, key: PRNGKey, params: CartPoleParams) -> Tuple[CartPoleState, jax.Array]:
        x, x_dot, theta, theta_dot = jax.random.uniform(key, (4,), minval=-0.05, maxval=0.05)
        state = CartPoleState(x=x, x_dot=x_dot, theta=theta, theta_dot=theta_dot,
                              time=jnp.zeros((), jnp.int32))
        return state, self._obs(state)

    def _step_with_force(
        self, state: CartPoleState, force: jax.Array, params: CartPoleParams
    ) -> Tuple[CartPoleState, jax.Array, jax.Array, jax.Array, Info]:
        new_state = cartpole_dynamics(state, force, params)
        new_state = new_state.replace(time=state.time + 1)
        terminated = (
            (new_state.x < -params.x_threshold)
            | (new_state.x > params.x_threshold)
            | (new_state.theta < -params.theta_threshold_radians)
            | (new_state.theta > params.theta_threshold_radians)
        )
        truncated = time_limit(new_state.time, self.max_steps)
        reward = jnp.ones((), jnp.float32)
        info = {"truncated": truncated, "terminated": terminated}
        return new_state, self._obs(new_state), reward, terminated | truncated, info

    @staticmethod
    def _obs(state: CartPoleState) -> jax.Array:
        return jnp.stack([state.x, state.x_dot, state.theta, state.theta_dot]).astype(jnp.float32)

    @property
    def observation_space(self) -> Box:
        defaults = CartPoleParams()
        high = jnp.array(
            [defaults.x_threshold * 2, jnp.inf, defaults.theta_threshold_radians * 2, jnp.inf],
            jnp.float32,
        )
        return Box(low=-high, high=high, shape=(4,))


class CartPole(_CartPoleBase):
    """Gymnasium ``CartPole-v1``: two discrete actions, 0 pushes left and 1 pushes right."""

    def step(
        self, key: PRNGKey, state: CartPoleState, action: jax.Array, params: CartPoleParams
    ) -> Tuple[CartPoleState, jax.Array, jax.Array, jax.Array, Info]:
        del key  # deterministic dynamics
        force = jnp.where(action == 1, params.force_mag, -params.force_mag)
        return self._step_with_force(state, force, params)

    @property
    def action_space(self) -> Discrete:
        return Discrete(2)


class CartPoleContinuous(_CartPoleBase):
    """``CartPole-v1`` dynamics with a continuous push: action [1] in [-1, 1],
    force = force_mag * a."""

    def step(
        self, key: PRNGKey, state: CartPoleState, action: jax.Array, params: CartPoleParams
    ) -> Tuple[CartPoleState, jax.Array, jax.Array, jax.Array, Info]:
        del key  # deterministic dynamics
        force = params.force_mag * jnp.clip(action[0], -1.0, 1.0)
        return self._step_with_force(state, force, params)

    @property
    def action_space(self) -> Box:
        return Box(low=-jnp.ones((1,), jnp.float32), high=jnp.ones((1,), jnp.float32), shape=(1,))
