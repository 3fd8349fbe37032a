"""TensorBoard event files beside ``metrics.jsonl``: ``tensorboard --logdir runs/``.

``MetricsLog`` mirrors every line it writes into an event file in the same folder, one scalar
per metric, tagged ``<phase>/<metric>`` (``dr/episode_return``) at the line's ``step`` (env
steps); a per-seed list ``<metric>_per_seed`` becomes ``<phase>/<metric>_per_seed/<i>``.
``metrics.jsonl`` stays the record the run reads back; the event files are for viewing.

Switched off by the environment variable ``METARL_JAX_TENSORBOARD=0`` (or ``MetricsLog(path,
tensorboard=False)``); when ``tensorboardX`` cannot be imported, a warning says so once and only
``metrics.jsonl`` is written. Events are written synchronously through tensorboardX's
``EventsWriter`` (no writer thread or queue, so signals and SIGKILL behave as for
``metrics.jsonl``) and flushed after every line. Each log opens its own file
(``events.out.tfevents.<time>.<host>.<pid>.<n>``); a resumed run opens another one, and the
lines it logs again after its checkpoint carry the same steps and values as before.
"""

from __future__ import annotations

import itertools
import os
import time
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional

ENV_VAR = "METARL_JAX_TENSORBOARD"
_OFF = ("0", "false", "no", "off")
_files = itertools.count()
_warned = []  # the missing-tensorboardX warning is given once per process


def enabled(flag: Optional[bool] = None) -> bool:
    """``flag`` if given, else whether ``METARL_JAX_TENSORBOARD`` leaves event files on."""
    if flag is not None:
        return bool(flag)
    return os.environ.get(ENV_VAR, "1").strip().lower() not in _OFF


class EventLog:
    """Scalars into one new TensorBoard event file in ``logdir`` (created on the first line)."""

    def __init__(self, logdir: str | os.PathLike):
        self.logdir = Path(logdir)
        self._writer = None
        self.path: Optional[Path] = None

    def log(self, step: int, metrics: Mapping[str, Any], prefix: str = "") -> None:
        """Write ``metrics`` (name -> finite number, or a list of them) as one event at
        ``step``; None (a non-finite value in ``metrics.jsonl``) and other types are skipped."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.proto.summary_pb2 import Summary

        values = []
        for name, value in metrics.items():
            tag = f"{prefix}/{name}" if prefix else name
            if isinstance(value, (list, tuple)):
                values += [Summary.Value(tag=f"{tag}/{i}", simple_value=float(v))
                           for i, v in enumerate(value) if _is_number(v)]
            elif _is_number(value):
                values.append(Summary.Value(tag=tag, simple_value=float(value)))
        if not values:
            return
        writer = self._open()
        writer.write_event(Event(wall_time=time.time(), step=int(step),
                                 summary=Summary(value=values)))
        writer.flush()

    def _open(self):
        if self._writer is None:
            from tensorboardX.event_file_writer import EventsWriter

            self.logdir.mkdir(parents=True, exist_ok=True)
            suffix = f".{os.getpid()}.{next(_files)}"
            self._writer = EventsWriter(str(self.logdir / "events"), suffix)
            self.path = next(self.logdir.glob(f"events.out.tfevents.*{suffix}"))
        return self._writer

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def open_event_log(logdir: str | os.PathLike, flag: Optional[bool] = None) -> Optional[EventLog]:
    """An ``EventLog`` for ``logdir``, or None when switched off or tensorboardX is missing."""
    if not enabled(flag):
        return None
    try:
        import tensorboardX.event_file_writer  # noqa: F401
    except ImportError as e:
        if not _warned:
            _warned.append(e)
            warnings.warn(f"no TensorBoard event files ({e}); metrics.jsonl is still written. "
                          f"pip install tensorboardX, or set {ENV_VAR}=0 to silence this.",
                          stacklevel=3)
        return None
    return EventLog(logdir)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
