"""The thin Python loop around a compiled training chunk: log, checkpoint, report, resume.

``train_phase`` drives any learner that exposes ``init() -> state`` and
``chunk(state, num_updates) -> (state, metrics)`` (metrics: ``{name: [S, num_updates]}`` with a
leading seed axis, or ``[num_updates]``). Between chunks it appends one ``metrics.jsonl`` line per
update (averaged over seeds), updates the progress line, and writes a full-state orbax checkpoint
under ``<run>/checkpoints/<phase>/<update>``. A run resumed from a checkpoint replays exactly the
same sequence of chunks as an uninterrupted one, so its final state and metrics are bit-identical
(chunk boundaries are a fixed multiple of the chunk size from update 0). The chunk size is
``even_chunk_size(num_updates, updates_per_chunk)``: a divisor of the phase's updates where one
is close enough below ``updates_per_chunk``, so that no short final chunk compiles the training
program a second time (the number of updates per call is static). With several seeds,
each ``*return*`` metric's line also holds ``<name>_per_seed``. ``progress_fn(step, metrics)``,
if given, is called after every chunk (brax.training's convention), never inside ``jit``.

A NaN/inf in the loss, gradients or parameters (the learner's ``nonfinite_flags`` metric, see
``metarl_jax.core.nonfinite``) stops the phase with ``NonFiniteError``; the updates before it are
logged and no checkpoint is written after the last good one.

SIGINT / SIGTERM (``metarl_jax.io.stop_signals``): once a phase's first chunk is done, a signal
stops the loop after the chunk in flight, which saves the state and raises ``Interrupted`` (the
experiment prints how to resume). The request outlives the phase: a signal that lands on a
phase's last chunk or final save raises ``Interrupted`` when that phase ends, and a phase never
starts while a stop is pending. A corrupt latest checkpoint falls back to the older kept one.

Several processes (``metarl_jax.scale.distributed``): every process runs the same loop and takes
part in every checkpoint save and restore (orbax's multi-host checkpointing; a restored state
gets the shardings of ``init()``'s state, ``checkpoint.sharded_like``), while ``metrics.jsonl``
and the progress line are written by process 0 only.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import numpy as np

from metarl_jax.core.nonfinite import NonFiniteError
from metarl_jax.io.checkpoint import Checkpointer, CheckpointError, sharded_like
from metarl_jax.io.metrics import MetricsLog, read_metrics, truncate_metrics
from metarl_jax.io.progress import Progress
from metarl_jax.io.run_dir import CHECKPOINT_DIR, METRICS_FILE
from metarl_jax.io.stop_signals import stop_signals


class Interrupted(Exception):
    """Training was stopped by SIGINT/SIGTERM with a checkpoint at ``update`` of ``phase``
    (``started=False``: the phase did not start because a stop was pending)."""

    def __init__(self, run_dir: Path, phase: str, update: int, started: bool = True):
        if started:
            text = f"phase {phase!r} interrupted at update {update} (checkpoint saved)"
        else:
            text = f"stopped before phase {phase!r} (at update {update}; earlier work is saved)"
        super().__init__(text)
        self.run_dir, self.phase, self.update = run_dir, phase, update


def _first_nonfinite(metrics: Dict[str, np.ndarray]) -> Optional[Tuple[int, int]]:
    """``(update index in the chunk, bitmask)`` of the first update whose ``nonfinite`` metric
    is set in any seed, or None."""
    codes = metrics.get("nonfinite_flags")
    if codes is None:
        return None
    codes = np.asarray(codes).reshape(-1, np.shape(codes)[-1])  # [S, n]
    per_update = np.bitwise_or.reduce(codes, axis=0)
    flagged = np.flatnonzero(per_update)
    return (int(flagged[0]), int(per_update[flagged[0]])) if flagged.size else None


def _seed_mean(metrics: Dict[str, np.ndarray], i: int) -> Dict[str, Any]:
    """Metrics of update ``i`` of a chunk, averaged over a leading seed axis if there is one.

    With several seeds, each metric named ``*return*`` also keeps its per-seed values as
    ``<name>_per_seed`` (a list, non-finite values as None): the per-seed training curves, at S
    numbers per curve and line rather than S copies of every metric."""
    line: Dict[str, Any] = {k: float(np.mean(v[..., i])) for k, v in metrics.items()}
    for k, v in metrics.items():
        if "return" in k and np.ndim(v) == 2 and np.shape(v)[0] > 1:
            line[f"{k}_per_seed"] = [float(x) if np.isfinite(x) else None
                                     for x in np.asarray(v)[:, i]]
    return line


def even_chunk_size(num_updates: int, updates_per_chunk: int) -> int:
    """The updates per compiled call ``train_phase`` uses: the largest divisor of
    ``num_updates`` that is ``<= updates_per_chunk``, if it is at least half of it (so the run
    ends on a full chunk: one compile), else ``updates_per_chunk`` itself (a last, shorter chunk
    compiles once more, rather than many tiny chunks; e.g. a prime ``num_updates``).
    Per-update results do not depend on it (each update's key comes from the state)."""
    upper = max(1, min(updates_per_chunk, num_updates))
    for size in range(upper, 0, -1):
        if num_updates % size == 0:
            return size if 2 * size >= upper else upper
    return upper


def train_phase(
    run_dir: Path,
    phase: str,
    init: Callable[[], Any],
    chunk: Callable[[Any, int], Tuple[Any, Dict[str, Any]]],
    num_updates: int,
    updates_per_chunk: int,
    steps_per_update: int,
    show: Sequence[str] = ("episode_return",),
    checkpoint_every: int = 1,
    stop_after_updates: Optional[int] = None,
    progress_fn: Optional[Callable[[int, Dict[str, Any]], None]] = None,
) -> Any:
    """Run (or resume, or skip if finished) one training phase and return its final state.

    Args:
        run_dir: the run folder (holds ``metrics.jsonl`` and ``checkpoints/``).
        phase: a name for this training run within the experiment (e.g. ``"nominal"``).
        init: builds the initial train state (also the template a checkpoint is restored into).
        chunk: ``chunk(state, n) -> (state, metrics)`` runs ``n`` updates (compiled).
        num_updates: updates in the whole phase.
        updates_per_chunk: updates per compiled call (logging/checkpoint granularity); rounded
            down to a divisor of ``num_updates`` by ``even_chunk_size``.
        steps_per_update: env steps per update, all envs and seeds together (for progress).
        show: metric names printed on the progress line.
        checkpoint_every: save every this many chunks (and always at the end).
        stop_after_updates: stop (as if interrupted) once this many updates are done; for tests.
        progress_fn: ``progress_fn(env steps done, metrics)`` after every chunk; ``metrics`` is
            the chunk's last ``metrics.jsonl`` line (seed means) with ``phase`` and ``update``.
    """
    if updates_per_chunk < 1 or num_updates < 1:
        raise ValueError(f"need num_updates >= 1 and updates_per_chunk >= 1, got "
                         f"{num_updates}, {updates_per_chunk}")
    updates_per_chunk = even_chunk_size(num_updates, updates_per_chunk)
    metrics_path = run_dir / METRICS_FILE
    with stop_signals() as stop:
        stop.run_dir = run_dir
        checkpointer = Checkpointer(run_dir / CHECKPOINT_DIR / phase, max_to_keep=2)
        try:
            if stop.requested:  # asked during an earlier phase: do not start this one
                raise Interrupted(run_dir, phase, checkpointer.latest_step() or 0, started=False)
            state, done = _restore_latest(checkpointer, init, phase)
            # Drop lines this phase logged after its checkpoint (all of them when there is
            # none): they will be logged again.
            if jax.process_index() == 0:
                truncate_metrics(metrics_path, lambda line: not (
                    line.get("phase") == phase and line["update"] > done))
            if done >= num_updates:
                return state
            with contextlib.ExitStack() as stoppable:
                state, done = _run_chunks(
                    run_dir, phase, state, done, chunk, num_updates, updates_per_chunk,
                    steps_per_update, show, checkpoint_every, stop_after_updates, checkpointer,
                    stop, on_first_chunk=lambda: stoppable.enter_context(stop.stoppable()),
                    progress_fn=progress_fn)
                checkpointer.close()  # the final save is on disk before the phase counts as done
        finally:
            checkpointer.close()
        if stop.requested:  # the signal landed on the last chunk or the final save
            raise Interrupted(run_dir, phase, done)
        return state


def _restore_latest(checkpointer: Checkpointer, init: Callable[[], Any], phase: str
                    ) -> Tuple[Any, int]:
    """``(state, update)`` from the newest readable checkpoint, or ``(init(), 0)`` without one.

    An unreadable newest checkpoint (a corrupt file) falls back to the older kept one, saying so;
    the unreadable one is deleted only once an older one has been read (it will be written
    again). Raises ``CheckpointError`` (nothing changed) when none can be read.
    """
    state = init()
    steps = checkpointer.all_steps()
    failures = []
    for step in reversed(steps):
        try:
            restored, _ = checkpointer.restore(step, like=sharded_like(state))
        except CheckpointError as e:
            failures.append(e)
            continue
        for (bad, error) in zip(reversed(steps), failures):
            print(f"{phase}: {error}; falling back to checkpoint step {step}", file=sys.stderr)
            checkpointer.delete(bad)
        return jax.tree.map(_like_init, restored, state), step
    if failures:
        if len(failures) == 1:
            raise failures[0]
        raise CheckpointError(f"no readable checkpoint of phase {phase!r}: "
                              + "; ".join(str(e) for e in failures))
    return state, 0


def _like_init(restored: Any, init: Any) -> Any:
    """A restored leaf as ``jit`` sees the fresh ``init`` leaf: uncommitted where that is (a
    restored array is committed to its device; single-device leaves only, a sharded state keeps
    its shardings) and weak-typed where that is (orbax restores strong types). ``jit`` compiles
    a program per committedness and per weak type, so otherwise a resumed run compiles its
    training chunk again (and misses the persistent cache)."""
    if not (isinstance(init, jax.Array) and isinstance(restored, jax.Array)):
        return restored
    if (not init.committed and restored.committed and restored.is_fully_addressable
            and len(restored.sharding.device_set) == 1):  # via the host: a new, uncommitted array
        if jax.dtypes.issubdtype(restored.dtype, jax.dtypes.prng_key):
            data = np.asarray(jax.random.key_data(restored))
            restored = jax.random.wrap_key_data(data, impl=jax.random.key_impl(restored))
        else:
            restored = jax.numpy.asarray(np.asarray(restored))
    if (jax.typeof(init).weak_type and not jax.typeof(restored).weak_type
            and init.shape == restored.shape and init.dtype == restored.dtype):
        restored = init.at[...].set(restored)  # the restored values, init's weak type
    return restored


def _run_chunks(run_dir, phase, state, done, chunk, num_updates, updates_per_chunk,
                steps_per_update, show, checkpoint_every, stop_after_updates, checkpointer,
                stop, on_first_chunk, progress_fn=None):
    """The chunk loop of ``train_phase``; returns ``(state, done)`` once ``num_updates`` are
    done, or raises ``Interrupted`` / ``NonFiniteError``."""
    primary = jax.process_index() == 0  # the only process that writes files and progress
    progress = Progress(num_updates * steps_per_update, label=phase,
                        initial_steps=done * steps_per_update,
                        stream=None if primary else io.StringIO())
    chunks_since_save = 0
    with MetricsLog(run_dir / METRICS_FILE) if primary else _NoLog() as log:
        while done < num_updates:
            n = min(updates_per_chunk, num_updates - done)
            state, metrics = chunk(state, n)
            metrics = jax.device_get(metrics)
            bad = _first_nonfinite(metrics)
            if bad is not None:
                index, code = bad
                for i in range(index):  # the good updates before it are still logged
                    log.log((done + i + 1) * steps_per_update, _seed_mean(metrics, i),
                            phase=phase, update=done + i + 1)
                progress.close()
                raise NonFiniteError(phase, done + index + 1, code, run_dir)
            for i in range(n):
                line = _seed_mean(metrics, i)
                log.log((done + i + 1) * steps_per_update, line, phase=phase,
                        update=done + i + 1)
            if on_first_chunk is not None:
                on_first_chunk()  # compiled and ran once: from here a signal stops gracefully
                on_first_chunk = None
            done += n
            chunks_since_save += 1
            progress.update(done * steps_per_update, {k: line[k] for k in show if k in line})
            if progress_fn is not None:
                progress_fn(done * steps_per_update, dict(line, phase=phase, update=done))
            interrupted = stop.requested or (
                stop_after_updates is not None and done >= stop_after_updates)
            if chunks_since_save >= checkpoint_every or done >= num_updates or interrupted:
                checkpointer.save(done, state, {"phase": phase, "update": done})
                chunks_since_save = 0
            if interrupted and done < num_updates:
                checkpointer.wait()
                progress.close()
                raise Interrupted(run_dir, phase, done)
    progress.close()
    return state, done


class _NoLog(contextlib.nullcontext):
    """``MetricsLog``'s place on processes other than 0: logs nothing."""

    def __enter__(self) -> "_NoLog":
        return self

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass


def phase_metrics(run_dir: Path, phase: str) -> list:
    """The ``metrics.jsonl`` lines of one phase, in order."""
    return [line for line in read_metrics(run_dir / METRICS_FILE) if line.get("phase") == phase]
