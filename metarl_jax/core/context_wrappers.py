"""Wrappers that append system context to the observation: true params, or a transition history.

Used by UP-OSI (Yu et al. 2017): the universal policy sees the true physics
(``ParamObservation``), the online system identifier sees the recent transitions
(``TransitionHistory``). Both keep the protocol's pure ``(key, state, action, params)`` form, so
they go *inside* ``AutoReset`` (which hands them the episode's own params and resets the
history with the episode)::

    env = ParamObservation(TransitionHistory(Pendulum(), 8), ("m", "l"), low, high)
    # obs = [raw obs (3) | history (8 * (3 + 1 + 3 + 1)) | normalized m, l (2)]

``ContextLayout`` says where each part sits so a policy can take exactly what it is allowed to.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax.core.env import Box, Env
from metarl_jax.core.wrappers import Wrapper


def normalize_params(params: Any, fields: Sequence[str], low, high) -> jax.Array:
    """``[..., D]``: each field mapped linearly from ``[low_d, high_d]`` to ``[-1, 1]``."""
    low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    values = jnp.stack([jnp.asarray(getattr(params, f), jnp.float32) for f in fields], -1)
    return 2.0 * (values - low) / (high - low) - 1.0


def denormalize_params(z: jax.Array, low, high) -> jax.Array:
    """Inverse of ``normalize_params``: ``[..., D]`` in [-1, 1] -> value units."""
    low, high = jnp.asarray(low, jnp.float32), jnp.asarray(high, jnp.float32)
    return low + (z + 1.0) * 0.5 * (high - low)


class ParamObservation(Wrapper):
    """Appends the episode's true ``fields`` (normalized to [-1, 1] over ``[low, high]``) to obs.

    Shapes: obs ``[obs_size + D]``. ``low``/``high``: ``[D]`` value-unit ranges (the prior).
    """

    def __init__(self, env: Env, fields: Sequence[str], low: Sequence[float],
                 high: Sequence[float]):
        super().__init__(env)
        if not (len(fields) == len(low) == len(high)) or not fields:
            raise ValueError(f"ParamObservation needs one (low, high) per field, got "
                             f"{list(fields)}, {list(low)}, {list(high)}")
        if any(h <= lo for lo, h in zip(low, high)):
            raise ValueError(f"ParamObservation needs low < high, got {list(low)}, {list(high)}")
        self.fields, self.low, self.high = tuple(fields), tuple(low), tuple(high)

    def _augment(self, obs, params):
        return jnp.concatenate([obs, normalize_params(params, self.fields, self.low, self.high)])

    def reset(self, key, params):
        state, obs = self.env.reset(key, params)
        return state, self._augment(obs, params)

    def step(self, key, state, action, params):
        state, obs, reward, done, info = self.env.step(key, state, action, params)
        return state, self._augment(obs, params), reward, done, info

    @property
    def observation_space(self) -> Box:
        inner = self.env.observation_space
        d = len(self.fields)
        return Box(jnp.concatenate([jnp.asarray(inner.low), -jnp.ones(d)]),
                   jnp.concatenate([jnp.asarray(inner.high), jnp.ones(d)]), (inner.shape[0] + d,))


@struct.dataclass
class HistoryState:
    inner: Any
    window: jax.Array  # [H, F] features of the last H transitions, oldest first
    last_obs: jax.Array  # [obs_size], the observation the next action is taken from


class TransitionHistory(Wrapper):
    """Appends the last ``H`` transitions ``(s_k, a_k, s_{k+1} - s_k, valid_k)`` to obs.

    Each transition contributes ``F = 2 * obs_size + action_size + 1`` features; ``valid`` is 1
    for a real transition and 0 for the zero padding at the start of an episode (fewer than ``H``
    steps taken). Actions are recorded clipped to the action space (the applied command).
    Shapes: obs ``[obs_size + H * F]``.
    """

    def __init__(self, env: Env, history: int):
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        super().__init__(env)
        self.history = int(history)

    @property
    def feature_size(self) -> int:
        return 2 * self.env.observation_size + self.env.action_size + 1

    def _obs(self, obs, window):
        return jnp.concatenate([obs, window.reshape(-1)])

    def reset(self, key, params):
        inner, obs = self.env.reset(key, params)
        window = jnp.zeros((self.history, self.feature_size), jnp.float32)
        return HistoryState(inner, window, obs), self._obs(obs, window)

    def step(self, key, state, action, params):
        inner, obs, reward, done, info = self.env.step(key, state.inner, action, params)
        space = self.env.action_space
        applied = jnp.clip(jnp.asarray(action, jnp.float32).reshape(-1), space.low, space.high)
        feature = jnp.concatenate([state.last_obs, applied, obs - state.last_obs, jnp.ones(1)])
        window = jnp.concatenate([state.window[1:], feature[None]])
        return HistoryState(inner, window, obs), self._obs(obs, window), reward, done, info

    @property
    def observation_space(self) -> Box:
        inner = self.env.observation_space
        extra = self.history * self.feature_size
        return Box(jnp.concatenate([jnp.asarray(inner.low), -jnp.inf * jnp.ones(extra)]),
                   jnp.concatenate([jnp.asarray(inner.high), jnp.inf * jnp.ones(extra)]),
                   (inner.shape[0] + extra,))


class ContextLayout(NamedTuple):
    """Where the parts of ``ParamObservation(TransitionHistory(env, H), fields, ...)``'s obs sit.

    ``raw``: ``[0, raw)``; history: ``[raw, raw + history)``; true params: the last ``params``.
    """

    raw: int
    history: int
    params: int

    @classmethod
    def of(cls, env: ParamObservation) -> "ContextLayout":
        hist = env.env
        if not isinstance(env, ParamObservation) or not isinstance(hist, TransitionHistory):
            raise TypeError("expected ParamObservation(TransitionHistory(env, H), ...)")
        return cls(hist.env.observation_size, hist.history * hist.feature_size, len(env.fields))

    def split(self, obs: jax.Array):
        """``obs[..., raw + history + params] -> (raw, history, true_params)``."""
        h = self.raw + self.history
        return obs[..., : self.raw], obs[..., self.raw: h], obs[..., h:]
