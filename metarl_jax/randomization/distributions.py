"""Distributions over one ``Params`` field, as small pytrees with a pure ``sample``.

Each distribution is a ``flax.struct`` dataclass: its numbers (bounds, mean, std, probabilities)
are pytree leaves, so a distribution is data that can live in a train state and be updated by
pure functions (ADR widens ``Uniform.low/high`` without recompiling). Its kind and whether it is
*relative* are static.

Relative ("scale") form: the sample multiplies the field's nominal value, e.g.
``uniform(0.8, 1.2, relative=True)`` on ``mass`` draws ``mass = nominal_mass * U[0.8, 1.2]``.
Absolute form: the sample is the value.

Construct distributions with the factory functions (``uniform``, ``log_uniform``, ``normal``,
``truncated_normal``, ``categorical``, ``int_uniform``, ``fixed``): they validate their arguments
and raise ``SpecError`` with the offending numbers, instead of producing NaNs later.

``sample(key, shape, nominal) -> [*shape, *nominal.shape]`` for every distribution.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class SpecError(ValueError):
    """An invalid randomization spec (bad bounds, unknown field, wrong shape, ...)."""


def _as_f32(name: str, value) -> jax.Array:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"{name} must be finite, got {value!r}")
    return jnp.asarray(arr, dtype=jnp.float32)


def _apply(value: jax.Array, nominal: jax.Array, relative: bool) -> jax.Array:
    value = nominal * value if relative else jnp.broadcast_to(value, value.shape)
    return value.astype(nominal.dtype)


def _full_shape(shape: Sequence[int], nominal: jax.Array) -> tuple:
    return tuple(shape) + tuple(jnp.shape(nominal))


@struct.dataclass
class Uniform:
    """``U[low, high]`` elementwise. ``low, high``: broadcastable to the field's shape."""

    low: jax.Array
    high: jax.Array
    relative: bool = struct.field(pytree_node=False, default=False)

    def sample(self, key, shape, nominal):
        u = jax.random.uniform(key, _full_shape(shape, nominal), minval=self.low, maxval=self.high)
        return _apply(u, nominal, self.relative)

    def support(self):
        return self.low, self.high


@struct.dataclass
class LogUniform:
    """``exp(U[log low, log high])``: scale-free ranges such as masses or damping (``low > 0``)."""

    low: jax.Array
    high: jax.Array
    relative: bool = struct.field(pytree_node=False, default=False)

    def sample(self, key, shape, nominal):
        u = jax.random.uniform(
            key, _full_shape(shape, nominal), minval=jnp.log(self.low), maxval=jnp.log(self.high)
        )
        return _apply(jnp.exp(u), nominal, self.relative)

    def support(self):
        return self.low, self.high


@struct.dataclass
class Normal:
    """``N(mean, std^2)`` (unbounded; prefer ``TruncatedNormal`` for physical quantities)."""

    mean: jax.Array
    std: jax.Array
    relative: bool = struct.field(pytree_node=False, default=False)

    def sample(self, key, shape, nominal):
        z = jax.random.normal(key, _full_shape(shape, nominal))
        return _apply(self.mean + self.std * z, nominal, self.relative)

    def support(self):
        return jnp.full_like(self.mean, -jnp.inf), jnp.full_like(self.mean, jnp.inf)


@struct.dataclass
class TruncatedNormal:
    """``N(mean, std^2)`` conditioned on ``[low, high]`` (exact, by inverse-CDF sampling)."""

    mean: jax.Array
    std: jax.Array
    low: jax.Array
    high: jax.Array
    relative: bool = struct.field(pytree_node=False, default=False)

    def sample(self, key, shape, nominal):
        lower = (self.low - self.mean) / self.std
        upper = (self.high - self.mean) / self.std
        z = jax.random.truncated_normal(key, lower, upper, _full_shape(shape, nominal))
        value = jnp.clip(self.mean + self.std * z, self.low, self.high)
        return _apply(value, nominal, self.relative)

    def support(self):
        return self.low, self.high


@struct.dataclass
class Categorical:
    """One of ``values[k]`` with probability ``probs[k]``. ``values: [K]`` (scalar fields only)."""

    values: jax.Array
    probs: jax.Array
    relative: bool = struct.field(pytree_node=False, default=False)

    def sample(self, key, shape, nominal):
        idx = jax.random.choice(
            key, self.values.shape[0], shape=_full_shape(shape, nominal), p=self.probs
        )
        return _apply(self.values[idx], nominal, self.relative)

    def support(self):
        return jnp.min(self.values), jnp.max(self.values)


@struct.dataclass
class IntUniform:
    """Integers uniform on ``{low, ..., high}`` (inclusive), e.g. an action delay in steps."""

    low: jax.Array
    high: jax.Array
    relative: bool = struct.field(pytree_node=False, default=False)

    def sample(self, key, shape, nominal):
        value = jax.random.randint(key, _full_shape(shape, nominal), self.low, self.high + 1)
        return _apply(value, nominal, self.relative)

    def support(self):
        return self.low, self.high


@struct.dataclass
class Fixed:
    """Always ``value`` (or ``value * nominal`` when relative)."""

    value: jax.Array
    relative: bool = struct.field(pytree_node=False, default=False)

    def sample(self, key, shape, nominal):
        del key
        value = jnp.broadcast_to(self.value, _full_shape(shape, nominal))
        return _apply(value, nominal, self.relative)

    def support(self):
        return self.value, self.value


Distribution = Uniform | LogUniform | Normal | TruncatedNormal | Categorical | IntUniform | Fixed
DISTRIBUTIONS = (Uniform, LogUniform, Normal, TruncatedNormal, Categorical, IntUniform, Fixed)
CONTINUOUS = (Uniform, LogUniform, Normal, TruncatedNormal)


def _check_order(low, high, what="low", what_high="high"):
    if np.any(np.asarray(low) > np.asarray(high)):
        raise SpecError(f"{what} must be <= {what_high}, got {what}={np.asarray(low).tolist()} "
                        f"> {what_high}={np.asarray(high).tolist()}")


def uniform(low, high, *, relative: bool = False) -> Uniform:
    """``U[low, high]``; ``relative=True`` multiplies the nominal value by the draw."""
    low, high = _as_f32("uniform low", low), _as_f32("uniform high", high)
    _check_order(low, high)
    return Uniform(low, high, relative)


def log_uniform(low, high, *, relative: bool = False) -> LogUniform:
    """Log-uniform on ``[low, high]``, ``0 < low <= high``."""
    low, high = _as_f32("log_uniform low", low), _as_f32("log_uniform high", high)
    if np.any(np.asarray(low) <= 0):
        raise SpecError(f"log_uniform needs low > 0, got low={np.asarray(low).tolist()}")
    _check_order(low, high)
    return LogUniform(low, high, relative)


def normal(mean, std, *, relative: bool = False) -> Normal:
    """``N(mean, std^2)``, ``std >= 0``."""
    mean, std = _as_f32("normal mean", mean), _as_f32("normal std", std)
    if np.any(np.asarray(std) < 0):
        raise SpecError(f"normal std must be >= 0, got std={np.asarray(std).tolist()}")
    return Normal(mean, std, relative)


def truncated_normal(mean, std, low, high, *, relative: bool = False) -> TruncatedNormal:
    """``N(mean, std^2)`` truncated to ``[low, high]``; ``std > 0``, ``low < high``."""
    mean, std = _as_f32("truncated_normal mean", mean), _as_f32("truncated_normal std", std)
    low, high = _as_f32("truncated_normal low", low), _as_f32("truncated_normal high", high)
    if np.any(np.asarray(std) <= 0):
        raise SpecError(f"truncated_normal std must be > 0, got std={np.asarray(std).tolist()}")
    if np.any(np.asarray(low) >= np.asarray(high)):
        raise SpecError(f"truncated_normal needs low < high, got low={np.asarray(low).tolist()}, "
                        f"high={np.asarray(high).tolist()}")
    return TruncatedNormal(mean, std, low, high, relative)


def categorical(values: Sequence, probs: Sequence | None = None, *, relative: bool = False
                ) -> Categorical:
    """One of ``values`` (a 1-D list), with ``probs`` (default: uniform) summing to 1."""
    values_np = np.asarray(values)
    if values_np.ndim != 1 or values_np.shape[0] == 0:
        raise SpecError(f"categorical values must be a non-empty 1-D list, got {values!r}")
    if not np.all(np.isfinite(values_np.astype(np.float64))):
        raise SpecError(f"categorical values must be finite, got {values!r}")
    k = values_np.shape[0]
    probs_np = np.full(k, 1.0 / k) if probs is None else np.asarray(probs, dtype=np.float64)
    if probs_np.shape != (k,):
        raise SpecError(f"categorical probs must have shape ({k},), got {probs_np.shape}")
    if np.any(~np.isfinite(probs_np)) or np.any(probs_np < 0) or not math.isclose(
        float(probs_np.sum()), 1.0, rel_tol=1e-5
    ):
        raise SpecError(f"categorical probs must be >= 0 and sum to 1, got {probs_np.tolist()}")
    dtype = jnp.int32 if np.issubdtype(values_np.dtype, np.integer) else jnp.float32
    return Categorical(jnp.asarray(values_np, dtype), jnp.asarray(probs_np, jnp.float32), relative)


def int_uniform(low: int, high: int) -> IntUniform:
    """Integers uniform on ``{low, ..., high}`` (inclusive)."""
    if int(low) != low or int(high) != high:
        raise SpecError(f"int_uniform bounds must be integers, got low={low!r}, high={high!r}")
    _check_order(low, high)
    return IntUniform(jnp.int32(low), jnp.int32(high))


def fixed(value, *, relative: bool = False) -> Fixed:
    """A constant (useful to pin one field of a space, e.g. for an evaluation cell)."""
    value_np = np.asarray(value)
    if not np.all(np.isfinite(value_np.astype(np.float64))):
        raise SpecError(f"fixed value must be finite, got {value!r}")
    return Fixed(jnp.asarray(value_np), relative)
