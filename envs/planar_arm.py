"""A planar N-link arm reaching a goal region (a reacher without inertia), pure JAX.

Two of them with different link counts are the two morphologies of invariant feature spaces
(Gupta et al. 2017; ``metarl_jax/transfer/ifs.py``): a 2-link source and a 3-link target have
different state and action sizes but share the plane their end effectors move in.

Dynamics: **overdamped joints** (velocity control), the limit of torque dynamics when damping
dominates inertia, so masses drop out and ``damping`` is the physics field::

    q'  = q + dt * max_speed * clip(action, -1, 1) / damping          (per joint)
    ee(q) = sum_i l_i (cos(q_1 + ... + q_i), sin(q_1 + ... + q_i))     (forward kinematics)
    reward = 1[ || ee(q') - goal ||_2 < goal_radius ]                  (sparse: inside the goal)

Joint angles are relative (``q_i`` is link ``i``'s angle to link ``i - 1``) and unbounded. The env
never terminates; ``truncated`` is set after ``max_steps`` steps.

Shapes (unbatched, ``N = num_links``): obs [2 N + 1] float32 = (cos q [N], sin q [N], t / T);
the first ``2 N`` entries are ``joint_features(q)``, the state an IFS encoder sees; action [N]
float32 in ``[-1, 1]``; reward [] float32; done [] bool.

Also here, for the proxy task of IFS: a scripted reaching controller (``ik_action``, damped least
squares on the Jacobian), ``scripted_angles`` (an arm tracking end-effector waypoints) and
``paired_states`` (two arms tracking the same waypoints: time-aligned pairs).
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from metarl_jax.core.env import Box, Env, EnvParams, Info, PRNGKey, time_limit


@struct.dataclass
class PlanarArmParams(EnvParams):
    """Physics and task of one arm (``N`` links); arrays in ``default_params()``.

    Attributes:
        link_lengths: [N] float32, lengths l_i.
        damping: [N] float32, > 0; joint speed = max_speed * action / damping.
        max_speed: [] float32, joint speed (rad/s) of a full action at damping 1.
        dt: [] float32, step (s).
        start_angles: [N] float32, joint angles at reset.
        goal: [2] float32, centre of the goal region.
        goal_radius: [] float32, radius of the goal region.
    """

    link_lengths: jax.Array = (0.5, 0.5)
    damping: jax.Array = (1.0, 1.0)
    start_angles: jax.Array = (0.0, 0.6)
    max_speed: jax.Array = 1.0
    dt: jax.Array = 0.1
    goal: jax.Array = (0.0, 0.8)
    goal_radius: jax.Array = 0.1


@struct.dataclass
class PlanarArmState:
    """Attributes: angles [N] (rad, relative joint angles); time [] int32 steps taken."""

    angles: jax.Array
    time: jax.Array


def forward_kinematics(angles: jax.Array, link_lengths: jax.Array) -> jax.Array:
    """End-effector position ``[..., 2]`` of joint ``angles [..., N]`` with ``link_lengths [N]``."""
    absolute = jnp.cumsum(angles, axis=-1)
    return jnp.stack([jnp.sum(link_lengths * jnp.cos(absolute), -1),
                      jnp.sum(link_lengths * jnp.sin(absolute), -1)], -1)


def joint_features(angles: jax.Array) -> jax.Array:
    """``(cos q, sin q)``: ``[..., 2 N]`` from ``angles [..., N]`` (continuous in the angles)."""
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], -1)


def advance(angles: jax.Array, action: jax.Array, params: PlanarArmParams) -> jax.Array:
    """The overdamped joint step ``angles [N] -> [N]`` (module doc)."""
    speed = params.max_speed * jnp.clip(action, -1.0, 1.0) / params.damping
    return angles + params.dt * speed


def ik_action(angles: jax.Array, target: jax.Array, params: PlanarArmParams,
              damping_lambda: float = 0.05) -> jax.Array:
    """A scripted reaching controller: the action ``[N]`` whose step moves the end effector
    towards ``target [2]`` by damped least squares (``dq = J^T (J J^T + lambda^2 I)^-1 dx``),
    scaled to the joint speed limit and clipped to ``[-1, 1]``."""
    jac = jax.jacfwd(forward_kinematics)(angles, params.link_lengths)  # [2, N]
    error = target - forward_kinematics(angles, params.link_lengths)
    dq = jac.T @ jnp.linalg.solve(jac @ jac.T + damping_lambda ** 2 * jnp.eye(2), error)
    return jnp.clip(dq * params.damping / (params.dt * params.max_speed), -1.0, 1.0)


class PlanarArm(Env):
    """A planar ``num_links``-link arm; its physics and goal are ``PlanarArmParams``."""

    def __init__(self, num_links: int = 2, max_steps: int = 40):
        if num_links < 1 or max_steps < 1:
            raise ValueError(f"need num_links >= 1 and max_steps >= 1, got {num_links}, "
                             f"{max_steps}")
        self.num_links = int(num_links)
        self.max_steps = int(max_steps)

    def default_params(self) -> PlanarArmParams:
        """Equal links of total length 1, unit damping, a bent start (first joint at 0)."""
        n = self.num_links
        start = (0.0,) + (0.6 / max(n - 1, 1),) * (n - 1)
        return params_as_arrays(PlanarArmParams(link_lengths=(1.0 / n,) * n, damping=(1.0,) * n,
                                                start_angles=start))

    def reset(self, key: PRNGKey, params: PlanarArmParams) -> Tuple[PlanarArmState, jax.Array]:
        del key  # the start is part of the task (params)
        state = PlanarArmState(angles=jnp.asarray(params.start_angles, jnp.float32),
                               time=jnp.zeros((), jnp.int32))
        return state, self.observe(state)

    def step(self, key: PRNGKey, state: PlanarArmState, action: jax.Array,
             params: PlanarArmParams) -> Tuple[PlanarArmState, jax.Array, jax.Array, jax.Array,
                                               Info]:
        del key  # deterministic dynamics
        angles = advance(state.angles, action, params)
        distance = jnp.linalg.norm(forward_kinematics(angles, params.link_lengths) - params.goal)
        reward = (distance < params.goal_radius).astype(jnp.float32)
        time = state.time + 1
        new_state = PlanarArmState(angles=angles, time=time)
        truncated = time_limit(time, self.max_steps)
        terminated = jnp.zeros((), jnp.bool_)
        info = {"truncated": truncated, "terminated": terminated}
        return new_state, self.observe(new_state), reward, terminated | truncated, info

    def observe(self, state: PlanarArmState) -> jax.Array:
        """``obs [2 N + 1]``: joint features and the fraction of the episode elapsed."""
        phase = state.time.astype(jnp.float32)[None] / self.max_steps
        return jnp.concatenate([joint_features(state.angles), phase]).astype(jnp.float32)

    @property
    def observation_space(self) -> Box:
        size = 2 * self.num_links + 1
        return Box(low=jnp.full((size,), -1.0, jnp.float32),
                   high=jnp.full((size,), 1.0, jnp.float32), shape=(size,))

    @property
    def action_space(self) -> Box:
        n = self.num_links
        return Box(low=-jnp.ones((n,), jnp.float32), high=jnp.ones((n,), jnp.float32),
                   shape=(n,))


def straight_reach(start: jax.Array, goal: jax.Array, num_steps: int, reach_steps: int
                   ) -> jax.Array:
    """End-effector waypoints ``[num_steps, 2]``: a straight line from ``start [2]`` to ``goal
    [2]`` in ``reach_steps`` steps, then holding at the goal."""
    frac = jnp.minimum(jnp.arange(1, num_steps + 1) / reach_steps, 1.0)[:, None]
    return start + frac * (goal - start)


def scripted_angles(params: PlanarArmParams, waypoints: jax.Array) -> jax.Array:
    """Joint angles ``[T + 1, N]`` of an arm (reset at ``params.start_angles``) whose scripted
    controller (``ik_action``) tracks ``waypoints [T, 2]``; row ``t + 1`` is the state after
    step ``t``."""

    def step(angles, point):
        angles = advance(angles, ik_action(angles, point, params), params)
        return angles, angles

    start = jnp.asarray(params.start_angles, jnp.float32)
    _, path = jax.lax.scan(step, start, waypoints)
    return jnp.concatenate([start[None], path])


def paired_states(source: PlanarArmParams, target: PlanarArmParams, waypoints: jax.Array
                  ) -> Tuple[jax.Array, jax.Array]:
    """Time-aligned pairs from the proxy task: both arms track the same end-effector
    ``waypoints [G, T, 2]`` (one reach per goal). Returns ``joint_features`` of the states after
    every step, ``[G * T, 2 N_S]`` and ``[G * T, 2 N_T]``."""
    def features(params):
        angles = jax.vmap(lambda w: scripted_angles(params, w))(waypoints)[:, 1:]
        return joint_features(angles).reshape(-1, 2 * angles.shape[-1])

    return features(source), features(target)
