"""``ParamSpace``: a distribution over an env's ``Params``, itself a pytree (data, not code).

A space pairs the env's nominal ``Params`` with one distribution per randomized field::

    space = make_param_space(Pendulum().default_params(), {
        "m": uniform(0.5, 2.0, relative=True),      # mass = 1.0 * U[0.5, 2.0]
        "l": uniform(0.7, 1.3, relative=True),
        "action_delay": int_uniform(0, 2),
    })
    params = space.sample(key, (1024,))              # Params with leaves [1024, *field_shape]

Un-randomized fields keep their nominal value: ``sample(key, shape)`` broadcasts them to
``shape`` (so the result can be ``vmap``-ed with ``in_axes=0``), while ``sample(key)`` (shape
``()``) returns unbatched ``Params`` -- the form used inside a vmapped auto-reset, where
each env draws its own episode params. Because the space is a pytree whose numbers are leaves, it
can be passed through ``jit`` as an argument and updated by adaptive schemes (ADR, EPOpt) without
recompiling; which fields are randomized, and by which kind of distribution, is static.

Every field gets its own key, derived from the field name (``fold_in(key, crc32(name))``), so
adding a randomized field does not change the draws of the others.
"""

from __future__ import annotations

import dataclasses
import difflib
import zlib
from typing import Any, Dict, Mapping, Protocol, Tuple, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl_jax.randomization.distributions import (
    CONTINUOUS,
    DISTRIBUTIONS,
    Categorical,
    SpecError,
)

Params = Any
Support = Dict[str, Tuple[jax.Array, jax.Array]]  # {field: (low, high)} in value units


@runtime_checkable
class ParamDistribution(Protocol):
    """What every distribution over an env's ``Params`` implements (``ParamSpace``, ADR's
    ``ADRSpace``, ...); ``AutoReset``, ``Trial`` and the learners' states take any of them.

    Implementations are pytrees (their numbers are leaves, so they pass through ``jit`` and can
    live in a train state). ``nominal``: the unbatched nominal ``Params``.
    """

    nominal: Params

    def sample(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> Params:
        """``Params`` with every leaf ``[*shape, *field_shape]``."""
        ...

    def support(self) -> Support:
        """``{field: (low, high)}`` of the randomized fields, in value units."""
        ...

    def collapse_to_nominal(self) -> "ParamDistribution":
        """A distribution that always yields ``nominal`` (the same physics, no randomization)."""
        ...


def _field_key(key: jax.Array, name: str) -> jax.Array:
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


@struct.dataclass
class ParamSpace(ParamDistribution):
    """A distribution over ``Params`` (implements ``ParamDistribution``).

    Attributes:
        nominal: the env's ``Params`` (unbatched); un-randomized fields take these values.
        dists: ``{field_name: distribution}`` for the randomized fields.
    """

    nominal: Params
    dists: Dict[str, Any]

    @property
    def randomized_fields(self) -> Tuple[str, ...]:
        return tuple(sorted(self.dists))

    def sample(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> Params:
        """Draw ``Params`` with every leaf of shape ``[*shape, *field_shape]``."""
        shape = tuple(shape)
        updates = {
            name: dist.sample(_field_key(key, name), shape, getattr(self.nominal, name))
            for name, dist in self.dists.items()
        }
        nominal = jax.tree.map(
            lambda x: jnp.broadcast_to(x, shape + jnp.shape(x)), self.nominal
        )
        return nominal.replace(**updates)

    def collapse_to_nominal(self) -> "ParamSpace":
        """The nominal physics only (``fixed_space(self.nominal)``)."""
        return fixed_space(self.nominal)

    def support(self) -> Support:
        """``{field: (low, high)}`` in value space (relative draws scaled by the nominal)."""
        out = {}
        for name, dist in self.dists.items():
            low, high = dist.support()
            if dist.relative:
                nominal = getattr(self.nominal, name)
                low, high = jnp.minimum(low * nominal, high * nominal), jnp.maximum(
                    low * nominal, high * nominal
                )
            out[name] = (low, high)
        return out


def make_param_space(nominal: Params, dists: Mapping[str, Any] | None = None) -> ParamSpace:
    """Build a validated ``ParamSpace``.

    ``nominal``: the env's nominal ``Params``, or the env itself (then its ``default_params()``
    are the nominal and the space is also checked against the env with
    ``metarl_jax.core.wrappers.validate_space``: ``action_delay`` needs an ``ActionDelay``
    wrapper and delays within its ``max_delay``, ``obs_noise_std`` an ``ObservationNoise``).

    Raises ``SpecError`` (naming the field) when a field does not exist in ``nominal``, a
    distribution's parameters do not broadcast to the field's shape, a continuous distribution is
    put on an integer field, or an entry is not a distribution (use the factory functions in
    ``metarl_jax.randomization.distributions``, which check bounds).
    """
    if not dataclasses.is_dataclass(nominal) and callable(getattr(nominal, "default_params",
                                                                   None)):
        from metarl_jax.core.wrappers import validate_space  # core builds on this module

        env = nominal
        space = make_param_space(env.default_params(), dists)
        validate_space(env, space)
        return space
    dists = dict(dists or {})
    if not dataclasses.is_dataclass(nominal):
        raise SpecError(f"nominal must be an env Params dataclass, got {type(nominal).__name__}")
    field_names = [f.name for f in dataclasses.fields(nominal)]
    for name, dist in dists.items():
        if name not in field_names:
            close = difflib.get_close_matches(name, field_names, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise SpecError(
                f"unknown field {name!r} for {type(nominal).__name__}.{hint} "
                f"Fields: {', '.join(field_names)}"
            )
        if not isinstance(dist, DISTRIBUTIONS):
            raise SpecError(
                f"field {name!r}: expected a distribution (uniform, log_uniform, normal, "
                f"truncated_normal, categorical, int_uniform, fixed), got {type(dist).__name__}"
            )
        value = np.asarray(getattr(nominal, name))
        if np.issubdtype(value.dtype, np.integer) and isinstance(dist, CONTINUOUS):
            raise SpecError(
                f"field {name!r} is an integer ({value.dtype}); a continuous "
                f"{type(dist).__name__} would be truncated silently. Use int_uniform or "
                f"categorical with integer values."
            )
        if isinstance(dist, Categorical) and value.shape != ():
            raise SpecError(
                f"field {name!r} has shape {value.shape}; categorical supports scalar fields only"
            )
        for leaf_name, leaf in _leaves(dist):
            try:
                np.broadcast_to(np.asarray(leaf), value.shape)
            except ValueError:
                raise SpecError(
                    f"field {name!r} has shape {value.shape}, but the distribution's {leaf_name} "
                    f"has shape {np.shape(leaf)}, which does not broadcast to it"
                ) from None
    return ParamSpace(nominal=nominal, dists=dists)


def _leaves(dist) -> list:
    if isinstance(dist, Categorical):
        return []  # values index a categorical draw; each draw is a scalar
    return [(f.name, getattr(dist, f.name)) for f in dataclasses.fields(dist)
            if f.metadata.get("pytree_node", True)]


def fixed_space(params: Params) -> ParamSpace:
    """A space that always yields ``params`` (no randomization): the "nominal physics" run."""
    return ParamSpace(nominal=params, dists={})
