"""Shared test setup: a persistent XLA compilation cache so repeated runs skip recompiles."""

import os
import pathlib

import jax

_CACHE = pathlib.Path(os.environ.get("METARL_JAX_TEST_CACHE",
                                     pathlib.Path(__file__).parent.parent / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
