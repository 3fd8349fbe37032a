"""MJX locomotion: gymnasium's MuJoCo ``*-v5`` robots as pure functions of
``(key, state, action, params)``.

Why mujoco-mjx directly and not brax's ``PipelineEnv``: the per-env physics must come from
``params`` at every step (``apply_physics(model, params)`` inside ``step``), so the model cannot be
an attribute mutated by a wrapper (brax's ``DomainRandomizationVmapWrapper`` swaps ``env.sys``
inside a context manager and draws the physics once, at construction). MJX's ``mjx.step(model,
data)`` takes the model as an argument, which is all we need; brax would add a second state type
and its own reset/step conventions for nothing. (The benchmark ``benchmarks.dr_throughput`` runs
brax's wrapper on the same model as the baseline.)

State: only what MuJoCo's integrator carries between steps -- ``qpos [nq]``, ``qvel [nv]``,
``qacc_warmstart [nv]`` -- plus the step count and the tracked body's xy. The full ``mjx.Data`` is
rebuilt inside ``step`` from a shared template, so an env's state is ~100 floats, not the ~12 kB
of an ``mjx.Data`` (what a batch of envs stores, and what every auto-reset ``where`` touches).

Per step (gymnasium's ``MujocoEnv.do_simulation``): ``ctrl = clip(action, ctrlrange)``, then
``frame_skip`` calls of ``mjx.step`` (the XML's integrator: Euler for HalfCheetah, RK4 for the
others), then the robot's observation, reward and termination (in its module). Episodes are
truncated after ``max_steps`` steps (1000, gymnasium's ``TimeLimit``).

Remaining differences from gymnasium (``tests/test_mjx_envs.py`` measures the agreement):

- float32 physics (MuJoCo C runs float64): rollouts from the same state with the same actions
  agree to ~1e-6 for the first steps, then contacts amplify the roundoff (chaotic dynamics).
  Measured max |obs| error (random actions, seed 1): Hopper 1e-5 and Walker2d 1e-4 over 20
  steps; HalfCheetah 7e-3 after 10 steps and O(1) after ~15; Ant (elliptic cone) 1e-3 after 10.
- The constraint solver runs at most ``solver_iterations`` Newton iterations with
  ``ls_iterations`` line-search steps (the XMLs say 100 / 50). MuJoCo C converges in <= 3 on
  these robots (identical results in the tests at 4 / 4); fewer iterations are faster and less
  exact.
- Ant: for plane contacts MuJoCo 4.0 builds the contact frame's tangents from the geom, MJX 3.17
  uses fixed world axes. With the default pyramidal friction cone the friction force depends on
  that frame, so Ant's contact forces differ: from the same state with the same actions, qvel
  differs by 0.25 after the first contact step and by O(1) (|qvel| ~ 10) a few steps later
  (measured at 100 / 50 solver iterations). With an elliptic cone (frame-free) both engines
  agree to ~1e-3 over 10 steps (``elliptic_cone=True``, and ``model.opt.cone`` on the C side).
  A policy trained on the default Ant therefore meets different contact friction in MuJoCo C.
- Actions are clipped to the control range *before* the control cost (gymnasium costs the raw
  action and lets MuJoCo clamp ``ctrl``): identical for in-range actions, which is what an
  exported policy emits, and it keeps a Gaussian policy's out-of-range samples from being
  penalized for force the motors never apply.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Dict, Tuple

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
from flax import struct

from envs.mjx_physics import PhysicsParams, apply_physics, nominal_physics
from metarl_jax.core.env import Box, Env, Info, PRNGKey, time_limit


def _import_mjx():
    """``mujoco.mjx`` without the "Failed to import warp" / "Failed to import mujoco_warp" lines
    it prints on import whenever NVIDIA Warp (its optional GPU backend) is not installed. Every
    env here runs MJX's JAX backend, so those lines are noise that reads like an error; anything
    else printed during the import is passed through."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            from mujoco import mjx
    finally:
        for line in out.getvalue().splitlines():
            if not line.startswith(("Failed to import warp:", "Failed to import mujoco_warp:")):
                print(line)
    return mjx


mjx = _import_mjx()

ASSETS = Path(__file__).resolve().parent / "assets"


def load_mj_model(xml_file: str, solver_iterations: int = 4, ls_iterations: int = 4,
                  elliptic_cone: bool = False) -> mujoco.MjModel:
    """A ``mujoco.MjModel`` from ``envs/assets/<xml_file>`` with the solver caps applied.

    ``half_cheetah.xml`` (gymnasium's file, kept byte-identical) sets the compiler attribute
    ``settotalmass``, which MuJoCo deprecates with a warning on every load. It is applied here as
    the warning says instead (compile without it, ``mj_setTotalmass``, ``mj_setConst``), plus
    the two statistics the compiler derives from the scaled masses: the model is bit-identical
    to MuJoCo's own load (``tests/test_mjx_envs.py``).
    """
    spec = mujoco.MjSpec.from_file(str(ASSETS / xml_file))
    total_mass = spec.compiler.settotalmass
    spec.compiler.settotalmass = -1.0  # MuJoCo's "not set"
    model = spec.compile()
    if total_mass > 0:
        _set_total_mass(model, total_mass)
    model.opt.iterations = int(solver_iterations)
    model.opt.ls_iterations = int(ls_iterations)
    if elliptic_cone:
        model.opt.cone = mujoco.mjtCone.mjCONE_ELLIPTIC
    return model


def _set_total_mass(model: mujoco.MjModel, total_mass: float) -> None:
    """Scale masses and inertias to ``total_mass`` as the compiler's ``settotalmass`` does."""
    mujoco.mj_setTotalmass(model, total_mass)
    data = mujoco.MjData(model)
    mujoco.mj_setConst(model, data)
    # mj_setConst leaves the compile-time statistics of the unscaled model; recompute them as
    # the compiler does (mean body mass; mean diagonal of the mass matrix at qpos0), in its order.
    model.stat.meanmass = sum(float(m) for m in model.body_mass[1:]) / (model.nbody - 1)
    mujoco.mj_forward(model, data)
    mass_matrix = np.zeros((model.nv, model.nv))
    mujoco.mj_fullM(model, data, mass_matrix)
    model.stat.meaninertia = sum(float(mass_matrix[i, i]) for i in range(model.nv)) / model.nv


@struct.dataclass
class MjxState:
    """Physics state of one env (all float32 except ``time``).

    Attributes:
        qpos: [nq] generalized positions.
        qvel: [nv] generalized velocities.
        qacc_warmstart: [nv] the constraint solver's warm start (part of MuJoCo's state).
        time: [] int32, steps taken in this episode.
        tracked_xy: [2] xy of the robot's main body as MuJoCo last computed it: ``qpos``-exact
            after a reset, one substep behind ``qpos`` after a step (like ``data.xpos``, which
            gymnasium's Ant differentiates for its velocity).
    """

    qpos: jax.Array
    qvel: jax.Array
    qacc_warmstart: jax.Array
    time: jax.Array
    tracked_xy: jax.Array


def external_forces(data) -> jax.Array:
    """``cfrc_ext [nbody, 6]`` of an ``mjx.Data`` (MJX 3.17 keeps it in the JAX backend's
    ``_impl`` and deprecates the public alias)."""
    return data._impl.cfrc_ext


class MjxLocomotion(Env):
    """Base class of the MJX robots. Subclasses set the class attributes below and implement
    ``_obs`` and ``_reward``; everything that varies between envs is in ``params``.

    Class attributes:
        xml_file: asset under ``envs/assets``.
        frame_skip: MuJoCo steps per env step.
        reset_noise_scale: ``qpos = init + U[-s, s]``; ``qvel = init + s * N(0, 1)`` when
            ``qvel_noise == "normal"`` else ``U[-s, s]``.
        tracked_body: body whose xy is kept in the state.
        params_cls: this env's ``Params`` class (``PhysicsParams`` plus task fields).
    """

    xml_file: str = ""
    frame_skip: int = 1
    reset_noise_scale: float = 0.1
    qvel_noise: str = "normal"
    tracked_body: int = 1
    params_cls = PhysicsParams
    gym_id: str = ""  # the gymnasium env this one reproduces

    def __init__(self, max_steps: int = 1000, solver_iterations: int = 4, ls_iterations: int = 4,
                 elliptic_cone: bool = False):
        self.max_steps = int(max_steps)
        self.mj_model = load_mj_model(self.xml_file, solver_iterations, ls_iterations,
                                      elliptic_cone)
        self.model = mjx.put_model(self.mj_model)
        self._data0 = mjx.make_data(self.model)
        self.dt = float(self.mj_model.opt.timestep) * self.frame_skip
        low, high = np.asarray(self.mj_model.actuator_ctrlrange, np.float32).T
        self._ctrl_low, self._ctrl_high = jnp.asarray(low), jnp.asarray(high)
        self.init_qpos = jnp.asarray(self.mj_model.qpos0, jnp.float32)
        self.init_qvel = jnp.zeros((self.mj_model.nv,), jnp.float32)

    # ------------------------------------------------------------------ params, spaces
    def default_params(self) -> PhysicsParams:
        return nominal_physics(self.mj_model, self.params_cls, **self.task_defaults())

    def task_defaults(self) -> Dict[str, float]:
        """Nominal values of the task fields a variant adds to ``PhysicsParams`` (none here)."""
        return {}

    @property
    def action_space(self) -> Box:
        return Box(low=self._ctrl_low, high=self._ctrl_high, shape=(self.mj_model.nu,))

    @property
    def observation_space(self) -> Box:
        size = sum(v for k, v in self.observation_structure.items() if not k.startswith("skipped"))
        return Box(low=jnp.full((size,), -jnp.inf), high=jnp.full((size,), jnp.inf), shape=(size,))

    @property
    def observation_structure(self) -> Dict[str, int]:
        """Sizes of the observation's parts, with gymnasium's keys (``skipped_qpos`` is not in
        the observation; the others are, in order)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ reset, step
    def make_state(self, qpos: jax.Array, qvel: jax.Array) -> MjxState:
        """The state at ``qpos [nq], qvel [nv]`` (a fresh episode: zero warm start, time 0)."""
        qpos = jnp.asarray(qpos, jnp.float32)
        return MjxState(qpos=qpos, qvel=jnp.asarray(qvel, jnp.float32),
                        qacc_warmstart=jnp.zeros((self.mj_model.nv,), jnp.float32),
                        time=jnp.int32(0), tracked_xy=self._reset_xy(qpos))

    def reset(self, key: PRNGKey, params: PhysicsParams) -> Tuple[MjxState, jax.Array]:
        del params  # the initial state distribution does not depend on the physics
        pos_key, vel_key = jax.random.split(key)
        s = self.reset_noise_scale
        qpos = self.init_qpos + jax.random.uniform(pos_key, self.init_qpos.shape,
                                                   minval=-s, maxval=s)
        if self.qvel_noise == "normal":
            noise = s * jax.random.normal(vel_key, self.init_qvel.shape)
        else:
            noise = jax.random.uniform(vel_key, self.init_qvel.shape, minval=-s, maxval=s)
        state = self.make_state(qpos, self.init_qvel + noise)
        cfrc_ext = jnp.zeros((self.mj_model.nbody, 6), jnp.float32)  # as after gymnasium's reset
        return state, self._obs(state.qpos, state.qvel, cfrc_ext)

    def step(self, key: PRNGKey, state: MjxState, action: jax.Array, params: PhysicsParams
             ) -> Tuple[MjxState, jax.Array, jax.Array, jax.Array, Info]:
        del key  # deterministic dynamics
        model = apply_physics(self.model, params)
        ctrl = jnp.clip(action, self._ctrl_low, self._ctrl_high)
        data = self._data0.replace(qpos=state.qpos, qvel=state.qvel,
                                   qacc_warmstart=state.qacc_warmstart, ctrl=ctrl)
        data = jax.lax.fori_loop(0, self.frame_skip, lambda _, d: mjx.step(model, d), data)
        data = self._post_step(model, data)
        new_state = MjxState(qpos=data.qpos, qvel=data.qvel, qacc_warmstart=data.qacc_warmstart,
                             time=state.time + 1, tracked_xy=data.xpos[self.tracked_body, :2])
        reward, terminated, info = self._reward(state, new_state, data, ctrl, params)
        truncated = time_limit(new_state.time, self.max_steps)
        info = dict(info, truncated=truncated, terminated=terminated)
        obs = self._obs(new_state.qpos, new_state.qvel, external_forces(data))
        return new_state, obs, reward.astype(jnp.float32), terminated | truncated, info

    # ------------------------------------------------------------------ per-robot hooks
    def _reset_xy(self, qpos: jax.Array) -> jax.Array:
        """The tracked body's xy right after ``mj_forward`` at ``qpos`` (planar robots: unused)."""
        return jnp.zeros((2,), jnp.float32)

    def _post_step(self, model, data):
        """Extra computation after the substeps (Ant: ``rne_postconstraint`` for ``cfrc_ext``)."""
        return data

    def _obs(self, qpos: jax.Array, qvel: jax.Array, cfrc_ext: jax.Array) -> jax.Array:
        """Observation ``[obs_size]`` float32 from the state (``cfrc_ext: [nbody, 6]``)."""
        raise NotImplementedError

    def _reward(self, before: MjxState, after: MjxState, data, action: jax.Array, params
                ) -> Tuple[jax.Array, jax.Array, Dict[str, jax.Array]]:
        """``(reward [], terminated [] bool, info)`` of the transition ``before -> after``."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared reward terms
    def x_velocity(self, before: MjxState, after: MjxState) -> jax.Array:
        """Forward velocity of the root, ``(qpos[0]' - qpos[0]) / dt`` as gymnasium computes it."""
        return (after.qpos[0] - before.qpos[0]) / self.dt

    @staticmethod
    def ctrl_cost(weight: float, action: jax.Array) -> jax.Array:
        return weight * jnp.sum(jnp.square(action))


class PlanarWalker(MjxLocomotion):
    """Hopper and Walker2d: forward velocity + alive bonus - control cost; terminates on a fall.

    ``obs = [qpos[1:], clip(qvel, -10, 10)]``. Healthy (strict inequalities, like gymnasium):
    ``z_range[0] < qpos[1] < z_range[1]``, ``angle_range[0] < qpos[2] < angle_range[1]`` and,
    where ``state_range`` is set, every entry of ``[qpos, qvel][2:]`` inside it.
    """

    qvel_noise = "uniform"
    reset_noise_scale = 5e-3
    z_range: Tuple[float, float] = (0.7, float("inf"))
    angle_range: Tuple[float, float] = (-0.2, 0.2)
    state_range: Tuple[float, float] | None = None

    def __init__(self, max_steps: int = 1000, forward_reward_weight: float = 1.0,
                 ctrl_cost_weight: float = 1e-3, healthy_reward: float = 1.0,
                 terminate_when_unhealthy: bool = True, **physics):
        super().__init__(max_steps, **physics)
        self.forward_reward_weight = float(forward_reward_weight)
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.healthy_reward = float(healthy_reward)
        self.terminate_when_unhealthy = bool(terminate_when_unhealthy)

    @property
    def observation_structure(self) -> Dict[str, int]:
        return {"skipped_qpos": 1, "qpos": self.mj_model.nq - 1, "qvel": self.mj_model.nv}

    def _obs(self, qpos, qvel, cfrc_ext):
        return jnp.concatenate([qpos[1:], jnp.clip(qvel, -10.0, 10.0)]).astype(jnp.float32)

    def is_healthy(self, qpos: jax.Array, qvel: jax.Array) -> jax.Array:
        z, angle = qpos[1], qpos[2]
        healthy = (self.z_range[0] < z) & (z < self.z_range[1])
        healthy &= (self.angle_range[0] < angle) & (angle < self.angle_range[1])
        if self.state_range is not None:
            state = jnp.concatenate([qpos, qvel])[2:]
            healthy &= jnp.all((self.state_range[0] < state) & (state < self.state_range[1]))
        return healthy

    def _reward(self, before, after, data, action, params):
        x_velocity = self.x_velocity(before, after)
        healthy = self.is_healthy(after.qpos, after.qvel)
        forward = self.forward_reward_weight * x_velocity
        survive = self.healthy_reward * healthy.astype(jnp.float32)
        ctrl = self.ctrl_cost(self.ctrl_cost_weight, action)
        terminated = ~healthy if self.terminate_when_unhealthy else jnp.zeros((), jnp.bool_)
        info = {"x_velocity": x_velocity, "reward_forward": forward, "reward_ctrl": -ctrl,
                "reward_survive": survive}
        return forward + survive - ctrl, terminated, info
