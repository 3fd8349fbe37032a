"""Sinusoid regression tasks, the MAML paper's supervised benchmark (Finn et al. 2017, sec. 5.1).

A task is a sine wave ``y = amplitude * sin(x - phase)``; tasks are drawn with amplitude
``~ U[0.1, 5]`` and phase ``~ U[0, pi]``, inputs with ``x ~ U[-5, 5]``. Like an env's ``Params``,
a task is a pytree of arrays, so a meta-batch of tasks is one ``SinusoidTask`` with a leading axis.

Shapes: ``SinusoidTask`` leaves are ``[*batch]``; points ``x, y`` are ``[*batch, K, 1]``.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
from flax import struct

AMPLITUDE = (0.1, 5.0)
PHASE = (0.0, float(jnp.pi))
INPUT = (-5.0, 5.0)


@struct.dataclass
class SinusoidTask:
    """Attributes: amplitude [*batch]; phase [*batch]."""

    amplitude: jax.Array
    phase: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        """The target ``y`` for inputs ``x[*batch, K, 1]`` (batch axes broadcast)."""
        amp = jnp.expand_dims(self.amplitude, (-1, -2))
        phase = jnp.expand_dims(self.phase, (-1, -2))
        return amp * jnp.sin(x - phase)


class Points(NamedTuple):
    """A regression set: ``x, y`` of shape ``[*batch, K, 1]``."""

    x: jax.Array
    y: jax.Array


def sample_tasks(key: jax.Array, shape: Tuple[int, ...]) -> SinusoidTask:
    """Tasks with leaves of shape ``shape`` (amplitude and phase uniform, independent)."""
    amp_key, phase_key = jax.random.split(key)
    return SinusoidTask(
        amplitude=jax.random.uniform(amp_key, shape, minval=AMPLITUDE[0], maxval=AMPLITUDE[1]),
        phase=jax.random.uniform(phase_key, shape, minval=PHASE[0], maxval=PHASE[1]),
    )


def sample_points(key: jax.Array, task: SinusoidTask, num_points: int) -> Points:
    """``num_points`` inputs ``x ~ U[-5, 5]`` per task and their targets: ``[*batch, K, 1]``."""
    shape = jnp.shape(task.amplitude) + (num_points, 1)
    x = jax.random.uniform(key, shape, minval=INPUT[0], maxval=INPUT[1])
    return Points(x, task(x))


def grid_points(task: SinusoidTask, num_points: int) -> Points:
    """``num_points`` evenly spaced inputs over [-5, 5] (shared by every task) and targets."""
    grid = jnp.linspace(INPUT[0], INPUT[1], num_points)[:, None]
    x = jnp.broadcast_to(grid, jnp.shape(task.amplitude) + (num_points, 1))
    return Points(x, task(x))
