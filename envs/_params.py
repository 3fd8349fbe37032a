"""Turn a ``Params`` dataclass built from its Python defaults into a pytree of jnp arrays.

Dataclass defaults must be immutable Python values (floats, ints, tuples), but ``default_params()``
has to return arrays so that a batch of params is a pytree with a leading axis on every leaf.
The dtype rule is the one ``EnvParams`` documents: integer fields -> int32, all others -> float32.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np


def params_as_arrays(params):
    """Return ``params`` with every field converted: int -> [] int32, float / tuple -> float32."""

    def convert(value):
        if isinstance(value, (bool, np.bool_)):
            return jnp.asarray(value, jnp.bool_)
        if isinstance(value, (int, np.integer)):
            return jnp.asarray(value, jnp.int32)
        return jnp.asarray(value, jnp.float32)

    return params.replace(
        **{f.name: convert(getattr(params, f.name)) for f in dataclasses.fields(params)})
