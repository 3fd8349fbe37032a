"""metarl_jax.xla_flags: the default XLA flags and when import metarl_jax applies them."""

import os
import subprocess
import sys
from pathlib import Path

from metarl_jax import xla_flags

ROOT = Path(__file__).resolve().parents[1]
FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def test_defaults_are_appended_once_and_never_override_the_user():
    assert xla_flags.with_defaults("") == FLAG
    assert xla_flags.with_defaults("--a=1") == f"--a=1 {FLAG}"
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    assert xla_flags.with_defaults(f"--a=1 {mine}") == f"--a=1 {mine}"
    assert xla_flags.with_defaults(FLAG) == FLAG


def test_apply_respects_the_switch_and_a_running_backend():
    env = {"METARL_JAX_XLA_DEFAULTS": "0", "XLA_FLAGS": "--a=1"}
    assert not xla_flags.apply_xla_defaults(env) and env["XLA_FLAGS"] == "--a=1"
    import jax

    jax.devices()  # this test process's backends are running: flags can no longer change
    env = {}
    assert not xla_flags.apply_xla_defaults(env) and "XLA_FLAGS" not in env


def test_import_metarl_jax_sets_the_flag_before_jax_starts():
    code = ("import os, metarl_jax, jax; jax.devices(); "
            "print(os.environ['XLA_FLAGS'])")
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.ENV_VAR)}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_cpu_enable_fast_math=false")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr  # XLA accepted the flag (an unknown one is fatal)
    assert out.stdout.split() == ["--xla_cpu_enable_fast_math=false", FLAG]
