"""Deploy a policy in "the real world": gymnasium's MuJoCo-C environments with perturbed physics.

    world = RealWorld("HalfCheetah-v5")
    cells = sweep_grid({"mass_scale": [0.5, 1.5], "action_delay": [1, 2]})   # + the nominal cell
    returns = world.evaluate(load_policy("run/policies/dr"), cells, episodes=2, seed=0)   # [C, E]

A ``Perturbation`` changes the plant and the channel to it:

    mass_scale      body_mass and body_inertia of every body     x factor
    friction_scale  geom_friction of every geom                  x factor
    strength_scale  actuator_gear[:, 0] of every actuator        x factor (torque per unit action)
    action_delay    the action applied is the one chosen k steps earlier (zeros before that),
                    the semantics of ``metarl_jax.core.wrappers.ActionDelay``
    obs_noise_std   N(0, std^2) added to every observation entry, like ``ObservationNoise``

The model fields are set from copies of the nominal values taken at construction (never
compounded), directly in ``env.unwrapped.model`` and without ``mj_setConst`` -- the same
convention as ``envs.mjx_physics.apply_physics`` on the MJX side. Every cell runs the same
episode seeds (``seed + episode``), so differences between cells are the perturbation's.
This module uses numpy, gymnasium and MuJoCo only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from typing import Callable, Dict, List, Mapping, Sequence

import gymnasium as gym
import mujoco
import numpy as np

# act(obs [obs_size]) -> action [action_size]   (e.g. a loaded Policy)
ActFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """One cell of the evaluation grid (the defaults are the nominal world)."""

    mass_scale: float = 1.0
    friction_scale: float = 1.0
    strength_scale: float = 1.0
    action_delay: int = 0
    obs_noise_std: float = 0.0

    def __post_init__(self):
        for name in ("mass_scale", "friction_scale", "strength_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Perturbation.{name} must be > 0, got {getattr(self, name)}")
        if int(self.action_delay) != self.action_delay or self.action_delay < 0:
            raise ValueError("Perturbation.action_delay must be an integer >= 0, "
                             f"got {self.action_delay}")
        if self.obs_noise_std < 0:
            raise ValueError(f"Perturbation.obs_noise_std must be >= 0, got {self.obs_noise_std}")

    def changed(self) -> Dict[str, float]:
        """The fields that differ from nominal: ``{}`` for the nominal cell."""
        nominal = Perturbation()
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(nominal, f.name)}

    def label(self) -> str:
        return ", ".join(f"{k}={v:g}" for k, v in self.changed().items()) or "nominal"


AXES = tuple(f.name for f in dataclasses.fields(Perturbation))


def sweep_grid(axes: Mapping[str, Sequence[float]]) -> List[Perturbation]:
    """One-at-a-time sweeps: the nominal cell first, then every value of every axis with the other
    axes nominal (values equal to nominal are not repeated). ``axes``: ``{field: values}``."""
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        raise ValueError(f"unknown perturbation axes {unknown}; known: {', '.join(AXES)}")
    cells = [Perturbation()]
    for name, values in axes.items():
        for value in values:
            cell = Perturbation(**{name: int(value) if name == "action_delay" else float(value)})
            if cell not in cells:
                cells.append(cell)
    return cells


@contextlib.contextmanager
def _without_settotalmass_warning():
    """Drop MuJoCo's deprecation warning for the compiler attribute ``settotalmass``.

    gymnasium's ``half_cheetah.xml`` still sets it, so MuJoCo prints the warning (plus a blank
    line, and writes ``MUJOCO_LOG.TXT``) every time ``HalfCheetah-v5`` is made; the masses are
    right, and the file is gymnasium's to change. Other MuJoCo warnings go to stderr."""
    previous = mujoco.get_mju_user_warning()

    def handler(message: str) -> None:
        if "settotalmass" in message:
            return
        if previous is not None:
            previous(message)
        else:
            print(f"MuJoCo WARNING: {message}", file=sys.stderr)

    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


class RealWorld:
    """A gymnasium MuJoCo env whose model is perturbed per cell. ``make_kwargs`` go to
    ``gym.make`` (e.g. ``max_episode_steps``)."""

    def __init__(self, env_id: str, **make_kwargs):
        self.env_id = env_id
        with _without_settotalmass_warning():
            self.env = gym.make(env_id, **make_kwargs)
        model = self.env.unwrapped.model
        self._nominal = {
            "body_mass": model.body_mass.copy(), "body_inertia": model.body_inertia.copy(),
            "geom_friction": model.geom_friction.copy(),
            "actuator_gear": model.actuator_gear.copy(),
        }
        self.obs_size = int(self.env.observation_space.shape[0])
        self.action_size = int(self.env.action_space.shape[0])

    def apply(self, p: Perturbation) -> None:
        """Set the model's fields to nominal x ``p``'s scales."""
        model, nominal = self.env.unwrapped.model, self._nominal
        model.body_mass[:] = nominal["body_mass"] * p.mass_scale
        model.body_inertia[:] = nominal["body_inertia"] * p.mass_scale
        model.geom_friction[:] = nominal["geom_friction"] * p.friction_scale
        model.actuator_gear[:] = nominal["actuator_gear"]
        model.actuator_gear[:, 0] = nominal["actuator_gear"][:, 0] * p.strength_scale

    def episode(self, act: ActFn, p: Perturbation, seed: int) -> Dict[str, float]:
        """One episode under ``p``: ``{"return", "length"}`` (until terminated or truncated)."""
        self.apply(p)
        noise = np.random.default_rng(seed)
        space = self.env.action_space
        buffer = np.zeros((int(p.action_delay) + 1, self.action_size), np.float32)
        obs, _ = self.env.reset(seed=seed)
        total, length, done = 0.0, 0, False
        while not done:
            observed = obs + p.obs_noise_std * noise.standard_normal(obs.shape)
            action = np.asarray(act(observed), np.float32).reshape(self.action_size)
            buffer = np.concatenate([action[None], buffer[:-1]])  # buffer[d]: chosen d steps ago
            applied = np.clip(buffer[int(p.action_delay)], space.low, space.high)
            obs, reward, terminated, truncated, _ = self.env.step(applied)
            total, length, done = total + float(reward), length + 1, terminated or truncated
        return {"return": total, "length": length}

    def evaluate(self, act: ActFn, cells: Sequence[Perturbation], episodes: int, seed: int
                 ) -> np.ndarray:
        """Returns ``[C, episodes]``: the return of each episode of each cell."""
        out = np.array([[self.episode(act, p, seed + e)["return"] for e in range(episodes)]
                        for p in cells])
        self.apply(Perturbation())
        return out

    def close(self) -> None:
        self.env.close()


def summarize_real(cell_returns: np.ndarray) -> Dict[str, float]:
    """``real_mean`` (mean over cells of per-cell mean returns), ``real_worst`` (worst cell) and
    ``real_nominal`` (cell 0, the unperturbed world in a ``sweep_grid``) of ``[C, E]`` returns."""
    per_cell = np.asarray(cell_returns, np.float64).mean(-1)
    return {"real_mean": float(per_cell.mean()), "real_worst": float(per_cell.min()),
            "real_nominal": float(per_cell[0])}
