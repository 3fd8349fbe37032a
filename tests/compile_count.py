"""``count_compiles()``: XLA compilations inside a block, from JAX's public monitoring events.

    with count_compiles() as compiles:
        run_something_already_warm()
    assert compiles.count == 0

Counts every backend compilation in the process during the block (jitted functions and eager
ops alike), so the block should hold only work that is expected to hit the caches.
"""

import contextlib

import jax.monitoring

EVENT = "/jax/core/compile/backend_compile_duration"


class _Counter:
    count = 0


@contextlib.contextmanager
def count_compiles():
    counter = _Counter()

    def listener(name, duration, **kwargs):
        if name == EVENT:
            counter.count += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
