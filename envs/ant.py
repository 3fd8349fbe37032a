"""Ant (gymnasium ``Ant-v5``) in MJX, and the meta-RL variants AntDir and AntGoal.

Shapes: obs [105] = (qpos[2:] [13], qvel [14], clip(cfrc_ext[1:], -1, 1) [13 * 6]) or [27]
without contact forces (``include_cfrc_ext=False``); action [8] in [-1, 1] (gears 150).
RK4, timestep 0.01, frame skip 5 (dt = 0.05 s). ``cfrc_ext`` comes from ``mjx.rne_postconstraint``
after the substeps, as gymnasium calls ``mj_rnePostConstraint``; it is zero right after a reset.

    Ant      reward = v_x + 1 * healthy - 0.5 |a|^2 - 5e-4 |clip(cfrc_ext, -1, 1)|^2  (gymnasium v5)
    AntDir   v_x replaced by v_xy . (cos a, sin a); task field ``direction_angle`` [] (radians),
             tasks in {0, pi} (forward/backward, as MAML) or U[0, 2 pi)
    AntGoal  v_x replaced by -|xy - goal|_1; task field ``goal`` [2], tasks ~ U[-3, 3]^2 (MAML)

``v_xy`` differentiates the torso's ``xpos`` like gymnasium (``MjxState.tracked_xy``). Healthy iff
the state is finite and ``0.2 <= z <= 1``; unhealthy terminates. Reset: ``qpos0 + U[-0.1, 0.1]``,
``qvel ~ 0.1 N(0, 1)``. See ``envs.mjx_locomotion`` for the pyramidal-cone contact-frame
difference between MJX and MuJoCo C that makes Ant's contact forces differ (qvel O(1) apart
after a few contact steps; ~1e-3 with ``elliptic_cone=True`` on both sides).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from envs.mjx_locomotion import MjxLocomotion, external_forces, mjx
from envs.mjx_physics import PhysicsParams
from metarl_jax.randomization.distributions import categorical, uniform
from metarl_jax.randomization.param_space import make_param_space


class Ant(MjxLocomotion):
    """Gymnasium ``Ant-v5``: walk forward along x."""

    xml_file = "ant.xml"
    frame_skip = 5
    reset_noise_scale = 0.1
    qvel_noise = "normal"
    tracked_body = 1
    gym_id = "Ant-v5"

    def __init__(self, max_steps: int = 1000, include_cfrc_ext: bool = True,
                 ctrl_cost_weight: float = 0.5, contact_cost_weight: float = 5e-4,
                 healthy_reward: float = 1.0, healthy_z_range=(0.2, 1.0),
                 terminate_when_unhealthy: bool = True, **physics):
        super().__init__(max_steps, **physics)
        self.include_cfrc_ext = bool(include_cfrc_ext)
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.contact_cost_weight = float(contact_cost_weight)
        self.healthy_reward = float(healthy_reward)
        self.healthy_z_range = tuple(float(z) for z in healthy_z_range)
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)

    @property
    def observation_structure(self):
        nbody = self.mj_model.nbody
        return {"skipped_qpos": 2, "qpos": self.mj_model.nq - 2, "qvel": self.mj_model.nv,
                "cfrc_ext": (nbody - 1) * 6 if self.include_cfrc_ext else 0}

    def _reset_xy(self, qpos):
        return qpos[:2]  # the torso's free joint: xpos == qpos[:3] after mj_forward

    def _post_step(self, model, data):
        return mjx.rne_postconstraint(model, data)

    def _obs(self, qpos, qvel, cfrc_ext):
        parts = [qpos[2:], qvel]
        if self.include_cfrc_ext:
            parts.append(jnp.clip(cfrc_ext[1:], -1.0, 1.0).reshape(-1))
        return jnp.concatenate(parts).astype(jnp.float32)

    def _task_reward(self, before, after, xy_velocity, params):
        return xy_velocity[0]

    def is_healthy(self, qpos: jax.Array, qvel: jax.Array) -> jax.Array:
        """[] bool: the state is finite and the torso height is in ``healthy_z_range``."""
        low, high = self.healthy_z_range
        finite = jnp.all(jnp.isfinite(qpos)) & jnp.all(jnp.isfinite(qvel))
        return finite & (low <= qpos[2]) & (qpos[2] <= high)

    def _reward(self, before, after, data, action, params):
        xy_velocity = (after.tracked_xy - before.tracked_xy) / self.dt
        healthy = self.is_healthy(after.qpos, after.qvel)
        task = self._task_reward(before, after, xy_velocity, params)
        survive = self.healthy_reward * healthy.astype(jnp.float32)
        ctrl = self.ctrl_cost(self.ctrl_cost_weight, action)
        forces = jnp.clip(external_forces(data), -1.0, 1.0)
        contact = self.contact_cost_weight * jnp.sum(jnp.square(forces))
        terminated = ~healthy if self.terminate_when_unhealthy else jnp.zeros((), jnp.bool_)
        info = {"x_velocity": xy_velocity[0], "y_velocity": xy_velocity[1], "reward_forward": task,
                "reward_ctrl": -ctrl, "reward_contact": -contact, "reward_survive": survive}
        return task + survive - ctrl - contact, terminated, info


@struct.dataclass
class AntDirParams(PhysicsParams):
    """Physics factors plus ``direction_angle`` [] (radians; 0 = +x)."""

    direction_angle: jax.Array = 0.0


class AntDir(Ant):
    """Walk in direction ``params.direction_angle``."""

    params_cls = AntDirParams

    def __init__(self, max_steps: int = 200, **kwargs):
        super().__init__(max_steps, **kwargs)

    def task_defaults(self):
        return {"direction_angle": 0.0}

    def _task_reward(self, before, after, xy_velocity, params):
        angle = params.direction_angle
        return xy_velocity[0] * jnp.cos(angle) + xy_velocity[1] * jnp.sin(angle)

    def task_space(self, full_circle: bool = False):
        """Tasks: forward/backward (angles {0, pi}, MAML) or, with ``full_circle``, U[0, 2 pi)."""
        dist = uniform(0.0, 2 * jnp.pi) if full_circle else categorical([0.0, float(jnp.pi)])
        return make_param_space(self.default_params(), {"direction_angle": dist})


@struct.dataclass
class AntGoalParams(PhysicsParams):
    """Physics factors plus ``goal`` [2] (xy position, m)."""

    goal: jax.Array = (0.0, 0.0)


class AntGoal(Ant):
    """Walk to ``params.goal``: reward ``-|xy - goal|_1`` instead of the forward velocity."""

    params_cls = AntGoalParams

    def __init__(self, max_steps: int = 200, **kwargs):
        super().__init__(max_steps, **kwargs)

    def task_defaults(self):
        return {"goal": (0.0, 0.0)}

    def _task_reward(self, before, after, xy_velocity, params):
        return -jnp.sum(jnp.abs(after.qpos[:2] - params.goal))

    def task_space(self, radius: float = 3.0):
        """Tasks ``goal ~ U[-radius, radius]^2`` (MAML's ant goal distribution)."""
        return make_param_space(self.default_params(), {"goal": uniform(-radius, radius)})
