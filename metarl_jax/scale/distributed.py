"""Several processes (hosts) as one JAX program: start-up, who owns what, who writes.

    # on every host (or as env vars METARL_JAX_COORDINATOR / _NUM_PROCESSES / _PROCESS_ID):
    python -m experiments.<name> --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0

``DistributedSpec`` is the three numbers ``jax.distributed.initialize`` needs, read from the
command line or the environment (``spec_from_env``); ``initialize(spec)`` starts JAX's own
runtime (a coordination service on process 0, every process a client) before any computation.
After it, ``jax.devices()`` lists the devices of every process and ``jax.local_devices()`` this
process's own; a mesh over ``global_mesh()`` spans them all, and ``jit`` runs one SPMD program on
every process (each process calls it with the same arguments).

Who owns what: a leaf sharded ``P("data")`` over ``global_mesh()`` (the env batch of
``ShardedPPO``, or a seed axis) has its rows ``process_slice(n)`` on this process's devices --
process ``i`` of ``P`` owns the contiguous block ``[i * n / P, (i + 1) * n / P)``, which is what
``jax.make_array_from_process_local_data`` expects of each process's part. Parameters and
optimizer state are replicated: every process holds the same values.

Who writes: checkpoints are written by every process together (orbax's multi-host save: each
process writes the shards it owns, replicated arrays once, process 0 the metadata, and the step
is committed once all have finished), to a folder every process sees (a shared filesystem);
``metrics.jsonl``, ``config.json``, ``summary.json``, plots and the progress line are written by
process 0 only (``is_primary``).

On CPU, cross-process collectives go through gloo (``jax_cpu_collectives_implementation``, set
by ``initialize``), so a 2-process run on one machine exercises the same code paths as 2 hosts
(``tests/test_distributed.py``); on GPUs JAX uses NCCL.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping, Optional

import jax
import numpy as np
from jax.sharding import Mesh

from metarl_jax.scale.mesh import DATA

COORDINATOR_VAR = "METARL_JAX_COORDINATOR"  # host:port of process 0's coordination service
NUM_PROCESSES_VAR = "METARL_JAX_NUM_PROCESSES"
PROCESS_ID_VAR = "METARL_JAX_PROCESS_ID"


@dataclasses.dataclass(frozen=True)
class DistributedSpec:
    """Where the coordinator listens and which of ``num_processes`` this process is.

    Attributes:
        coordinator: ``host:port`` of process 0 (it listens there; the others connect).
        num_processes: processes in the job (>= 1).
        process_id: this process, in ``[0, num_processes)``.
    """

    coordinator: str
    num_processes: int
    process_id: int

    def __post_init__(self):
        host, sep, port = str(self.coordinator).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator must be host:port, got {self.coordinator!r}")
        if int(self.num_processes) < 1:
            raise ValueError(f"num_processes must be >= 1, got {self.num_processes}")
        if not 0 <= int(self.process_id) < int(self.num_processes):
            raise ValueError(f"process_id must be in [0, {self.num_processes}), "
                             f"got {self.process_id}")


def make_spec(coordinator: Optional[str], num_processes: Optional[str | int],
              process_id: Optional[str | int], where: str = "") -> Optional[DistributedSpec]:
    """A ``DistributedSpec`` from three optional values (flags or env vars), or None when none
    is given (a single-process run). ``ValueError`` (naming ``where``) when only some are given
    or one does not parse."""
    given = {"coordinator": coordinator, "num_processes": num_processes,
             "process_id": process_id}
    if all(v in (None, "") for v in given.values()):
        return None
    missing = [k for k, v in given.items() if v in (None, "")]
    if missing:
        raise ValueError(f"{where}a multi-process run needs coordinator, num_processes and "
                         f"process_id; missing: {', '.join(missing)}")
    try:
        n, i = int(num_processes), int(process_id)
    except (TypeError, ValueError):
        raise ValueError(f"{where}num_processes and process_id must be integers, got "
                         f"{num_processes!r} and {process_id!r}") from None
    try:
        return DistributedSpec(str(coordinator), n, i)
    except ValueError as e:
        raise ValueError(f"{where}{e}") from None


def spec_from_env(environ: Optional[Mapping[str, str]] = None) -> Optional[DistributedSpec]:
    """``make_spec`` from ``METARL_JAX_COORDINATOR`` / ``METARL_JAX_NUM_PROCESSES`` /
    ``METARL_JAX_PROCESS_ID`` (None when none is set)."""
    env = os.environ if environ is None else environ
    return make_spec(env.get(COORDINATOR_VAR), env.get(NUM_PROCESSES_VAR),
                     env.get(PROCESS_ID_VAR), where="environment: ")


_STARTED: dict = {}  # "spec": the DistributedSpec this process was initialized with


def initialize(spec: DistributedSpec) -> None:
    """Join the multi-process job ``spec`` (``jax.distributed.initialize``; blocks until every
    process has connected). Call once, before any JAX computation; a second call with the same
    spec does nothing, with another raises ``ValueError``. On CPU, selects gloo for
    cross-process collectives."""
    started = _STARTED.get("spec")
    if started is not None:
        if started != spec:
            raise ValueError(f"already initialized as {started}, cannot re-initialize as {spec}")
        return
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=spec.coordinator,
                               num_processes=spec.num_processes, process_id=spec.process_id)
    _STARTED["spec"] = spec


def is_primary() -> bool:
    """Whether this process writes the run's files and progress line (process 0; always True
    in a single-process run)."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Wait until every process has reached ``sync(name)`` (nothing to wait for in a one-process
    run); e.g. before reading back a file that process 0 alone wrote."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def process_slice(n: int, process_index: Optional[int] = None,
                  process_count: Optional[int] = None) -> slice:
    """The rows ``[i * n / P, (i + 1) * n / P)`` of an ``n``-row axis that process ``i`` of
    ``P`` owns when the axis is sharded over ``global_mesh()`` (default: this process).
    ``ValueError`` unless ``P`` divides ``n``."""
    i = jax.process_index() if process_index is None else int(process_index)
    p = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= i < p:
        raise ValueError(f"process_index must be in [0, {p}), got {i}")
    if int(n) % p:
        raise ValueError(f"{n} rows are not divisible by the {p} processes")
    per = int(n) // p
    return slice(i * per, (i + 1) * per)


def to_host(tree: Any) -> Any:
    """``tree`` readable by this process alone: unchanged in a one-process run (its arrays may be
    sharded over local devices, which ``jit`` and ``numpy`` read directly); with several
    processes, every array's global value gathered to every process as numpy
    (``multihost_utils.process_allgather``), so what follows training -- evaluation, export --
    runs on each process's own copy without collectives. A collective: every process calls it."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def global_mesh(axis: str = DATA) -> Mesh:
    """A one-axis mesh over every device of every process, ordered by process then local
    device, so that process ``i``'s devices hold the contiguous block ``process_slice``."""
    devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices), (axis,))


__all__ = ["COORDINATOR_VAR", "NUM_PROCESSES_VAR", "PROCESS_ID_VAR", "DistributedSpec",
           "global_mesh", "initialize", "is_primary", "make_spec", "process_slice",
           "spec_from_env", "sync", "to_host"]
