"""The experiment contract (DESIGN.md) shared by every ``python -m experiments.<name>``.

    def main(args: RunArgs) -> dict:
        run_dir, config, seed = start_run(NAME, args)     # new folder, or the resumed one
        ...                                               # build, train (train_phase), evaluate
        return finish(run_dir, {"results": ...}, table)   # summary.json + printed table

    if __name__ == "__main__":
        sys.exit(cli(NAME, main, Config, PRESETS, __doc__))

``start_run`` writes ``config.json`` (name, preset, seed and the resolved config) for a new run;
with ``--resume DIR`` it reads them back, so a resumed run continues with exactly the config it
started with (command-line overrides are refused rather than silently mixed in).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable, Mapping, Tuple

from metarl_jax.core.nonfinite import NonFiniteError
from metarl_jax.io.checkpoint import CheckpointError
from metarl_jax.io.config import RunArgs, UsageError, config_from_dict, config_to_dict, run_cli
from metarl_jax.io.run_dir import (
    CONFIG_FILE, ResumeError, create_run_dir, open_for_resume, read_json, write_json)
from metarl_jax.io.training_loop import Interrupted

SUMMARY_FILE = "summary.json"


class AlreadyFinished(Exception):
    """``--resume`` of a run that has already written its summary."""

    def __init__(self, run_dir: Path):
        super().__init__(f"run {run_dir} already finished; its results are in "
                         f"{run_dir / SUMMARY_FILE}. Nothing to resume.")
        self.run_dir = run_dir


def start_run(name: str, args: RunArgs) -> Tuple[Path, Any, int]:
    """Create (or reopen, with ``--resume``) the run folder. Returns ``(run_dir, config, seed)``."""
    if args.resume is not None:
        run_dir = Path(args.resume)
        try:
            open_for_resume(run_dir)
        except ResumeError:
            # A run killed before its first checkpoint has nothing to restore: if it is one of
            # ours (config.json present), start it over in place rather than strand the folder.
            if not (run_dir / CONFIG_FILE).is_file():
                raise
            print(f"{run_dir} has no checkpoint yet: starting it from the beginning",
                  file=sys.stderr)
        if (run_dir / SUMMARY_FILE).exists():
            raise AlreadyFinished(run_dir)
        saved = read_json(run_dir / CONFIG_FILE)
        if saved.get("name") != name:
            raise ResumeError(f"--resume {run_dir}: that run is a {saved.get('name')!r} run, "
                              f"not {name!r}")
        try:
            config = config_from_dict(type(args.config), saved["config"])
        except (KeyError, TypeError, ValueError) as e:
            raise ResumeError(f"--resume {run_dir}: {CONFIG_FILE} is unreadable ({e})") from None
        print(f"resuming {run_dir}", file=sys.stderr)
        return run_dir, config, int(saved["seed"])
    run_dir = create_run_dir(name, args.out)
    write_json(run_dir / CONFIG_FILE, {"name": name, "preset": args.preset, "seed": args.seed,
                                       "config": config_to_dict(args.config)})
    print(f"run folder: {run_dir}", file=sys.stderr)
    return run_dir, args.config, args.seed


def finish(run_dir: Path, summary: Mapping[str, Any], table: str = "") -> dict:
    """Write ``summary.json`` (atomically; last, so its presence means the run finished) and
    print the results table."""
    summary = dict(summary, run_dir=str(run_dir))
    write_json(run_dir / SUMMARY_FILE, summary)
    if table:
        print(table)
    print(f"summary: {run_dir / SUMMARY_FILE}")
    return summary


def cli(name: str, main: Callable[[RunArgs], Any], config_cls: type,
        presets: Mapping[str, Any], description: str = "", argv=None) -> int:
    """Entry point: parse, run, and map the expected ways of stopping to exit codes.

    Exit status 0 on success (or a resume of a finished run, which says so), 2 on a usage error
    (message on stderr, no traceback), 1 on an unreadable checkpoint (message, nothing
    overwritten), 3 when training hit a NaN/inf (which quantity, which update), 130 when interrupted by SIGINT/SIGTERM after saving a
    checkpoint (the message says how to resume).
    """

    def guarded(args: RunArgs):
        if args.resume is not None and _has_overrides(argv):
            raise UsageError("--resume continues a run with its saved config; drop the "
                             "field=value overrides (and --preset/--seed).")
        try:
            return main(args)
        except AlreadyFinished as e:
            print(str(e), file=sys.stderr)
            return None

    try:
        run_cli(guarded, config_cls, presets, argv, description)
    except CheckpointError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1
    except NonFiniteError as e:
        print(f"\n{name}: error: {e} ({e.run_dir}). Lower the learning rate or check the "
              f"rewards, then start a new run.", file=sys.stderr)
        return 3
    except Interrupted as e:
        print(f"\n{name}: {e}. Continue with: python -m experiments.{name} --resume {e.run_dir}",
              file=sys.stderr)
        return 130
    return 0


def _has_overrides(argv) -> bool:
    argv = sys.argv[1:] if argv is None else list(argv)
    skip_next, extra = False, []
    for item in argv:
        if skip_next:
            skip_next = False
            continue
        if item == "--resume":
            skip_next = True
            continue
        if item.startswith("--resume="):
            continue
        extra.append(item)
    return bool(extra)
