"""Start and finish of every ``python -m experiments.<name>`` (README, "Experiment contract").

    def main(args: RunArgs) -> dict:
        run_dir, config, seed = start_run(NAME, args)     # new folder, or the resumed one
        ...                                               # build, train (train_phase), evaluate
        return finish(run_dir, {"results": ...}, table)   # summary.json + printed table

    if __name__ == "__main__":
        sys.exit(cli(NAME, main, Config, PRESETS, __doc__))   # metarl_jax.io.cli

``start_run`` writes ``config.json`` (name, preset, seed and the resolved config) for a new run;
with ``--resume DIR`` it reads them back, so a resumed run continues with exactly the config it
started with (command-line overrides are refused rather than silently mixed in).

Both files record where the numbers came from (``provenance.run_environment``: package
versions, git commit, CPU and accelerators): ``config.json`` at the start, ``summary.json`` at
the end, with ``wall_time_s`` (this process, from ``start_run`` to ``finish``; a resumed run
counts from its resume). ``finish`` of a ``quick``-preset run says that its table is a smoke
test and what to run for meaningful numbers.

``start_run`` also turns on JAX's persistent compilation cache (``enable_compile_cache``), so a
second run of an experiment reads its compiled programs from disk instead of compiling them
again: ``$METARL_JAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/metarl_jax/jax`` (default
``~/.cache/metarl_jax/jax``). ``METARL_JAX_COMPILE_CACHE=0`` turns it off; a cache folder set
before (``jax.config``'s ``jax_compilation_cache_dir``, as the tests do) is kept. Cached
programs are the same compiled code, so results do not change.

Several processes (``--coordinator``/``--num-processes``/``--process-id``, see
``metarl_jax.io.cli``): process 0 creates (or reopens), locks and writes the run folder --
``config.json``, ``summary.json``, the printed table; the other processes only read it (their
config comes from the command line, or from ``config.json`` on ``--resume``) and write nothing
there but their part of each checkpoint.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

import jax

from metarl_jax.io.cli import RunArgs
from metarl_jax.io.config import config_from_dict, config_to_dict
from metarl_jax.io.provenance import run_environment
from metarl_jax.io.run_dir import (
    CONFIG_FILE,
    SUMMARY_FILE,
    AlreadyFinished,
    DamagedRunError,
    ResumeError,
    create_run_dir,
    jsonable_listing_nonfinite,
    lock_run_dir,
    open_for_resume,
    read_json,
    write_json,
)
from metarl_jax.io.stop_signals import note_run_dir

_START: dict = {}  # "monotonic": when this process's start_run was called (for wall_time_s)


CACHE_DIR_VAR = "METARL_JAX_CACHE_DIR"  # where compiled programs are kept
CACHE_SWITCH_VAR = "METARL_JAX_COMPILE_CACHE"  # "0" / "off" / "false": no persistent cache
# Programs that compile faster than this are not worth a disk entry (JAX's default is 1 s, which
# would leave most evaluation and small training programs of the quick presets uncached).
MIN_COMPILE_SECONDS = 0.1


def compile_cache_dir(environ: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """The persistent compilation cache folder the environment asks for, or None when
    ``METARL_JAX_COMPILE_CACHE`` turns it off (``0``, ``off``, ``false``, ``no``)."""
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_SWITCH_VAR, "").strip().lower() in ("0", "off", "false", "no"):
        return None
    if environ.get(CACHE_DIR_VAR):
        return Path(environ[CACHE_DIR_VAR]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "metarl_jax" / "jax"


def enable_compile_cache(environ: Optional[Mapping[str, str]] = None) -> Optional[Path]:
    """Point JAX's persistent compilation cache at ``compile_cache_dir(environ)`` (creating the
    folder) unless a cache folder is already configured, which is kept. Returns the folder in use,
    or None when the cache is off. Call before the first compile."""
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    path = compile_cache_dir(environ)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only home must not stop an experiment: run uncached
        print(f"compilation cache off: cannot create {path} ({e})", file=sys.stderr)
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def start_run(name: str, args: RunArgs) -> Tuple[Path, Any, int]:
    """Create (or reopen, with ``--resume``) the run folder and hold it (``lock_run_dir``: one
    writer per run folder). Returns ``(run_dir, config, seed)``.

    Raises ``RunDirBusy`` when another process is writing the folder and ``DamagedRunError``
    when its ``config.json`` cannot be read back; either way nothing in the folder changes.
    Turns on the persistent compilation cache (``enable_compile_cache``)."""
    _START["monotonic"] = time.monotonic()
    enable_compile_cache()
    if jax.process_index() != 0:  # process 0 owns the folder (module doc)
        return _follow_run(name, args)
    if args.resume is not None:
        run_dir = Path(args.resume)
        try:
            open_for_resume(run_dir)
            fresh = False
        except ResumeError:
            # A run killed before its first checkpoint has nothing to restore: if it is one of
            # ours (config.json present), start it over in place rather than strand the folder.
            if not (run_dir / CONFIG_FILE).is_file():
                raise
            fresh = True
        lock_run_dir(run_dir)
        note_run_dir(run_dir)
        if (run_dir / SUMMARY_FILE).exists():
            raise AlreadyFinished(run_dir)
        config, seed = _saved_config(run_dir, name, type(args.config))
        print(f"{run_dir} has no checkpoint yet: starting it from the beginning" if fresh
              else f"resuming {run_dir}", file=sys.stderr)
        return run_dir, config, seed
    run_dir = create_run_dir(name, args.out)
    note_run_dir(run_dir)
    write_json(run_dir / CONFIG_FILE, {"name": name, "preset": args.preset, "seed": args.seed,
                                       "config": config_to_dict(args.config),
                                       "started_at": _now(), "environment": run_environment()})
    print(f"run folder: {run_dir}", file=sys.stderr)
    return run_dir, args.config, args.seed


def _follow_run(name: str, args: RunArgs) -> Tuple[Path, Any, int]:
    """``start_run`` of a process other than 0: the folder process 0 writes, nothing written or
    locked here."""
    if args.resume is not None:
        run_dir = Path(args.resume)
        if (run_dir / SUMMARY_FILE).exists():
            raise AlreadyFinished(run_dir)
        config, seed = _saved_config(run_dir, name, type(args.config))
        return run_dir, config, seed
    if args.out is None:
        raise ValueError("a process other than 0 needs the run folder named (--out DIR)")
    return Path(args.out), args.config, args.seed


def _saved_config(run_dir: Path, name: str, config_cls: type) -> Tuple[Any, int]:
    """``(config, seed)`` read back from a run's ``config.json``."""
    path = run_dir / CONFIG_FILE
    try:
        saved = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DamagedRunError(f"--resume {run_dir}: {path} is not valid JSON ({e}); the run "
                              "cannot be continued") from None
    if not isinstance(saved, dict):
        raise DamagedRunError(f"--resume {run_dir}: {path} holds a JSON "
                              f"{type(saved).__name__}, not a run's config")
    if saved.get("name") != name:
        raise ResumeError(f"--resume {run_dir}: that run is a {saved.get('name')!r} run, "
                          f"not {name!r}")
    try:
        return config_from_dict(config_cls, saved["config"]), int(saved["seed"])
    except (KeyError, TypeError, ValueError) as e:
        raise DamagedRunError(f"--resume {run_dir}: {path} is unreadable "
                              f"({type(e).__name__}: {e})") from None


def finish(run_dir: Path, summary: Mapping[str, Any], table: str = "") -> dict:
    """Write ``summary.json`` (atomically; last, so its presence means the run finished) and
    print the results table (with a note when it comes from the ``quick`` preset). On processes
    other than 0, only returns the summary (process 0 writes and prints it).

    A NaN or infinite result (e.g. an adaptation that diverged) does not lose the run: it is
    written as ``null``, its path listed under the summary's ``nonfinite`` key, and a warning
    naming the count and the first path goes to stderr."""
    started = _START.pop("monotonic", None)
    summary = dict(summary, run_dir=str(run_dir), finished_at=_now(),
                   wall_time_s=None if started is None else round(time.monotonic() - started, 1),
                   environment=run_environment())
    if jax.process_index() != 0:
        return summary
    jsonable, nonfinite = jsonable_listing_nonfinite(
        summary, "result(s)", " and listed under summary.json's 'nonfinite'")
    if nonfinite:
        summary["nonfinite"] = nonfinite
    write_json(run_dir / SUMMARY_FILE, jsonable)
    if table:
        print(table)
        note = _quick_preset_note(run_dir)
        if note:
            print(note)
    print(f"summary: {run_dir / SUMMARY_FILE}")
    return summary


def _quick_preset_note(run_dir: Path) -> str:
    """For a ``quick``-preset run: the table is a smoke test, and what to run instead."""
    try:
        saved = read_json(run_dir / CONFIG_FILE)
        name, preset = saved["name"], saved["preset"]
    except Exception:  # a note is not worth failing a finished run over
        return ""
    if preset != "quick":
        return ""
    return (f"quick preset: a smoke test (tiny budget, barely trained policies), not results; "
            f"for meaningful numbers run: python -m experiments.{name} --preset cpu "
            f"(the README's table of experiments links its numbers)")
