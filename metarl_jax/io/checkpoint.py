"""Full-train-state checkpoints with orbax, so that ``--resume`` continues a run bit-for-bit.

A checkpoint is the whole training-state pytree (flax ``struct`` dataclasses, optax states,
PRNG keys, step counters) plus a small JSON dict of metadata (``extra``: phase name, counters
kept in Python) written together as one orbax step::

    checkpoints/<step>/state/   the pytree (orbax StandardSave, OCDBT + zarr)
    checkpoints/<step>/meta/    the JSON dict (orbax JsonSave)

Orbax writes a step into ``<step>.orbax-checkpoint-tmp`` and renames it only when complete, so a
process killed mid-save leaves the previous complete step (the temporary folder is removed the
next time a ``Checkpointer`` opens the directory).

Several processes (``metarl_jax.scale.distributed``): every process calls ``save`` and
``restore`` with its part of a state whose arrays live on a mesh over all processes; orbax writes
each shard once (replicated arrays by one process) and commits the step when all are done. A
state with arrays local to one process cannot be saved that way (``CheckpointError``).

Saves are asynchronous: ``save`` returns once the arrays are held by orbax and the files are
written in a background thread (on CPU, a jitted call that donates those arrays while the save is
in flight does not corrupt it: JAX skips the donation while orbax holds the buffers). ``wait()``
blocks until the last save is on disk; ``close()`` waits, then releases the manager. A failure
of a background write is raised by the next ``save``/``wait``/``close``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp

from metarl_jax.io.run_dir import to_jsonable

_STATE = "state"
_META = "meta"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read back (missing, corrupt, or of another shape)."""


def _handler_registry() -> ocp.handlers.DefaultCheckpointHandlerRegistry:
    # Registering both items lets a fresh manager (a resumed process) read metadata and restore
    # without having saved first; one handler instance serves both save and restore args.
    registry = ocp.handlers.DefaultCheckpointHandlerRegistry()
    state, meta = ocp.StandardCheckpointHandler(), ocp.JsonCheckpointHandler()
    registry.add(_STATE, ocp.args.StandardSave, state)
    registry.add(_STATE, ocp.args.StandardRestore, state)
    registry.add(_META, ocp.args.JsonSave, meta)
    registry.add(_META, ocp.args.JsonRestore, meta)
    return registry


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    msg = text[0] if text else ""
    return f"{type(e).__name__}: {msg[:300]}"


def _leaf_signatures(tree: Any) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{"/params/w": (shape, dtype)}`` with containers normalised to names/indices.

    Orbax stores dataclasses and NamedTuples as dicts and tuples as lists; normalising the key
    path lets an in-memory ``like`` be compared with the stored metadata tree.
    """
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = []
        for k in path:
            for attr in ("key", "name", "idx"):
                if hasattr(k, attr):
                    parts.append(str(getattr(k, attr)))
                    break
            else:
                parts.append(str(k))
        if isinstance(leaf, jax.Array) and jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        shape = tuple(getattr(leaf, "shape", np.shape(leaf)))
        dtype = getattr(leaf, "dtype", None)
        out["/" + "/".join(parts)] = (shape, str(np.dtype(dtype)) if dtype is not None else "?")
    return out


def sharded_like(tree: Any) -> Any:
    """``tree``'s leaves as ``jax.ShapeDtypeStruct``s that keep each ``jax.Array``'s sharding:
    the restore template of a state that lives on a mesh (``Checkpointer.restore``). Unlike
    ``jax.eval_shape``, which drops shardings, so that a restored state would land on one
    device (or, with several processes, could not be placed at all)."""
    def leaf(x):
        # Typed PRNG keys stay arrays (they carry their sharding): ``restore`` reads their
        # key data and gives typed keys back only for a ``like`` leaf that is one.
        if isinstance(x, jax.Array) and not jax.dtypes.issubdtype(x.dtype,
                                                                  jax.dtypes.prng_key):
            return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
        return x
    return jax.tree.map(leaf, tree)


def _on_first_local_device(x: Any) -> Any:
    """A ``like`` leaf without a sharding (``jax.eval_shape``'s) as one on this process's first
    device: otherwise orbax places it as it was saved, which fails for a state saved from a mesh
    of another size ("Topology mismatch")."""
    if isinstance(x, jax.ShapeDtypeStruct) and x.sharding is None:
        return jax.ShapeDtypeStruct(x.shape, x.dtype,
                                    sharding=jax.sharding.SingleDeviceSharding(
                                        jax.local_devices()[0]))
    return x


class Checkpointer:
    """Save and restore ``(state pytree, extra dict)`` pairs by step in one directory.

    Args:
        directory: the checkpoint folder (``<run>/checkpoints``); created if missing.
        max_to_keep: how many most recent steps to keep (older ones are deleted after a save);
            None keeps all.
        async_save: write in a background thread (default). False makes ``save`` block.
        read_only: only read (``metarl_jax.load_run``): nothing is created, and the temporary
            folder of a save in progress -- another process may be training in this folder --
            is left alone.
    """

    def __init__(self, directory: str | os.PathLike, max_to_keep: int | None = 2, *,
                 async_save: bool = True, read_only: bool = False):
        if max_to_keep is not None and max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1 or None, got {max_to_keep}")
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(n=max_to_keep),
            create=not read_only,
            cleanup_tmp_directories=not read_only,  # leftovers of a killed save
            enable_async_checkpointing=async_save and not read_only,
            read_only=read_only,
        )
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, handler_registry=_handler_registry()
            )
        except Exception as e:
            raise CheckpointError(
                f"cannot open checkpoint directory {self.directory}: {_first_line(e)}"
            ) from e
        self._closed = False

    # -- writing -------------------------------------------------------------------------------

    def save(self, step: int, state: Any, extra: Mapping[str, Any] | None = None) -> None:
        """Start saving ``state`` (any pytree of arrays) and ``extra`` (JSON-able) as ``step``.

        Raises:
            CheckpointError: ``step`` already exists, or an earlier background save failed.
            ValueError: ``extra`` holds NaN/inf (named) or TypeError: a non-JSON value.
        """
        self._check_open()
        meta = to_jsonable(dict(extra or {}), "extra")
        step = int(step)
        if jax.process_count() > 1:
            local = [x for x in jax.tree.leaves(state)
                     if isinstance(x, jax.Array) and x.is_fully_addressable]
            if local:
                raise CheckpointError(
                    f"cannot save checkpoint step {step} of a {jax.process_count()}-process run: "
                    f"{len(local)} arrays of the state live on one process only; a multi-process "
                    "run trains on a mesh over every process (metarl_jax.scale.global_mesh)")
        if step in self._manager.all_steps():
            raise CheckpointError(
                f"checkpoint step {step} already exists in {self.directory}; steps are never "
                "overwritten."
            )
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    **{_STATE: ocp.args.StandardSave(state), _META: ocp.args.JsonSave(meta)}
                ),
                force=True,
            )
        except Exception as e:
            raise CheckpointError(
                f"saving checkpoint step {step} to {self.directory} failed: {_first_line(e)}"
            ) from e

    def wait(self) -> None:
        """Block until every started save is complete on disk."""
        self._check_open()
        try:
            self._manager.wait_until_finished()
        except Exception as e:
            raise CheckpointError(
                f"a background checkpoint save to {self.directory} failed: {_first_line(e)}"
            ) from e

    def delete(self, step: int) -> None:
        """Delete the checkpoint of ``step`` (e.g. an unreadable one, before writing it again)."""
        self._check_open()
        self.wait()
        try:
            self._manager.delete(int(step))
        except Exception as e:
            raise CheckpointError(
                f"deleting checkpoint step {step} in {self.directory} failed: {_first_line(e)}"
            ) from e

    def close(self) -> None:
        """Wait for pending saves, then release the manager (idempotent)."""
        if self._closed:
            return
        try:
            self.wait()
        finally:
            self._closed = True
            self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------------

    def all_steps(self) -> list[int]:
        """Complete steps on disk, ascending."""
        self._check_open()
        self._manager.reload()
        return sorted(int(s) for s in self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The newest complete step, or None when there is none."""
        steps = self.all_steps()
        return steps[-1] if steps else None

    def restore(self, step: int | None, like: Any, shardings: Any = None
                ) -> tuple[Any, dict[str, Any]]:
        """Read back ``(state, extra)`` saved at ``step`` (the latest step when None).

        Args:
            step: the step to read, or None for the latest.
            like: a pytree with the structure, shapes and dtypes of the saved state (e.g. a
                freshly initialised train state, or ``sharded_like`` of one); its values are
                not used. The result has ``like``'s containers (dataclasses, NamedTuples) and
                typed PRNG keys where ``like`` has them, and each leaf the sharding of its
                ``like`` leaf where that has one (a ``jax.Array``, or a ``ShapeDtypeStruct``
                with ``sharding``; ``jax.eval_shape`` gives none): a state sharded over a mesh,
                over several processes included, comes back sharded the same way, each process
                reading only the shards it owns. A leaf without a sharding comes back on this
                process's first device, whatever mesh it was saved from (a ``--devices 4``
                run read back by ``load_run`` on one device).
            shardings: a pytree of ``jax.sharding.Sharding`` with ``like``'s structure that
                overrides ``like``'s shardings; None keeps them.

        Raises:
            CheckpointError: no such step, ``like`` does not match what was saved (the message
                lists the differing leaves), or the files are missing or corrupt.
        """
        self._check_open()
        self.wait()  # a save of this very step may still be in flight
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise CheckpointError(f"no checkpoint in {self.directory}")
            step = steps[-1]
        step = int(step)
        if step not in steps:
            raise CheckpointError(
                f"no checkpoint for step {step} in {self.directory}; available steps: "
                f"{steps or 'none'}"
            )
        where = f"checkpoint step {step} in {self.directory / str(step)}"
        try:
            stored = self._manager.item_metadata(step)[_STATE]
        except Exception as e:
            raise CheckpointError(f"{where} is unreadable: {_first_line(e)}") from e
        if stored is None:
            raise CheckpointError(f"{where} is incomplete: its '{_STATE}' item is missing")
        self._check_matches(where, stored, like)
        if shardings is not None:
            like = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                                like, shardings)
        like = jax.tree.map(_on_first_local_device, like)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    **{_STATE: ocp.args.StandardRestore(target), _META: ocp.args.JsonRestore()}
                ),
            )
            state, meta = restored[_STATE], restored[_META]
        except Exception as e:
            raise CheckpointError(f"{where} could not be read: {_first_line(e)}") from e
        if meta is None:
            raise CheckpointError(f"{where} is incomplete: its '{_META}' item is missing")
        return state, meta

    @staticmethod
    def _check_matches(where: str, stored: Any, like: Any) -> None:
        have, want = _leaf_signatures(stored), _leaf_signatures(like)
        problems = [f"missing in checkpoint: {k}" for k in want if k not in have]
        problems += [f"not in `like`: {k}" for k in have if k not in want]
        for k in want.keys() & have.keys():
            (ws, wd), (hs, hd) = want[k], have[k]
            if ws != hs or (wd != hd and "?" not in (wd, hd)):
                problems.append(f"{k}: saved {hd}{list(hs)}, `like` has {wd}{list(ws)}")
        if problems:
            shown = "; ".join(sorted(problems)[:8])
            more = f" (and {len(problems) - 8} more)" if len(problems) > 8 else ""
            raise CheckpointError(
                f"{where} does not match the structure of `like`: {shown}{more}"
            )

    def _check_open(self) -> None:
        if self._closed:
            raise CheckpointError(f"Checkpointer for {self.directory} is closed")
