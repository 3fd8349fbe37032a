"""Detecting non-finite training quantities inside ``jit``, without a host sync per step.

A learner's update computes ``code = nonfinite_code(loss=..., grad=..., params=...)``: an int32
bitmask with one bit per quantity that holds a NaN or inf (0 when everything is finite). It keeps
the previous state when the code is non-zero (``keep_if_finite``), so the state a chunk returns is
always the last good one, and it reports ``code`` as the metric ``"nonfinite_flags"``. The Python
training loop reads the metrics it fetches anyway between chunks, and stops with
``NonFiniteError`` naming the quantity and the first bad update; the last good checkpoint on disk is
left as it was.
"""

from __future__ import annotations

from typing import Any, List

import jax
import jax.numpy as jnp

QUANTITIES = ("loss", "grad", "params")


def all_finite(tree: Any) -> jax.Array:
    """``[] bool``: every element of every floating leaf of ``tree`` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def nonfinite_code(**quantities: Any) -> jax.Array:
    """``[] int32`` bitmask over ``QUANTITIES`` (bit i set: quantity i has a NaN/inf)."""
    unknown = set(quantities) - set(QUANTITIES)
    if unknown:
        raise ValueError(f"unknown quantities {sorted(unknown)}; known: {QUANTITIES}")
    code = jnp.int32(0)
    for i, name in enumerate(QUANTITIES):
        if name in quantities:
            code = code | jnp.where(all_finite(quantities[name]), 0, 1 << i).astype(jnp.int32)
    return code


def keep_if_finite(code: jax.Array, new_state: Any, old_state: Any) -> Any:
    """``new_state`` when ``code == 0``, else ``old_state`` (elementwise select, jit-friendly)."""
    return jax.tree.map(lambda new, old: jnp.where(code == 0, new, old), new_state, old_state)


def describe(code: int) -> List[str]:
    """The names of the quantities flagged in ``code``."""
    return [name for i, name in enumerate(QUANTITIES) if int(code) & (1 << i)]


class NonFiniteError(RuntimeError):
    """Training produced a NaN/inf; nothing after the last good checkpoint was saved."""

    def __init__(self, phase: str, update: int, code: int, run_dir=None):
        self.phase, self.update, self.quantities, self.run_dir = (
            phase, update, describe(code), run_dir)
        super().__init__(
            f"non-finite {', '.join(self.quantities)} at update {update} of phase {phase!r}; "
            f"training stopped, the last good checkpoint is kept"
        )
