"""What the brax.training peers need: our Pendulum behind brax's ``Env``, and a jax shim.

* ``BraxPendulum``: a ``brax.envs.Env`` whose ``reset``/``step`` call our pure-JAX ``Pendulum``
  (gymnasium's ``Pendulum-v1`` dynamics). brax's own pendulum (``inverted_pendulum``) runs a
  physics pipeline whose step cost on a CPU would swamp the learners being compared; with the
  adapter both sides step identical dynamics. ``action_scale`` maps brax's action to the torque
  (SAC's tanh actions in ``[-1, 1]`` times ``max_torque``; PPO's unbounded Gaussian: 1.0, the env
  clips as it does for ours). Time limits and auto-reset come from brax's own training wrappers.
* ``device_put_replicated_shim()``: brax 0.14.2's trainers call ``jax.device_put_replicated``,
  which jax 0.10 removed. Inside this context manager (only while a brax peer runs) it is defined
  as the old function was: each leaf stacked once per device along a new leading axis and sharded
  over those devices the way ``jax.pmap`` shards its outputs. jax is left as it was on exit.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Iterator, Sequence, Tuple

import jax
import jax.numpy as jnp

from envs.pendulum import Pendulum

EPISODE_LENGTH = 200


@functools.lru_cache(maxsize=None)
def pmap_sharding(devices: Tuple[jax.Device, ...]) -> jax.sharding.Sharding:
    """The sharding ``jax.pmap`` gives its outputs over ``devices`` (leading axis split over
    them): the layout the removed function produced. (brax's pmapped epoch still compiles twice
    under jax 0.10 -- its first and second calls -- whichever way the state is placed; the
    benchmarks drop every round in which a compile happened.)"""
    return jax.pmap(lambda x: x, devices=list(devices))(jnp.zeros(len(devices))).sharding


def device_put_replicated(tree, devices: Sequence[jax.Device]):
    """``tree`` with every leaf ``[len(devices), ...]``, one copy on each device."""
    sharding = pmap_sharding(tuple(devices))
    return jax.tree.map(
        lambda a: jax.device_put(jnp.stack([jnp.asarray(a)] * len(devices)), sharding), tree)


@contextlib.contextmanager
def device_put_replicated_shim() -> Iterator[None]:
    """``jax.device_put_replicated`` defined inside the block if jax lacks it (module doc)."""
    if hasattr(jax, "device_put_replicated"):  # an older jax: nothing to do
        yield
        return
    jax.device_put_replicated = device_put_replicated
    try:
        yield
    finally:
        del jax.device_put_replicated


def brax_pendulum(action_scale: float = 1.0):
    """A ``BraxPendulum`` instance (brax is imported here, not at module import)."""
    from brax.envs.base import Env as BraxEnv
    from brax.envs.base import State as BraxState

    class BraxPendulum(BraxEnv):
        """Our ``Pendulum`` behind brax's ``Env`` interface (module doc)."""

        def __init__(self):
            self.env = Pendulum(max_steps=EPISODE_LENGTH)
            self.params = self.env.default_params()
            self.action_scale = action_scale

        def reset(self, rng: jax.Array) -> BraxState:
            state, obs = self.env.reset(rng, self.params)
            zero = jnp.zeros((), jnp.float32)
            return BraxState(pipeline_state=state, obs=obs, reward=zero, done=zero,
                             metrics={}, info={})

        def step(self, state: BraxState, action: jax.Array) -> BraxState:
            inner, obs, reward, _, _ = self.env.step(
                jax.random.PRNGKey(0), state.pipeline_state, action * self.action_scale,
                self.params)  # Pendulum's step draws nothing: the key is unused
            return state.replace(pipeline_state=inner, obs=obs,
                                 reward=reward.astype(jnp.float32),
                                 done=jnp.zeros((), jnp.float32))

        @property
        def observation_size(self) -> int:
            return self.env.observation_size

        @property
        def action_size(self) -> int:
            return self.env.action_size

        @property
        def backend(self) -> str:
            return "jax"

    return BraxPendulum()
