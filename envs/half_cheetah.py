"""HalfCheetah (gymnasium ``HalfCheetah-v5``) in MJX, and its meta-RL task variants.

Shapes: obs [17] = (qpos[1:] [8], qvel [9]); action [6] in [-1, 1] (torques = gear * action,
gears 120, 90, 60, 120, 60, 30); reward []; never terminates, truncated after ``max_steps``.

    HalfCheetah      reward = forward_w * v_x - 0.1 * |a|^2                      (gymnasium v5)
    HalfCheetahVel   reward = -|v_x - target_velocity| - 0.05 * |a|^2           (MAML, Finn et al.
                     2017, sec. 5.3); task field ``target_velocity`` [], tasks ~ U[0, 2]
                     (``target_range``)
    HalfCheetahDir   reward = direction * v_x - 0.05 * |a|^2; ``direction`` [] in {-1, +1}

with ``v_x = (qpos[0]' - qpos[0]) / dt``, ``dt = 5 * 0.01`` s. Reset: ``qpos0 + U[-0.1, 0.1]``,
``qvel ~ 0.1 N(0, 1)``. The task variants default to the MAML horizon of 200 steps; their task
fields live in ``Params``, so ``task_space()`` is a ``ParamSpace`` that draws one task per episode.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from envs.mjx_locomotion import MjxLocomotion
from envs.mjx_physics import PhysicsParams
from metarl_jax.randomization.distributions import categorical, uniform
from metarl_jax.randomization.param_space import make_param_space


class HalfCheetah(MjxLocomotion):
    """Gymnasium ``HalfCheetah-v5``: run forward."""

    xml_file = "half_cheetah.xml"
    frame_skip = 5
    reset_noise_scale = 0.1
    qvel_noise = "normal"
    gym_id = "HalfCheetah-v5"

    def __init__(self, max_steps: int = 1000, forward_reward_weight: float = 1.0,
                 ctrl_cost_weight: float = 0.1, **physics):
        super().__init__(max_steps, **physics)
        self.forward_reward_weight = float(forward_reward_weight)
        self.ctrl_cost_weight = float(ctrl_cost_weight)

    @property
    def observation_structure(self):
        return {"skipped_qpos": 1, "qpos": self.mj_model.nq - 1, "qvel": self.mj_model.nv}

    def _obs(self, qpos, qvel, cfrc_ext):
        return jnp.concatenate([qpos[1:], qvel]).astype(jnp.float32)

    def _task_reward(self, x_velocity, params):
        return self.forward_reward_weight * x_velocity

    def _reward(self, before, after, data, action, params):
        x_velocity = self.x_velocity(before, after)
        forward = self._task_reward(x_velocity, params)
        ctrl = self.ctrl_cost(self.ctrl_cost_weight, action)
        info = {"x_velocity": x_velocity, "reward_forward": forward, "reward_ctrl": -ctrl}
        return forward - ctrl, jnp.zeros((), jnp.bool_), info


@struct.dataclass
class HalfCheetahVelParams(PhysicsParams):
    """Physics factors plus ``target_velocity`` [] (m/s)."""

    target_velocity: jax.Array = 1.0


class HalfCheetahVel(HalfCheetah):
    """Run at ``params.target_velocity`` (the MAML velocity task)."""

    params_cls = HalfCheetahVelParams

    def __init__(self, max_steps: int = 200, ctrl_cost_weight: float = 0.05,
                 target_range: tuple = (0.0, 2.0), **physics):
        super().__init__(max_steps, ctrl_cost_weight=ctrl_cost_weight, **physics)
        low, high = (float(v) for v in target_range)
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"target_range must be finite (low, high) with low < high, got "
                             f"{target_range}")
        self.target_range = (low, high)

    def task_defaults(self):
        return {"target_velocity": 1.0}

    def _task_reward(self, x_velocity, params):
        return -jnp.abs(x_velocity - params.target_velocity)

    def task_space(self, low: float | None = None, high: float | None = None):
        """Tasks ``target_velocity ~ U[low, high]`` over nominal physics (default: the env's
        ``target_range``, MAML's ``U[0, 2]`` unless set; ProMP's HalfCheetahRandVel uses
        ``U[0, 3]``)."""
        low = self.target_range[0] if low is None else low
        high = self.target_range[1] if high is None else high
        return make_param_space(self.default_params(), {"target_velocity": uniform(low, high)})


@struct.dataclass
class HalfCheetahDirParams(PhysicsParams):
    """Physics factors plus ``direction`` [] (+1 forward, -1 backward)."""

    direction: jax.Array = 1.0


class HalfCheetahDir(HalfCheetah):
    """Run in ``params.direction`` (the MAML forward/backward task)."""

    params_cls = HalfCheetahDirParams

    def __init__(self, max_steps: int = 200, ctrl_cost_weight: float = 0.05, **physics):
        super().__init__(max_steps, ctrl_cost_weight=ctrl_cost_weight, **physics)

    def task_defaults(self):
        return {"direction": 1.0}

    def _task_reward(self, x_velocity, params):
        return params.direction * x_velocity

    def task_space(self):
        """Tasks ``direction`` in {-1, +1} with equal probability, over nominal physics."""
        return make_param_space(self.default_params(), {"direction": categorical([-1.0, 1.0])})
