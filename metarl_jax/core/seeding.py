"""Build a seed-batched train state one seed at a time (a workaround for a jaxlib CPU deadlock).

``jax.jit(jax.vmap(init))(keys)`` batches the QR decompositions of the orthogonal weight
initializers over seeds. On jaxlib 0.10.2's CPU backend a batched QR runs as a LAPACK FFI call
that splits its batch over the intra-op thread pool (``jax::ParallelBatchMap``) and blocks on the
pieces; when the program runs two such calls at once (two independent layers) on a 2-thread pool,
both pool threads wait for work that nobody is left to run, and the process hangs forever with
every thread idle (seen with gdb on the 2-core CI machine, in roughly 4 of 5 runs of one program
and rarely in others). Initializing each seed separately (batch of one QR: no split) and stacking
the results avoids the nested parallelism; the states are the same values ``vmap`` would give up
to floating-point rounding, and everything after initialization stays ``vmap``-ed.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def init_each_seed(init: Callable[..., Any], keys: jax.Array, *args: Any) -> Any:
    """``init(key, *args)`` for every key of ``keys[S]``, stacked on a leading axis ``[S, ...]``.

    ``init`` should be jitted (it then compiles once and runs S times).
    """
    states = [init(key, *args) for key in keys]
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)
