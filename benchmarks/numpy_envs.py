"""Batched numpy twins of ``envs.Pendulum`` and ``envs.CartPole`` with per-episode randomization:
the peer a numpy programmer would write in 30 lines (``benchmarks.env_throughput``).

One object steps ``N`` envs with array operations over the env axis (float32, like the JAX envs).
Every env draws fresh physics when its episode ends -- each randomized field is the nominal
value times ``U[low, high]``, drawn only for the envs that ended -- and restarts from the same
reset distribution as the JAX env. Same dynamics and operation order as the JAX envs (a test
checks one step against them).

    env = NumpyPendulum(1024, {"m": (0.5, 2.0)}, np.random.default_rng(0))
    obs, reward, done = env.step(actions)   # actions [N] (torque) -> [N, 3], [N], [N]
"""

from __future__ import annotations

import math
from typing import Dict, Tuple

import numpy as np

F32 = np.float32


class _Batched:
    """Physics arrays ``params[name]: [N]`` redrawn per episode; subclasses hold the state."""

    NOMINAL: Dict[str, float] = {}
    max_steps: int = 0

    def __init__(self, num_envs: int, randomized: Dict[str, Tuple[float, float]],
                 rng: np.random.Generator):
        unknown = set(randomized) - set(self.NOMINAL)
        if unknown:
            raise ValueError(f"{type(self).__name__} has no field(s) {sorted(unknown)}")
        self.num_envs, self.randomized, self.rng = num_envs, dict(randomized), rng
        self.params = {k: np.full(num_envs, v, F32) for k, v in self.NOMINAL.items()}
        self.time = np.zeros(num_envs, np.int32)
        self._begin(np.arange(num_envs))

    def _begin(self, idx: np.ndarray) -> None:
        """New episodes for envs ``idx``: fresh physics, then a reset."""
        for name, (low, high) in self.randomized.items():
            self.params[name][idx] = F32(self.NOMINAL[name]) * self.rng.uniform(
                low, high, idx.size).astype(F32)
        self.time[idx] = 0
        self._reset(idx)

    def _finish(self, terminated: np.ndarray):
        self.time += 1
        done = terminated | (self.time >= self.max_steps)
        if done.any():
            self._begin(np.flatnonzero(done))
        return self._obs(), done


class NumpyPendulum(_Batched):
    """``envs.Pendulum`` (gymnasium Pendulum-v1) over ``N`` envs; ``step(torque[N])``."""

    NOMINAL = {"max_speed": 8.0, "max_torque": 2.0, "dt": 0.05, "g": 10.0, "m": 1.0, "l": 1.0}
    max_steps = 200

    def _reset(self, idx):
        if not hasattr(self, "theta"):
            self.theta = np.zeros(self.num_envs, F32)
            self.theta_dot = np.zeros(self.num_envs, F32)
        self.theta[idx] = self.rng.uniform(-np.pi, np.pi, idx.size).astype(F32)
        self.theta_dot[idx] = self.rng.uniform(-1.0, 1.0, idx.size).astype(F32)

    def _obs(self):
        return np.stack([np.cos(self.theta), np.sin(self.theta), self.theta_dot], axis=-1)

    def step(self, action: np.ndarray):
        p, th, thdot = self.params, self.theta, self.theta_dot
        u = np.clip(action.astype(F32), -p["max_torque"], p["max_torque"])
        wrapped = np.mod(th + F32(np.pi), F32(2 * np.pi)) - F32(np.pi)
        costs = wrapped**2 + F32(0.1) * thdot**2 + F32(0.001) * u**2
        thdot = thdot + (F32(3) * p["g"] / (F32(2) * p["l"]) * np.sin(th)
                         + F32(3.0) / (p["m"] * p["l"] ** 2) * u) * p["dt"]
        self.theta_dot = np.clip(thdot, -p["max_speed"], p["max_speed"])
        self.theta = th + self.theta_dot * p["dt"]
        obs, done = self._finish(np.zeros(self.num_envs, bool))
        return obs, -costs, done


class NumpyCartPole(_Batched):
    """``envs.CartPole`` (gymnasium CartPole-v1) over ``N`` envs; ``step(action[N] in {0, 1})``."""

    NOMINAL = {"gravity": 9.8, "masscart": 1.0, "masspole": 0.1, "length": 0.5,
               "force_mag": 10.0, "tau": 0.02, "x_threshold": 2.4,
               "theta_threshold_radians": 12 * 2 * math.pi / 360}
    max_steps = 500

    def _reset(self, idx):
        if not hasattr(self, "state"):
            self.state = np.zeros((4, self.num_envs), F32)  # x, x_dot, theta, theta_dot
        self.state[:, idx] = self.rng.uniform(-0.05, 0.05, (4, idx.size)).astype(F32)

    def _obs(self):
        return self.state.T

    def step(self, action: np.ndarray):
        p = self.params
        x, x_dot, theta, theta_dot = self.state
        force = np.where(action == 1, p["force_mag"], -p["force_mag"])
        total_mass = p["masspole"] + p["masscart"]
        polemass_length = p["masspole"] * p["length"]
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + polemass_length * theta_dot**2 * sintheta) / total_mass
        thetaacc = (p["gravity"] * sintheta - costheta * temp) / (
            p["length"] * (F32(4.0 / 3.0) - p["masspole"] * costheta**2 / total_mass))
        xacc = temp - polemass_length * thetaacc * costheta / total_mass
        tau = p["tau"]
        self.state = np.stack([x + tau * x_dot, x_dot + tau * xacc,
                               theta + tau * theta_dot, theta_dot + tau * thetaacc])
        x, theta = self.state[0], self.state[2]
        terminated = ((x < -p["x_threshold"]) | (x > p["x_threshold"])
                      | (theta < -p["theta_threshold_radians"])
                      | (theta > p["theta_threshold_radians"]))
        obs, done = self._finish(terminated)
        return obs, np.ones(self.num_envs, F32), done
