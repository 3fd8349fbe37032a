"""Threefry keys whose hash compiles to straight-line code: the same bits, faster on a CPU.

JAX lowers its Threefry-2x32 hash on CPU as a rolled loop (a ``while`` of 5 iterations) to keep
compile times short. Inside a per-step program that draws small batches -- ``AutoReset``'s
per-episode params and reset states, a few numbers per env through ``fold_in`` and ``uniform``
-- each draw then becomes its own loop whose body XLA cannot fuse with its neighbours, and the
hashing costs ~3-4x the straight-line version (measured on the 2-core CPU: ``vmap`` over 1024
envs of ``fold_in`` + ``uniform`` for 4 fields, 110 us rolled vs 29 us unrolled per step).

``unrolled(keys)`` re-tags threefry keys with ``UNROLLED_THREEFRY``, a PRNG implementation
that computes every ``split``, ``fold_in`` and ``random_bits`` with the same Threefry-2x32 hash
(20 rounds, Salmon et al. 2011) written out in ``jnp`` operations, on the same counters as
JAX's partitionable threefry (``jax_threefry_partitionable``, the default). Every draw made from
the re-tagged keys -- ``uniform``, ``normal``, ``split``... -- is bit-identical to the draw from
the original keys (``tests/test_randomization.py`` checks each primitive). Keys of another
implementation, or with the partitionable flag off, are returned unchanged.

    keys = unrolled(jax.random.split(key, 1024))    # [1024] keys, same streams
"""

from __future__ import annotations

import math
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.extend import random as jex_random

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def threefry2x32(k1: jax.Array, k2: jax.Array, x1: jax.Array, x2: jax.Array):
    """The Threefry-2x32 block cipher, 20 rounds: key words ``k1, k2`` and counter words
    ``x1, x2`` (uint32 arrays that broadcast together) -> the two uint32 output words."""
    ks = (k1, k2, k1 ^ k2 ^ _PARITY)
    x1, x2 = x1 + ks[0], x2 + ks[1]
    for i in range(5):  # 5 groups of 4 rounds, a key injection after each
        for r in _ROTATIONS[i % 2]:
            x1 = x1 + x2
            x2 = (x2 << np.uint32(r)) | (x2 >> np.uint32(32 - r))
            x2 = x1 ^ x2
        x1 = x1 + ks[(i + 1) % 3]
        x2 = x2 + ks[(i + 2) % 3] + np.uint32(i + 1)
    return x1, x2


def _counters(shape):
    """The row-major index of every element of ``shape`` as (high, low) uint32 words."""
    size = math.prod(shape)
    if size >= 2**32:
        raise NotImplementedError("more than 2**32 draws from one key")
    low = jax.lax.iota(np.uint32, size).reshape(shape)
    return jnp.zeros(shape, np.uint32), low


def _split(key: jax.Array, shape) -> jax.Array:
    high, low = _counters(tuple(shape))
    y1, y2 = threefry2x32(key[0], key[1], high, low)
    return jnp.stack([y1, y2], axis=-1)


def _fold_in(key: jax.Array, data) -> jax.Array:
    y1, y2 = threefry2x32(key[0], key[1], np.uint32(0), jnp.asarray(data, np.uint32))
    return jnp.stack([y1, y2])


def _random_bits(key: jax.Array, bit_width: int, shape) -> jax.Array:
    if bit_width not in (8, 16, 32, 64):
        raise TypeError(f"random_bits needs an 8-, 16-, 32- or 64-bit width, got {bit_width}")
    y1, y2 = threefry2x32(key[0], key[1], *_counters(tuple(shape)))
    if bit_width == 64:
        return (y1.astype(np.uint64) << np.uint64(32)) | y2.astype(np.uint64)
    return (y1 ^ y2).astype(f"uint{bit_width}")


UNROLLED_THREEFRY = jex_random.define_prng_impl(
    key_shape=(2,), seed=jex_random.threefry_prng_impl.seed, split=_split,
    random_bits=_random_bits, fold_in=_fold_in, name="threefry2x32_unrolled", tag="fru")


def unrolled(keys: jax.Array) -> jax.Array:
    """``keys`` (typed threefry keys, any shape) re-tagged with ``UNROLLED_THREEFRY``: the same
    streams, hashed in straight-line code. Other keys (another implementation, raw uint32
    keys, or ``jax_threefry_partitionable`` off) are returned unchanged."""
    if (not jax.config.jax_threefry_partitionable
            or not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key)
            or str(jax.random.key_impl(keys)) != "threefry2x32"):
        return keys
    return jax.random.wrap_key_data(jax.random.key_data(keys), impl=UNROLLED_THREEFRY)


def _fold_in_matches_split() -> bool:
    """Whether ``split(key, n)[i] == fold_in(key, i)`` (true for threefry keys under
    ``jax_threefry_partitionable``, the default: both hash the counter ``(0, i)``)."""
    return bool(jax.config.jax_threefry_partitionable)


def unrolled_key(key: jax.Array) -> jax.Array:
    """``key`` (a raw ``uint32[..., 2]`` threefry key or a typed one) as a typed key whose
    hashes are ``unrolled``'s straight-line Threefry: the same draws."""
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    return unrolled(key)


def like_key(key: jax.Array, reference: jax.Array) -> jax.Array:
    """``key`` (from ``unrolled_key``) back in ``reference``'s representation (raw
    ``uint32[..., 2]`` or a typed key of its implementation), so loop carries keep their type."""
    data = jax.random.key_data(key)
    if not jnp.issubdtype(reference.dtype, jax.dtypes.prng_key):
        return data
    return jax.random.wrap_key_data(data, impl=jax.random.key_impl(reference))


def _is_threefry(keys: jax.Array) -> bool:
    """Threefry keys, JAX's or ``unrolled``'s (the same hash, so the same ``fold_in``)."""
    return str(jax.random.key_impl(keys)) in ("threefry2x32", str(UNROLLED_THREEFRY))


@struct.dataclass
class EnvKeys:
    """The step keys of a batch of envs, hashed only where they are used.

    Env ``j`` of the batch steps with ``jax.random.split(base[j // per], per)[j % per]``:
    ``EnvKeys(key[None], per=N)`` stands for ``split(key, N)`` (what ``core.rollout.rollout``
    hands a batch-level ``step_batch``); ``per=None`` means ``base`` already holds one key per
    env. ``take(idx)`` hashes only the keys asked for (a ``fold_in`` of their base key, the same
    bits as the split), so a program that needs the keys of a few envs -- ``AutoReset``'s redraw
    of the envs whose episode ended -- does not hash ``N`` keys on every step.

    Attributes:
        base: ``[B]`` typed keys.
        per: envs per base key (static), or None.
    """

    base: jax.Array
    per: Optional[int] = struct.field(pytree_node=False, default=None)

    @property
    def size(self) -> int:
        """``B * per`` (``B`` without ``per``): the number of envs."""
        return self.base.shape[0] * (self.per or 1)

    def all(self) -> jax.Array:
        """Every env's key, ``[size]``."""
        if self.per is None:
            return self.base
        return jax.vmap(lambda k: jax.random.split(k, self.per))(self.base).reshape(-1)

    def take(self, idx: jax.Array) -> jax.Array:
        """The keys of envs ``idx`` (``[n]`` int; out-of-range indices are clipped) -> ``[n]``."""
        idx = jnp.clip(idx, 0, self.size - 1)
        if self.per is None:
            return self.base[idx]
        if not (_fold_in_matches_split() and _is_threefry(self.base)):
            return self.all()[idx]
        return jax.vmap(jax.random.fold_in)(unrolled(self.base[idx // self.per]),
                                            idx % self.per)


BATCH_TAG_MIN = 2**31  # fold_in tags of batch draws: never an env's index (envs < 2**31)


def batch_draw_keys(keys: EnvKeys, tag: int) -> jax.Array:
    """One key per base key of ``keys`` for a batch draw: ``fold_in(base, tag)`` -> ``[B]``.

    ``tag`` (``>= BATCH_TAG_MIN``) names the draw; env ``i``'s own key is ``fold_in(base, i)``
    with ``i < 2**31``, so a batch key never equals an env's key. Without ``per`` (one key per
    env given), every env is its own batch of one."""
    if not BATCH_TAG_MIN <= tag < 2**32:
        raise ValueError(f"batch draw tags lie in [2**31, 2**32), got {tag}")
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(unrolled(keys.base), tag)


def batch_normal(keys: EnvKeys, tag: int, shape, dtype=jnp.float32) -> jax.Array:
    """``[keys.size, *shape]`` standard normals, one ``normal`` call per batch key
    (``batch_draw_keys``): env ``j``'s row is row ``j % per`` of its base key's draw."""
    per = keys.per or 1
    draw = lambda k: jax.random.normal(k, (per,) + tuple(shape), dtype)
    out = jax.vmap(draw)(batch_draw_keys(keys, tag))  # [B, per, *shape]
    return out.reshape((keys.size,) + tuple(shape))


def env_keys(keys: jax.Array | EnvKeys, num_envs: int) -> EnvKeys:
    """``keys`` for a batch of ``num_envs`` envs as ``EnvKeys``: one key (``[]``: env ``i`` gets
    ``split(key, num_envs)[i]``), one key per env (``[num_envs]``), or ``EnvKeys``. Raw uint32
    keys (``jax.random.PRNGKey``'s) become typed threefry keys: the same draws."""
    if isinstance(keys, EnvKeys):
        out = keys
    elif not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):  # raw uint32 keys [..., 2]
        return env_keys(jax.random.wrap_key_data(keys), num_envs)
    elif keys.ndim == 0:
        out = EnvKeys(keys[None], per=int(num_envs))
    elif keys.ndim == 1:
        out = EnvKeys(keys)
    else:
        raise ValueError(f"env keys must be one key [] or one per env [{num_envs}], got shape "
                         f"{keys.shape}")
    if out.size != num_envs:
        raise ValueError(f"{out.size} env keys for a batch of {num_envs} envs")
    return out
