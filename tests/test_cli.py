"""Tests for metarl_jax.io.cli: options, presets, usage errors and exit statuses."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from metarl_jax.io import ConfigError, RunDirError, cli, parse_args
from tests.example_config import PRESETS, ExpConfig

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_defaults_and_resume_and_optional_none():
    args = parse_args(ExpConfig, PRESETS, ["--resume", "runs/x/1", "eval_every=none"])
    assert args.preset == "cpu" and args.seed == 0 and args.out is None
    assert args.resume == Path("runs/x/1") and args.config.eval_every is None


def test_run_args_carry_the_overrides_and_the_options_given():
    args = parse_args(ExpConfig, PRESETS, ["num_envs=3", "--seed=0", "--resume", "r", "ppo.clip=1"])
    assert args.overrides == ("num_envs=3", "ppo.clip=1")
    assert args.given == {"seed", "resume"} and args.changes_config
    args = parse_args(ExpConfig, PRESETS, ["--resume", "r"])
    assert args.overrides == () and args.given == {"resume"} and not args.changes_config
    assert parse_args(ExpConfig, PRESETS, ["--preset", "cpu"]).changes_config


@pytest.mark.parametrize("argv", [["--resume", "r", "num_envs=3"], ["--resume=r", "--seed", "0"],
                                  ["--preset", "quick", "--resume", "r"]])
def test_resume_refuses_config_changes(argv, capsys):
    def main(args):
        raise AssertionError("main must not run")
    with pytest.raises(SystemExit) as e:
        cli("exp", main, ExpConfig, PRESETS, argv=argv)
    assert e.value.code == 2 and "--resume continues a run" in capsys.readouterr().err


def test_unknown_option_suggests_closest():
    with pytest.raises(ConfigError, match="Did you mean '--seed'"):
        parse_args(ExpConfig, PRESETS, ["--sed", "3"])
    with pytest.raises(ConfigError, match="num_envs=VALUE"):
        parse_args(ExpConfig, PRESETS, ["--num_envs", "3"])


def test_bad_preset_lists_valid_presets():
    with pytest.raises(ConfigError) as e:
        parse_args(ExpConfig, PRESETS, ["--preset", "fast"])
    assert "fast" in str(e.value) and "quick, cpu, accel" in str(e.value)


def test_cli_exits_2_without_traceback(capsys):
    with pytest.raises(SystemExit) as e:
        cli("exp", lambda args: None, ExpConfig, PRESETS, argv=["ppo.lr=1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: unknown config field 'ppo.lr'" in err and "Traceback" not in err

    def main(args):  # usage errors raised by the experiment itself end the same way
        raise RunDirError("refusing to write into x")
    with pytest.raises(SystemExit) as e:
        cli("exp", main, ExpConfig, PRESETS, argv=[])
    assert e.value.code == 2 and "refusing to write into x" in capsys.readouterr().err
    seen = []
    assert cli("exp", lambda args: seen.append(args.config.num_envs), ExpConfig, PRESETS,
               argv=["num_envs=3"]) == 0
    assert seen == [3]


def test_cli_subprocess_exit_status_2():
    code = textwrap.dedent("""
        import dataclasses, sys
        from metarl_jax.io.cli import cli
        @dataclasses.dataclass(frozen=True)
        class C:
            lr: float = 0.1
        sys.exit(cli("c", lambda a: None, C, {"quick": C(), "cpu": C()}))
    """)
    proc = subprocess.run([sys.executable, "-c", code, "--preset", "slow"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown preset 'slow'" in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_preset_differences_and_field_descriptions(capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(ExpConfig, PRESETS, ["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    # the cpu value first, then what the other presets change; unchanged fields list none
    assert "  total_steps = 100000  (quick: 1000, accel: 50000000)" in lines
    assert "  ppo.clip = 0.2" in lines
    # the trailing comment of the field line (tests/example_config.py) is its description
    i = lines.index("  num_envs = 8  (quick: 2, accel: 4096)")
    assert lines[i + 1].strip() == "parallel environments per update"
    # a comment-only line above a field is shown as a note above it
    assert lines[lines.index("  mass_range = 0.5,1.5") - 1] == "  # Randomization of the physics"
