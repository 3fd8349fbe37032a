"""An on-device replay buffer: a pytree ring buffer as pure functions over a small state.

    buffer = replay.init(example_transition, capacity)   # leaves [capacity, *example.shape]
    buffer = replay.add(buffer, batch)                    # batch leaves [N, ...], N <= capacity
    batch = replay.sample(buffer, key, batch_size)        # leaves [batch_size, ...]

``ReplayBuffer`` is a flax ``struct`` dataclass: the storage (any pytree of arrays, e.g. a
``Transition`` NamedTuple) plus the write position and the number of filled slots as ``[]``
int32 arrays. Everything is data, so a buffer lives inside a learner's train state, is carried
through ``jit`` / ``lax.scan`` / ``vmap`` over seeds, and is saved whole by the orbax
checkpointer (a resumed off-policy run replays from exactly the same memory). The capacity is
static: it is the leading dimension of every storage leaf.

Slots fill in order ``0, 1, ...`` and wrap around to overwrite the oldest ones, so the filled
slots are always ``[0, size)``; ``sample`` draws uniformly from them (with replacement).

Why not flashbax: it is not a dependency of this project, and the part SAC needs -- a flat ring
buffer with batched insert and uniform sampling -- is ~60 lines of ``.at[].set`` and
``random.randint``. Owning it keeps the state a plain pytree of our own (no external state
classes in checkpoints, no version coupling of the checkpoint format to another library) and
lets the tests pin its exact semantics (wrap-around order, sampling only filled slots).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class ReplayBuffer:
    """Ring-buffer state.

    Attributes:
        data: pytree of arrays, every leaf ``[capacity, ...]``.
        position: ``[]`` int32, the slot the next insert writes first.
        size: ``[]`` int32, filled slots (``<= capacity``); filled slots are ``[0, size)``.
    """

    data: Any
    position: jax.Array
    size: jax.Array

    @property
    def capacity(self) -> int:
        return int(jax.tree.leaves(self.data)[0].shape[0])


def init(example: Any, capacity: int) -> ReplayBuffer:
    """An empty buffer for transitions shaped like ``example`` (one unbatched transition: a
    pytree of arrays or scalars). Storage leaves are zeros ``[capacity, *leaf.shape]`` with the
    leaf's dtype."""
    if int(capacity) < 1:
        raise ValueError(f"replay capacity must be >= 1, got {capacity}")
    leaves = jax.tree.leaves(example)
    if not leaves:
        raise ValueError("replay.init: the example transition has no array leaves")
    data = jax.tree.map(
        lambda x: jnp.zeros((int(capacity),) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data=data, position=jnp.int32(0), size=jnp.int32(0))


def add(buffer: ReplayBuffer, batch: Any) -> ReplayBuffer:
    """Write ``batch`` (the buffer's structure, every leaf ``[N, ...]``) into the next ``N``
    slots, wrapping around past the end (oldest first overwritten).

    Raises:
        ValueError: ``batch`` has another structure, leaf shape or leading size than the buffer
            expects, or ``N > capacity`` (slots would be written twice in one insert).
    """
    if jax.tree.structure(batch) != jax.tree.structure(buffer.data):
        raise ValueError(f"replay.add: batch structure {jax.tree.structure(batch)} differs from "
                         f"the buffer's {jax.tree.structure(buffer.data)}")
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(batch)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"replay.add: every batch leaf needs the same leading size N, got {sizes}")
    n = sizes.pop()
    capacity = buffer.capacity
    if n > capacity:
        raise ValueError(f"replay.add: batch of {n} transitions exceeds the capacity {capacity}")
    for stored, new in zip(jax.tree.leaves(buffer.data), jax.tree.leaves(batch)):
        if tuple(jnp.shape(new)[1:]) != tuple(stored.shape[1:]):
            raise ValueError(f"replay.add: a leaf has per-transition shape {jnp.shape(new)[1:]}, "
                             f"the buffer stores {stored.shape[1:]}")
    index = (buffer.position + jnp.arange(n, dtype=jnp.int32)) % capacity
    data = jax.tree.map(lambda d, x: d.at[index].set(x.astype(d.dtype)), buffer.data, batch)
    return ReplayBuffer(data=data, position=(buffer.position + n) % capacity,
                        size=jnp.minimum(buffer.size + n, capacity).astype(jnp.int32))


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Any:
    """``batch_size`` transitions drawn uniformly with replacement from the filled slots
    ``[0, size)``; leaves ``[batch_size, ...]``. An empty buffer returns slot 0 (zeros): callers
    gate learning on ``buffer.size`` (it cannot raise inside ``jit``)."""
    if int(batch_size) < 1:
        raise ValueError(f"replay.sample: batch_size must be >= 1, got {batch_size}")
    index = jax.random.randint(key, (int(batch_size),), 0, jnp.maximum(buffer.size, 1))
    return jax.tree.map(lambda d: d[index], buffer.data)


def empty_like(buffer: ReplayBuffer) -> ReplayBuffer:
    """The same buffer emptied (``size = position = 0``; storage zeroed)."""
    return ReplayBuffer(data=jax.tree.map(jnp.zeros_like, buffer.data),
                        position=jnp.zeros_like(buffer.position), size=jnp.zeros_like(buffer.size))
