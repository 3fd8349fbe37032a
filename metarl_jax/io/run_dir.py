"""Run folders: where one experiment run writes everything it produces.

Layout (README, "Experiment contract"; the names are the constants below)::

    runs/<name>/<YYYYmmdd-HHMMSS>/
        config.json      CONFIG_FILE: the resolved config (written once, with write_json)
        metrics.jsonl    METRICS_FILE: one line per logged iteration (metrics.MetricsLog)
        summary.json     SUMMARY_FILE: the final numbers the experiment exists to produce
        *.png            plots
        checkpoints/     CHECKPOINT_DIR: orbax checkpoints (checkpoint.Checkpointer)
        .lock            LOCK_FILE: held (flock) by the process writing the run; its pid inside

A run folder is never overwritten: ``create_run_dir`` refuses a non-empty folder, and the only
way back into an existing one is ``open_for_resume``. A run folder has one writer at a time:
``create_run_dir`` and ``lock_run_dir`` take an exclusive lock that the OS releases when the
process ends, however it ends (SIGKILL included), so a lock is never stale. ``write_json``
writes atomically (temporary file in the same folder, then ``os.replace``), so a killed process
leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from metarl_jax.io.config import UsageError, config_to_dict

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
SUMMARY_FILE = "summary.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"


class RunDirError(UsageError):
    """A run folder cannot be created (it already holds a run, or is a file)."""


class ResumeError(UsageError):
    """``--resume DIR`` does not point at a run that can be continued."""


class RunDirBusy(UsageError):
    """Another live process is writing the run folder."""


class DamagedRunError(RuntimeError):
    """A run folder's own files (``config.json``, ``metrics.jsonl``) cannot be read back."""


class AlreadyFinished(Exception):
    """``--resume`` of a run that has already written its summary."""

    def __init__(self, run_dir: Path):
        super().__init__(f"run {run_dir} already finished; its results are in "
                         f"{run_dir / SUMMARY_FILE}. Nothing to resume.")
        self.run_dir = run_dir


def create_run_dir(name: str, out: str | os.PathLike | None = None, *,
                   root: str | os.PathLike = "runs") -> Path:
    """Create the folder a new run writes into and return it.

    Args:
        name: the experiment's name (``runs/<name>/...``).
        out: the folder to use (``--out DIR``); None for ``<root>/<name>/<YYYYmmdd-HHMMSS>``
            (with ``-1``, ``-2``, ... appended if two runs start in the same second).
        root: parent of the default folders.

    The folder is locked for this process (``lock_run_dir``).

    Raises:
        RunDirError: ``out`` exists and is not an empty folder. An existing run is never
            overwritten; continue it with ``--resume`` or choose another ``--out``.
        RunDirBusy: another process is starting a run in ``out`` at the same moment.
    """
    if out is not None:
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise RunDirError(f"--out {path}: a file with that name exists; "
                              "choose another folder.")
        _refuse_nonempty(path)
        path.mkdir(parents=True, exist_ok=True)
        lock_run_dir(path)
        _refuse_nonempty(path)  # another process may have filled it before we held the lock
        return path
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(root) / name
    base.mkdir(parents=True, exist_ok=True)
    for i in range(1000):
        path = base / (stamp if i == 0 else f"{stamp}-{i}")
        try:
            path.mkdir()  # exist_ok=False: two processes never share a folder
        except FileExistsError:
            continue
        lock_run_dir(path)
        return path
    raise RunDirError(f"could not find a free run folder under {base} for {stamp}")


def _refuse_nonempty(path: Path) -> None:
    if not path.is_dir():
        return
    content = sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)
    if content:
        shown = ", ".join(content[:5]) + (", ..." if len(content) > 5 else "")
        raise RunDirError(
            f"refusing to write into {path}: it is not empty ({shown}). Runs are never "
            f"overwritten; choose a new --out, or continue that run with --resume {path}."
        )


_held: dict[Path, int] = {}  # run folder (resolved) -> descriptor of its locked LOCK_FILE


def lock_run_dir(path: str | os.PathLike) -> None:
    """Make this process the only writer of the run folder ``path`` until ``unlock_run_dirs``
    or the end of the process (idempotent within a process).

    An exclusive ``flock`` on ``<run>/.lock``, which holds the owner's pid for the message below.

    Raises:
        RunDirBusy: another live process holds the folder (a ``--resume`` of a run that is still
            going, or two processes given the same ``--out``); nothing in the folder is touched.
    """
    key = Path(path).resolve()
    if key in _held:
        return
    fd = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        who = f"process {owner}" if owner.isdigit() else "another process"
        raise RunDirBusy(f"{path} is in use by {who}, which is still writing it; wait for it to "
                         f"finish (or stop it) before resuming. Nothing was changed.") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = fd


def unlock_run_dirs() -> None:
    """Release every run folder this process holds (``cli`` does it when the run ends)."""
    while _held:
        _, fd = _held.popitem()
        os.close(fd)  # closing the descriptor releases the flock


def open_for_resume(path: str | os.PathLike) -> Path:
    """Check that ``path`` holds a run that can be continued and return it.

    A resumable run has ``config.json`` and at least one complete checkpoint in
    ``checkpoints/`` or in a sub-folder of it (e.g. one ``Checkpointer`` per training phase,
    ``checkpoints/<phase>/<step>``). Orbax names a finished step folder by its number; an
    interrupted save leaves only a ``<step>.orbax-checkpoint-tmp`` folder, which does not count.

    Raises:
        ResumeError: the folder is missing, is not a run folder, or has no complete checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise ResumeError(f"--resume {path}: no such folder.")
    if not path.is_dir():
        raise ResumeError(f"--resume {path}: this is a file, not a run folder.")
    if not (path / CONFIG_FILE).is_file():
        raise ResumeError(
            f"--resume {path}: not a run folder (no {CONFIG_FILE}). Point --resume at the "
            f"folder a run printed at start-up, e.g. runs/<name>/<timestamp>."
        )
    ckpt = path / CHECKPOINT_DIR
    if not _has_complete_step(ckpt):
        raise ResumeError(
            f"--resume {path}: the run has no complete checkpoint in {ckpt} (it stopped before "
            f"its first checkpoint was written); start a new run instead."
        )
    return path


def _has_complete_step(directory: Path) -> bool:
    """Whether a folder named by a step number exists in ``directory`` or below it."""
    if not directory.is_dir():
        return False
    for _, dirs, _ in os.walk(directory):
        if any(d.isdigit() for d in dirs):
            return True
        # Do not descend into orbax's temporary folders of interrupted saves.
        dirs[:] = [d for d in dirs if "orbax-checkpoint-tmp" not in d]
    return False


# ----------------------------------------------------------------------------------------------
# JSON


def jsonable_listing_nonfinite(obj: dict, what: str, where: str = "") -> tuple[dict, list]:
    """``obj`` as JSON-ready data, NaN / inf written as ``null`` and not hidden: their paths are
    listed under the returned dict's ``nonfinite`` key, and a warning ("N ``what`` are NaN or
    infinite, written as null``where`` (first: path)") goes to stderr. Returns ``(jsonable,
    nonfinite paths)``."""
    nonfinite: list = []
    jsonable = to_jsonable(obj, nonfinite=nonfinite)
    if nonfinite:
        jsonable["nonfinite"] = nonfinite
        print(f"warning: {len(nonfinite)} {what} are NaN or infinite, written as null{where} "
              f"(first: {nonfinite[0]})", file=sys.stderr)
    return jsonable, nonfinite


def to_jsonable(obj: Any, where: str = "$", nonfinite: list | None = None) -> Any:
    """Convert ``obj`` to plain JSON types: dicts, lists, str, int, float, bool, None.

    numpy / jax scalars become Python numbers, arrays become nested lists, tuples become lists,
    dataclasses become dicts, paths become strings. With a list ``nonfinite``, a NaN or
    infinite float becomes ``None`` and its path is appended to the list instead of raising.

    Raises:
        ValueError: a float is NaN or infinite (JSON has neither) and ``nonfinite`` is None; the
            message names the key, e.g. ``$['eval']['return'][3]``.
        TypeError: a value has no JSON form.
    """
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if not math.isfinite(obj):
            if nonfinite is None:
                raise ValueError(f"{where} is {obj}; JSON cannot hold NaN or infinity.")
            nonfinite.append(where)
            return None
        return float(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where} has a key {k!r} of type {type(k).__name__}; "
                                "JSON keys are strings.")
            out[str(k)] = to_jsonable(v, f"{where}[{k!r}]", nonfinite)
        return out
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]", nonfinite) for i, v in enumerate(obj)]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(config_to_dict(obj), where, nonfinite)
    if isinstance(obj, np.generic) or hasattr(obj, "__array__"):
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{where} is an array of dtype {arr.dtype}, which has no JSON form.")
        if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            if nonfinite is None:
                raise ValueError(f"{where} holds NaN or infinity; JSON cannot hold them.")
            return to_jsonable(arr.tolist(), where, nonfinite)
        return arr.tolist() if arr.ndim else arr.item()
    raise TypeError(f"{where} is a {type(obj).__name__}, which has no JSON form.")


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, fsync, ``os.replace``).

    Raises:
        ValueError: ``obj`` holds NaN/infinity (the message names the key); nothing is written.
        TypeError: ``obj`` holds a value with no JSON form.
    """
    path = Path(path)
    try:
        text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)
    except (ValueError, TypeError) as e:
        raise type(e)(f"cannot write {path}: {e}") from None
    atomic_write_text(path, text + "\n")
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` by ``text`` so that a reader (or a crash) never sees a partial file.

    The file gets the mode a plain ``open(path, "w")`` would give (0644 under the usual umask
    022), not the 0600 of the temporary file it is written through."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``os.umask`` can only
    be read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file written by ``write_json``."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)
