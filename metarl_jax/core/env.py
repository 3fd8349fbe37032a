"""The environment protocol: an env is a set of pure functions of ``(key, state, action, params)``.

Everything that varies between environments -- physics coefficients and task fields -- lives in a
``Params`` pytree passed to every call, never on the env object. The env object only holds static,
hashable structure (sizes, horizons), so ``jax.vmap(env.step, in_axes=(0, 0, 0, 0))`` over a batch
of params is free and a change of params never recompiles.

Shapes (unbatched; batching is always a leading ``vmap`` axis):
    obs: [obs_size] float32; action: [action_size] float32 (continuous) or [] int32 (discrete);
    reward, done: [] float32 / bool.

``step`` returns ``done = terminated | truncated``; ``info["truncated"]`` says which, so learners
can bootstrap through a time limit (the value of the final state still counts).
"""

from __future__ import annotations

import abc
from typing import Any, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
from flax import struct

PRNGKey = jax.Array
Params = Any  # a struct.dataclass pytree of arrays, one class per env
State = Any
Info = Dict[str, jax.Array]


@struct.dataclass
class EnvParams:
    """Fields every env's ``Params`` carries besides its physics and task fields.

    They describe the deployment channel rather than the plant, and are read by wrappers
    (``ActionDelay``, ``ObservationNoise``), not by the env itself. Keeping them in the env's own
    ``Params`` lets one ``ParamSpace`` randomize physics, latency and sensor noise together.

    Attributes:
        action_delay: [] int32, steps between choosing an action and applying it (0 = none).
        obs_noise_std: [] float32, std of additive Gaussian noise on every observation entry.
    """

    action_delay: jax.Array = 0
    obs_noise_std: jax.Array = 0.0


class Box(NamedTuple):
    """A continuous space: arrays of ``shape`` with elementwise bounds ``low <= x <= high``."""

    low: Any
    high: Any
    shape: Tuple[int, ...]

    @property
    def size(self) -> int:
        return int(jnp.prod(jnp.asarray(self.shape))) if self.shape else 1

    def contains(self, x) -> bool:
        x = jnp.asarray(x)
        return bool(x.shape == tuple(self.shape)
                    and jnp.all(x >= self.low) & jnp.all(x <= self.high))


class Discrete(NamedTuple):
    """A discrete space of ``n`` actions ``{0, ..., n - 1}`` (a scalar int32)."""

    n: int
    shape: Tuple[int, ...] = ()

    def contains(self, x) -> bool:
        x = jnp.asarray(x)
        return bool(x.shape == () and 0 <= int(x) < self.n)


def is_discrete(space) -> bool:
    return isinstance(space, Discrete)


class Env(abc.ABC):
    """Base class of all environments. Subclasses implement ``default_params``, ``reset``, ``step``
    and the two space properties; they keep no mutable state and no physical constants as
    attributes (those belong in ``Params``).

    Attributes:
        max_steps: episode horizon (a static int); ``step`` sets ``truncated`` when it is reached.
    """

    max_steps: int = 1000

    @property
    def name(self) -> str:
        return type(self).__name__

    @abc.abstractmethod
    def default_params(self) -> Params:
        """The nominal physics and task: a ``Params`` pytree of unbatched arrays."""

    @abc.abstractmethod
    def reset(self, key: PRNGKey, params: Params) -> Tuple[State, jax.Array]:
        """Start an episode. Returns ``(state, obs[obs_size])``."""

    @abc.abstractmethod
    def step(
        self, key: PRNGKey, state: State, action: jax.Array, params: Params
    ) -> Tuple[State, jax.Array, jax.Array, jax.Array, Info]:
        """Advance one step. Returns ``(state, obs, reward[], done[], info)`` with
        ``info["truncated"]: [] bool`` (time limit reached, not a terminal state)."""

    @property
    @abc.abstractmethod
    def observation_space(self) -> Box:
        """A ``Box`` of shape ``[obs_size]``."""

    @property
    @abc.abstractmethod
    def action_space(self):
        """A ``Box`` of shape ``[action_size]`` or a ``Discrete``."""

    @property
    def observation_size(self) -> int:
        return int(self.observation_space.shape[0])

    @property
    def action_size(self) -> int:
        """Dimension of a continuous action, or the number of discrete actions."""
        space = self.action_space
        return space.n if is_discrete(space) else int(space.shape[0])

    @property
    def unwrapped(self) -> "Env":
        return self


def time_limit(time: jax.Array, max_steps: int) -> jax.Array:
    """``truncated`` flag: [] bool, true once ``time`` (steps taken, after this one) hits the
    horizon."""
    return time >= max_steps
