"""Count XLA compilations and their seconds inside a block, from JAX's public monitoring events.

    with CompileCounter() as compiles:
        first_call()
    compiles.count, compiles.seconds      # backend compilations and their summed duration
    compiles.cache_hits                   # of them, read from the persistent cache instead
    mark = compiles.mark(); ...; compiles.since(mark)   # (count, seconds) since a mark

Counts every backend compilation in the process while the block is open (jitted functions and
eager ops alike). A benchmark uses it to report a training program's compile time and the
number of compiles during a run, and to drop a timed round in which a peer compiled.
"""

from __future__ import annotations

from typing import Tuple

import jax.monitoring

EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"


class CompileCounter:
    """A context manager; ``count`` and ``seconds`` grow while it is open."""

    def __init__(self):
        self.count = 0  # compile requests (a persistent-cache hit is one too)
        self.seconds = 0.0
        self.cache_hits = 0  # of them, answered from the persistent compilation cache

    def _hit_listener(self, name, **kwargs):
        if name == CACHE_HIT:
            self.cache_hits += 1

    def _listener(self, name, duration, **kwargs):
        if name == EVENT:
            self.count += 1
            self.seconds += float(duration)

    def __enter__(self) -> "CompileCounter":
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        jax.monitoring.register_event_listener(self._hit_listener)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)
        jax.monitoring.unregister_event_listener(self._hit_listener)

    def mark(self) -> Tuple[int, float]:
        return self.count, self.seconds

    def since(self, mark: Tuple[int, float]) -> Tuple[int, float]:
        return self.count - mark[0], self.seconds - mark[1]
