"""Shared test setup: a persistent XLA compilation cache so repeated runs skip recompiles, fast
compiles on CPU, and the settings that let the same suite run on a GPU (``suite_settings``)."""

import importlib.metadata
import importlib.util
import os
import pathlib
from typing import Dict, Mapping, Tuple

import jax

from metarl_jax.xla_flags import with_defaults

_CACHE = pathlib.Path(os.environ.get("METARL_JAX_TEST_CACHE",
                                     pathlib.Path(__file__).parent.parent / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)

_GPU_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm7_plugin")

# XLA:CPU with LLVM's optimizations off. The suite's programs run a few tiny updates, so
# compiling is most of their cost: measured on the 2-core CPU (cold compile cache, load ~3),
# test_domain_adaptation.py 132 -> 95 s, test_sac.py (which also trains to a threshold)
# 142 -> 128 s. Both sides of every comparison in the suite (a run and its resumed copy, one
# device and four, ours and a reference) are compiled with the same flags.
FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0",
                      "--xla_llvm_disable_expensive_passes=true")


def gpu_platform(environ: Mapping[str, str]) -> bool:
    """Whether JAX will run this suite on a GPU, decided before JAX starts its backend (the
    settings below only act before that): ``JAX_PLATFORMS`` when set, else whether a CUDA/ROCm
    plugin is installed (JAX prefers a GPU when it has one)."""
    platforms = environ.get("JAX_PLATFORMS", "").strip().lower()
    if platforms:
        return any(p in platforms for p in ("cuda", "gpu", "rocm"))
    names = [ep.name for ep in importlib.metadata.entry_points(group="jax_plugins")]
    return (any("cuda" in n or "rocm" in n for n in names)
            or any(importlib.util.find_spec(p) is not None for p in _GPU_PLUGINS))


def suite_settings(environ: Mapping[str, str], gpu: bool
                   ) -> Tuple[Dict[str, str], Dict[str, str]]:
    """``(environment variables, jax.config values)`` the suite sets on ``gpu`` or not.

    Always: ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` (kept if set), so the pytest-xdist workers
    and the subprocess tests (experiments, forced-device and 2-process workers) do not each
    grab 75% of the GPU's memory; on CPU it does nothing.

    On a GPU only, for the whole suite rather than test by test: the suite checks float32
    results against references (gymnasium dynamics, finite differences, closed forms, a
    single-device run) at 1e-5-ish tolerances, which TF32 matmuls (the GPU default on
    Ampere and later) break, and its resume tests check bit-identical states, which atomics in
    GPU reductions/scatters break. So ``jax_default_matmul_precision="highest"`` (also as
    ``JAX_DEFAULT_MATMUL_PRECISION`` for subprocesses) and
    ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (appended). Marking tests one by one would
    miss the next one written; the cost -- slower GPU matmuls and reductions -- is paid by a
    correctness suite, not by the benchmarks. Not set on CPU, where float32 matmuls are
    already exact-precision and ops deterministic: CPU programs (and the compile cache's keys)
    stay as they are.

    On CPU only: ``FAST_COMPILE_FLAGS`` appended to ``XLA_FLAGS`` (a flag the user set wins), so
    the subprocess tests compile the same way as the workers (and share their cache entries).
    """
    env = {"XLA_PYTHON_CLIENT_PREALLOCATE": environ.get("XLA_PYTHON_CLIENT_PREALLOCATE",
                                                       "false")}
    config: Dict[str, str] = {}
    if not gpu:
        env["XLA_FLAGS"] = with_defaults(environ.get("XLA_FLAGS", ""), FAST_COMPILE_FLAGS)
    else:
        flags = environ.get("XLA_FLAGS", "")
        if "xla_gpu_deterministic_ops" not in flags:
            flags = (flags + " --xla_gpu_deterministic_ops=true").strip()
        env.update(XLA_FLAGS=flags, JAX_DEFAULT_MATMUL_PRECISION="highest")
        config["jax_default_matmul_precision"] = "highest"
    return env, config


_env, _config = suite_settings(os.environ, gpu_platform(os.environ))
os.environ.update(_env)
for _name, _value in _config.items():
    jax.config.update(_name, _value)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``mjx_e2e`` (an MJX experiment end to end: minutes of compiles on 2 cores)
    are skipped unless selected: ``pytest -m mjx_e2e`` / ``make test-mjx``. The default suite
    (CI) keeps one MJX training run end to end (sim2real_cheetah's quick preset) and the MJX
    dynamics against MuJoCo C (tests/test_mjx_envs.py)."""
    import pytest

    if "mjx_e2e" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="MJX end-to-end run: select with -m mjx_e2e (make test-mjx)")
    for item in items:
        if "mjx_e2e" in item.keywords:
            item.add_marker(skip)
