"""The command line of every ``python -m experiments.<name>``: parse, run, map stops to exits.

An experiment ends with::

    if __name__ == "__main__":
        from metarl_jax.io.cli import cli

        sys.exit(cli(NAME, main, Config, PRESETS, __doc__))

and is run as (the experiments are the modules in ``experiments/``)::

    python -m experiments.dr_pendulum --preset quick --seed 3 ppo.learning_rate=1e-3

``--preset`` picks one of the experiment's configs, ``field=value`` overrides single fields by
dotted name (parsed by ``metarl_jax.io.config.apply_overrides``), ``--out`` / ``--resume`` name
the run folder. Every mistake the user can make on the command line raises a ``UsageError`` with
a message meant to be read by a person; ``cli`` prints it and exits with status 2 (no traceback).

Several processes (hosts): ``--coordinator HOST:PORT --num-processes P --process-id I`` (or the
environment variables ``METARL_JAX_COORDINATOR``, ``METARL_JAX_NUM_PROCESSES``,
``METARL_JAX_PROCESS_ID``; the flags win) start JAX's distributed runtime before the experiment
runs (``metarl_jax.scale.distributed``). Every process is given the same command line except
``--process-id``, and ``--out`` (or ``--resume``) names a folder all of them see.

Several devices: ``--devices N`` (or ``all``) asks an experiment that supports it to train with
its env batch (or its seeds) split over ``N`` local devices (``metarl_jax.scale.run_mesh``); a
multi-process run always trains over every device of every process. Without it, one device.
An experiment supports it when its ``main`` is decorated ``@supports_devices`` (it trains
through ``run_mesh``); ``cli`` refuses ``--devices`` asking any other experiment for more than
one device (``UsageError``, exit status 2) rather than let it train on one device unnoticed.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

from metarl_jax.core.nonfinite import NonFiniteError
from metarl_jax.io.checkpoint import CheckpointError
from metarl_jax.io.config import (
    ConfigError,
    UsageError,
    apply_overrides,
    field_help,
    field_names,
    field_notes,
)
from metarl_jax.io.run_dir import AlreadyFinished, DamagedRunError, unlock_run_dirs
from metarl_jax.io.stall_watchdog import stall_seconds, stall_watchdog
from metarl_jax.io.stop_signals import EXIT_CODE, stop_signals
from metarl_jax.io.stop_signals import current as current_stop_signals
from metarl_jax.io.training_loop import Interrupted

C = TypeVar("C")

_WIDTH = 100  # of the config-field lines of --help

_OPTIONS = ("--preset", "--seed", "--out", "--resume", "--devices", "--coordinator",
            "--num-processes", "--process-id", "--help")


@dataclasses.dataclass(frozen=True)
class RunArgs:
    """What an experiment's command line asked for.

    Attributes:
        config: the preset with every override applied (an instance of the experiment's config).
        preset: the preset's name.
        seed: the base seed for ``jax.random.PRNGKey``.
        out: run folder to create, or None for the default ``runs/<name>/<timestamp>``.
        resume: run folder to continue, or None for a fresh run. A resumed run should
            rebuild its config from the folder's ``config.json`` (``config_from_dict``): the
            ``config`` here is only what this command line would have started.
        overrides: the ``field=value`` overrides as given, in order (already in ``config``).
        given: the options given explicitly, by name (``{"preset", "seed", "out", "resume"}``
            at most); the others hold their defaults.
        distributed: the multi-process job this process belongs to
            (``metarl_jax.scale.distributed.DistributedSpec``, from the flags or the
            environment), or None for a single-process run.
        devices: ``--devices``: how many local devices to train on (an int >= 1), ``"all"``,
            or None (not given: one device, or every device of a multi-process job).
            Experiments that train through a mesh read it with
            ``metarl_jax.scale.run_mesh(args.devices)``. Not part of the config: a run resumed
            with another count continues on that many devices (the same numbers up to float
            reduction order; the same count reproduces the run bit for bit).
    """

    config: Any
    preset: str
    seed: int
    out: Path | None
    resume: Path | None
    overrides: tuple[str, ...] = ()
    given: frozenset[str] = frozenset()
    distributed: Any = None
    devices: int | str | None = None

    @property
    def changes_config(self) -> bool:
        """Whether the command line chose a preset, a seed or a field value."""
        return bool(self.overrides) or bool(self.given & {"preset", "seed"})


class _Parser(argparse.ArgumentParser):
    """argparse that raises ConfigError instead of printing usage and exiting."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(message)


def _unknown_option(opt: str, cls: type) -> ConfigError:
    flag = opt.split("=", 1)[0]
    bare = flag.lstrip("-").replace("-", "_")
    fields = field_names(cls)
    if bare in fields:
        return ConfigError(f"unknown option '{flag}'. Config fields are set as '{bare}=VALUE'.")
    close = difflib.get_close_matches(flag, _OPTIONS, n=1, cutoff=0.6)
    if close:
        return ConfigError(f"unknown option '{flag}'. Did you mean '{close[0]}'?")
    close = difflib.get_close_matches(bare, fields, n=1, cutoff=0.6)
    if close:
        return ConfigError(
            f"unknown option '{flag}'. Did you mean the field override '{close[0]}=VALUE'?"
        )
    return ConfigError(f"unknown option '{flag}'. Valid options: {', '.join(_OPTIONS)}.")


def _default_preset(presets: Mapping[str, Any]) -> str:
    return "cpu" if "cpu" in presets else next(iter(presets))


def _default_repr(cfg: Any, dotted: str) -> str:
    value = cfg
    for part in dotted.split("."):
        value = getattr(value, part)
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def fields_help(config_cls: type, presets: Mapping[str, Any], default_preset: str) -> str:
    """The ``--help`` text of the config fields: per field its value in ``default_preset``, what
    each other preset sets instead, and its description (``config.field_help``) on the next line;
    a comment that opens a group of fields in the source (``config.field_notes``) goes above::

        ppo.total_steps = 2560000  (quick: 76800, accel: 100000000)
            env steps, all envs together
    """
    names = field_names(config_cls)
    described, notes = field_help(config_cls), field_notes(config_cls)
    others = [p for p in presets if p != default_preset]
    lines = textwrap.wrap(
        f"config fields (set as name=value), with their values in the {default_preset} preset "
        f"and, in parentheses, those other presets set instead:", _WIDTH)
    for n in names:
        if n in notes:
            lines += textwrap.wrap(notes[n], _WIDTH, initial_indent="  # ",
                                   subsequent_indent="  # ")
        value = _default_repr(presets[default_preset], n)
        diffs = [f"{p}: {v}" for p in others
                 if (v := _default_repr(presets[p], n)) != value]
        text = f"{n} = {value}" + (f"  ({', '.join(diffs)})" if diffs else "")
        lines += textwrap.wrap(text, _WIDTH, initial_indent="  ", subsequent_indent="        ",
                               break_on_hyphens=False)
        if n in described:
            lines += textwrap.wrap(described[n], _WIDTH, initial_indent="      ",
                                   subsequent_indent="      ")
    return "\n".join(lines)


def parse_args(
    config_cls: type[C],
    presets: Mapping[str, C],
    argv: Sequence[str] | None = None,
    description: str = "",
    *,
    default_preset: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> RunArgs:
    """Parse ``[--preset P] [--seed N] [--out DIR] [--resume DIR] [field=value ...]``.

    Args:
        config_cls: the experiment's frozen config dataclass.
        presets: preset name -> config instance (``quick``, ``cpu``, ``accel``).
        argv: arguments without the program name; ``sys.argv[1:]`` when None.
        description: shown by ``--help``, above the config fields (``fields_help``).
        default_preset: preset used without ``--preset``; ``cpu`` if present, else the first.
        environ: where the ``METARL_JAX_COORDINATOR`` etc. variables are read (``os.environ``
            when None).

    Raises:
        ConfigError: unknown option or field, bad preset, or a value that does not parse.
    """
    if not presets:
        raise ValueError("an experiment needs at least one preset")
    for name, cfg in presets.items():
        if not isinstance(cfg, config_cls):
            raise TypeError(f"preset '{name}' is a {type(cfg).__name__}, "
                            f"not a {config_cls.__name__}")
    default_preset = default_preset or _default_preset(presets)
    argv = list(sys.argv[1:] if argv is None else argv)
    epilog = fields_help(config_cls, presets, default_preset)
    parser = _Parser(
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    # Defaults are None so that RunArgs.given can tell an option given from one left out.
    parser.add_argument("--preset", default=None, metavar="|".join(presets),
                        help=f"size of the run (default: {default_preset})")
    parser.add_argument("--seed", default=None, help="base random seed (default: 0)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="run folder (default: runs/<name>/<timestamp>)")
    parser.add_argument("--resume", default=None, metavar="DIR",
                        help="continue the run saved in DIR from its latest checkpoint")
    parser.add_argument("--devices", default=None, metavar="N|all",
                        help="train on N local devices (or all), the env batch or the seeds "
                             "split across them, where the experiment supports it (default: 1; "
                             "a multi-process run uses every device)")
    parser.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                        help="multi-process run: address of process 0 (env "
                             "METARL_JAX_COORDINATOR)")
    parser.add_argument("--num-processes", default=None, metavar="P",
                        help="multi-process run: number of processes (env "
                             "METARL_JAX_NUM_PROCESSES)")
    parser.add_argument("--process-id", default=None, metavar="I",
                        help="multi-process run: this process, 0..P-1 (env "
                             "METARL_JAX_PROCESS_ID)")
    parser.add_argument("overrides", nargs="*", metavar="field=value")
    ns, extras = parser.parse_known_intermixed_args(argv)
    for item in extras:
        if item.startswith("-"):
            raise _unknown_option(item, config_cls)
    overrides = list(ns.overrides) + [e for e in extras if not e.startswith("-")]
    given = frozenset(k for k in ("preset", "seed", "out", "resume")
                      if getattr(ns, k) is not None)
    preset = default_preset if ns.preset is None else ns.preset
    seed_text = "0" if ns.seed is None else ns.seed

    if preset not in presets:
        close = difflib.get_close_matches(preset, list(presets), n=1, cutoff=0.5)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown preset '{preset}'.{hint} Valid presets: {', '.join(presets)}."
        )
    try:
        seed = int(seed_text, 10)
    except ValueError:
        raise ConfigError(f"--seed expects an integer, got '{seed_text}'.") from None
    if seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {seed}.")
    if ns.out is not None and ns.resume is not None:
        raise ConfigError("--out and --resume exclude each other: a resumed run writes into "
                          "its own folder.")
    config = apply_overrides(presets[preset], overrides)
    devices = _devices(ns.devices)
    distributed = _distributed_spec(ns, environ)
    if (distributed is not None and distributed.num_processes > 1 and ns.out is None
            and ns.resume is None):
        raise ConfigError("a multi-process run needs --out DIR (or --resume DIR): a folder "
                          "every process sees, since each would otherwise pick its own.")
    return RunArgs(
        config=config,
        preset=preset,
        seed=seed,
        out=Path(ns.out) if ns.out is not None else None,
        resume=Path(ns.resume) if ns.resume is not None else None,
        overrides=tuple(overrides),
        given=given,
        distributed=distributed,
        devices=devices,
    )


def _devices(text: str | None) -> int | str | None:
    """``--devices``: None, ``"all"`` or an int >= 1; ``ConfigError`` otherwise."""
    if text is None or text == "all":
        return text
    try:
        n = int(text, 10)
    except ValueError:
        raise ConfigError(f"--devices expects a number of devices or 'all', got '{text}'.") \
            from None
    if n < 1:
        raise ConfigError(f"--devices must be >= 1, got {n}.")
    return n


def _distributed_spec(ns: argparse.Namespace, environ: Mapping[str, str] | None) -> Any:
    """The ``DistributedSpec`` of ``--coordinator`` / ``--num-processes`` / ``--process-id``,
    else of the environment variables, else None; ``ConfigError`` on a partial or bad one."""
    from metarl_jax.scale.distributed import make_spec, spec_from_env  # io sits below scale

    try:
        flags = (ns.coordinator, ns.num_processes, ns.process_id)
        if any(v is not None for v in flags):
            return make_spec(*flags, where="--coordinator/--num-processes/--process-id: ")
        return spec_from_env(environ)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def supports_devices(main: Callable[[RunArgs], Any]) -> Callable[[RunArgs], Any]:
    """Mark an experiment's ``main`` as training on ``run_mesh(args.devices)``, so that ``cli``
    lets ``--devices N`` through (``cli`` refuses it for an unmarked ``main``)."""
    main.supports_devices = True
    return main


def check_devices(name: str, main: Callable[[RunArgs], Any], devices: int | str | None) -> None:
    """``UsageError`` when ``--devices`` asks for more than one device and ``main`` is not marked
    ``@supports_devices`` (its learners have no sharded wrapper, so it would train on one)."""
    if devices is None or devices == 1 or getattr(main, "supports_devices", False):
        return
    import jax  # after jax.distributed.initialize, which must come first

    if devices == "all" and jax.local_device_count() == 1:
        return
    raise UsageError(f"{name} trains on one device only: --devices {devices} is not supported "
                     "(its learners have no sharded wrapper in metarl_jax.scale, which has PPO, "
                     "SAC, RL2 and MAMLRL); leave out --devices.")


def cli(name: str, main: Callable[[RunArgs], Any], config_cls: type,
        presets: Mapping[str, Any], description: str = "", argv: Sequence[str] | None = None,
        ) -> int:
    """The entry point of ``python -m experiments.<name>``: parse, ``main(run_args)``, exit code.

    Args:
        name: the experiment's name (``experiments.<name>``), used in messages.
        main: runs the experiment from the parsed ``RunArgs``.
        config_cls, presets, description: as for ``parse_args``.
        argv: arguments without the program name; ``sys.argv[1:]`` when None.

    Returns 0 on success (or a resume of a finished run, which says so), 1 on an unreadable
    checkpoint, ``config.json`` or ``metrics.jsonl`` (message, nothing overwritten), 3 when
    training hit a NaN/inf (which quantity, which update), 75 when the process used no CPU time
    for ``METARL_JAX_STALL_S`` seconds (default 600; 0: off) on JAX's CPU backend -- an XLA:CPU
    hang, ``metarl_jax.io.stall_watchdog``; resume from the last checkpoint --, 130 when stopped
    by SIGINT/SIGTERM
    (``metarl_jax.io.stop_signals``: the message says how to resume; a second signal, or one
    outside the training loop, ends the process at once with status 130). A ``UsageError`` (bad
    flag/field/value, overrides given with ``--resume``, a run folder that would be overwritten
    or that another process is writing, a resume folder that is not a run) raised while parsing
    or inside ``main`` is printed as ``error: <message>`` on stderr and ends the process with
    ``SystemExit(2)``, without traceback. Any other exception propagates. The run folder is
    released (``unlock_run_dirs``) when ``cli`` returns.
    """
    prog = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "experiment"
    with stop_signals(exit_on_abort=True, label=name, command=f"python -m experiments.{name}"):
        try:
            return _run(name, prog, main, config_cls, presets, description, argv)
        except KeyboardInterrupt:  # cannot come from our handlers; from a caller's, say
            print(f"\n{name}: interrupted.", file=sys.stderr)
            return EXIT_CODE
        finally:
            unlock_run_dirs()


def _run(name, prog, main, config_cls, presets, description, argv) -> int:
    try:
        try:
            args = parse_args(config_cls, presets, argv, description)
            if args.resume is not None and args.changes_config:
                raise UsageError("--resume continues a run with its saved config; drop the "
                                 "field=value overrides (and --preset/--seed).")
            if args.distributed is not None:
                from metarl_jax.scale.distributed import initialize

                initialize(args.distributed)  # before the experiment's first computation
            check_devices(name, main, args.devices)
            # Multi-process runs wait on each other (idle CPU by design): no stall watchdog.
            try:
                stall_s = 0.0 if args.distributed is not None else stall_seconds()
            except ValueError as e:
                raise UsageError(str(e)) from None
            signals = current_stop_signals()
            hint = signals.resume_hint if signals is not None else (lambda: "")
            with stall_watchdog(stall_s, label=name, hint=hint):
                main(args)
        except AlreadyFinished as e:
            print(str(e), file=sys.stderr)
        except UsageError as e:
            print(f"{prog}: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    except (CheckpointError, DamagedRunError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 1
    except NonFiniteError as e:
        print(f"\n{name}: error: {e} ({e.run_dir}). Lower the learning rate or check the "
              f"rewards, then start a new run.", file=sys.stderr)
        return 3
    except Interrupted as e:
        print(f"\n{name}: {e}. Continue with: python -m experiments.{name} --resume {e.run_dir}",
              file=sys.stderr)
        return EXIT_CODE
    return 0


__all__ = ["RunArgs", "check_devices", "cli", "fields_help", "parse_args", "supports_devices"]
