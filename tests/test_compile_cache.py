"""The persistent compilation cache every experiment turns on in ``start_run``."""

import subprocess
import sys
import textwrap
from pathlib import Path

from metarl_jax.io import experiment
from metarl_jax.io.experiment import compile_cache_dir


def test_cache_folder_comes_from_the_environment_and_can_be_switched_off(tmp_path):
    assert compile_cache_dir({"METARL_JAX_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert compile_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/metarl_jax/jax")
    assert compile_cache_dir({}) == Path.home() / ".cache" / "metarl_jax" / "jax"
    for off in ("0", "off", "False", "no"):
        assert compile_cache_dir({"METARL_JAX_COMPILE_CACHE": off,
                                  "METARL_JAX_CACHE_DIR": str(tmp_path)}) is None
    assert compile_cache_dir({"METARL_JAX_COMPILE_CACHE": "1"}) is not None


def test_start_run_turns_the_cache_on(tmp_path, monkeypatch):
    from metarl_jax.io.cli import RunArgs
    from tests.toy_experiment import Config

    calls = []
    monkeypatch.setattr(experiment, "enable_compile_cache", lambda: calls.append(1))
    experiment.start_run("toy_experiment", RunArgs(config=Config(), preset="quick", seed=0,
                                        out=tmp_path / "run", resume=None))
    assert calls == [1]


def test_compiled_programs_land_in_the_cache_folder_unless_switched_off(tmp_path):
    """In a fresh process (JAX reads the cache settings once): switched off, nothing is set; on,
    a compiled program is written to the folder."""
    script = textwrap.dedent(f"""
        import jax, jax.numpy as jnp
        from metarl_jax.io.experiment import enable_compile_cache
        folder = {str(tmp_path / "cache")!r}
        assert enable_compile_cache({{"METARL_JAX_COMPILE_CACHE": "0",
                                      "METARL_JAX_CACHE_DIR": folder}}) is None
        assert not jax.config.jax_compilation_cache_dir
        assert str(enable_compile_cache({{"METARL_JAX_CACHE_DIR": folder}})) == folder
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # tiny program
        jax.jit(lambda x: jnp.sin(x) * 2.0)(jnp.ones(3)).block_until_ready()
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[1],
                   timeout=120)
    assert any((tmp_path / "cache").iterdir())
