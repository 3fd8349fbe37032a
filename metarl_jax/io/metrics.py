"""The metrics log: ``metrics.jsonl``, one JSON object per logged iteration.

Each line is ``{"step": <int>, **extra, **metrics}``, e.g.
``{"step": 40960, "phase": "train", "return": -812.3, "loss": 0.41}``. Lines are appended and
flushed one at a time, so a killed run loses at most the line being written.

On resume, lines logged after the checkpoint being resumed would be logged again; drop them first
with ``truncate_metrics(path, keep=lambda line: ...)``, then reopen the log.

Non-finite metric values (a mean return over zero finished episodes, a diverged loss) are
written as ``null`` and their keys listed in the line's ``"nonfinite"`` field, so the file stays
strict JSON without hiding the fact; pass ``nonfinite="raise"`` to stop instead.

Optionally (``METARL_JAX_WANDB=1``, ``io.wandb_log``) every line also goes to Weights & Biases.
Every line is mirrored into a TensorBoard event file in the same folder (``io.tensorboard``:
tags ``<phase>/<metric>`` at ``step``); ``METARL_JAX_TENSORBOARD=0`` or ``tensorboard=False``
turns that off.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Optional

from metarl_jax.io.run_dir import DamagedRunError, atomic_write_text, to_jsonable
from metarl_jax.io.tensorboard import open_event_log
from metarl_jax.io.wandb_log import open_wandb_log

NONFINITE_KEY = "nonfinite"


class MetricsError(DamagedRunError, ValueError):
    """A line of a metrics log is not a JSON object (the file was damaged)."""


class MetricsLog:
    """Append-only JSONL writer.

    Args:
        path: the ``.jsonl`` file; created if missing, appended to if present. A torn last line
            (the process was killed mid-write) is cut off with a warning before appending.
        nonfinite: ``"null"`` writes NaN/inf as null and lists their keys under ``"nonfinite"``;
            ``"raise"`` raises ValueError naming the key.
        tensorboard: also write a TensorBoard event file beside ``path``; None (default):
            unless the environment variable ``METARL_JAX_TENSORBOARD`` is ``0``.
    """

    def __init__(self, path: str | os.PathLike, *,
                 nonfinite: Literal["null", "raise"] = "null",
                 tensorboard: Optional[bool] = None):
        if nonfinite not in ("null", "raise"):
            raise ValueError(f"nonfinite must be 'null' or 'raise', got {nonfinite!r}")
        self.path = Path(path)
        self._nonfinite = nonfinite
        _cut_torn_tail(self.path)
        self._file = open(self.path, "a", encoding="utf-8")
        self._events = open_event_log(self.path.parent, tensorboard)
        self._wandb = open_wandb_log(self.path.parent)  # opt-in: METARL_JAX_WANDB

    def log(self, step: int, metrics: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        """Append one line ``{"step": step, **extra, **metrics}`` and flush it.

        Args:
            step: environment steps (or iterations) done so far.
            metrics: name -> number; numpy / jax scalars and small arrays are accepted.
            **extra: fields that describe the line rather than measure it (``phase="train"``).

        Returns:
            The dict that was written.
        """
        if self._file.closed:
            raise ValueError(f"{self.path}: log() after close()")
        clash = ({"step", NONFINITE_KEY} | set(extra)) & set(metrics)
        clash |= {"step", NONFINITE_KEY} & set(extra)
        if clash:
            raise ValueError(f"metric names clash with line fields: {sorted(clash)}")
        line: dict[str, Any] = {"step": int(step)}
        line.update(to_jsonable(dict(extra), "extra"))
        bad = []
        for key, value in metrics.items():
            value = _plain(value)
            if isinstance(value, float) and not math.isfinite(value):
                if self._nonfinite == "raise":
                    raise ValueError(f"metric '{key}' at step {step} is {value}.")
                bad.append(key)
                value = None
            line[key] = to_jsonable(value, f"metrics[{key!r}]")
        if bad:
            line[NONFINITE_KEY] = bad
        self._file.write(json.dumps(line, allow_nan=False) + "\n")
        self._file.flush()
        phase = extra.get("phase")
        prefix = phase if isinstance(phase, str) else ""
        for mirror in (self._events, self._wandb):
            if mirror is not None:
                mirror.log(step, {k: line[k] for k in metrics}, prefix=prefix)
        return line

    def close(self) -> None:
        self._file.close()
        for mirror in (self._events, self._wandb):
            if mirror is not None:
                mirror.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _plain(value: Any) -> Any:
    """A 0-d numpy/jax value as a Python number (so non-finite checks see a float)."""
    if hasattr(value, "shape") and value.shape == () and hasattr(value, "item"):
        return value.item()
    return value


def _cut_torn_tail(path: Path) -> None:
    """Remove a final line without newline (left by a process killed mid-write)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        f.seek(-1, os.SEEK_END)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        f.truncate(keep)
    warnings.warn(f"{path}: dropped a torn last line ({len(data) - keep} bytes)", stacklevel=3)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All lines of a metrics log as dicts (a missing file reads as no lines).

    A torn last line (no newline: the writer was killed) is ignored; a malformed line anywhere
    else raises ``MetricsError`` (a ValueError) with its line number.
    """
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    lines.pop()  # "" when the file ends with a newline, else a torn line: skipped
    rows = []
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise MetricsError(f"{path}:{i}: malformed metrics line ({e.msg}); repair or "
                               "remove that line to continue the run") from None
        if not isinstance(row, dict):
            raise MetricsError(f"{path}:{i}: malformed metrics line (a JSON "
                               f"{type(row).__name__}, not an object); repair or remove that "
                               "line to continue the run")
        rows.append(row)
    return rows


def truncate_metrics(path: str | os.PathLike, keep: Callable[[dict[str, Any]], bool]) -> int:
    """Rewrite the log atomically with only the lines for which ``keep(line)`` is True.

    Use on resume, before reopening the log, to drop what was logged after the checkpoint::

        truncate_metrics(run / METRICS_FILE, keep=lambda line: line["step"] <= ckpt_step)

    Returns:
        The number of lines dropped.
    """
    path = Path(path)
    rows = read_metrics(path)
    kept = [r for r in rows if keep(r)]
    if path.exists():
        atomic_write_text(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept))
    return len(rows) - len(kept)
