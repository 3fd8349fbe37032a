"""The XLA flags ``import metarl_jax`` adds to ``XLA_FLAGS``, and when it may.

``DEFAULT_FLAGS``: ``--xla_cpu_enable_concurrency_optimized_scheduler=false``. With XLA:CPU's
concurrency-optimized HLO scheduler (the default in jaxlib 0.10.2), compiled MJX programs on a
2-core CPU hang in most runs (``benchmarks.xla_cpu_hang``: the main thread in
``block_until_ready``, every worker idle, no CPU time, forever); with the sequential-friendly
schedule none did, and MJX rollouts ran at the same speed (README, "Known issue: XLA:CPU
hangs"). The flag only orders instructions, so results are the same numbers. It has no effect
on GPU programs.

Flags are read once, when JAX starts its backends: ``apply_xla_defaults`` changes
``os.environ`` only before that (afterwards it does nothing and returns False), appends only a
flag whose name ``XLA_FLAGS`` does not already hold (the user's value wins), and does nothing
when ``METARL_JAX_XLA_DEFAULTS=0``. It does not import JAX.
"""

from __future__ import annotations

import os
import sys
from typing import MutableMapping, Optional, Sequence

DEFAULT_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false",)
ENV_VAR = "METARL_JAX_XLA_DEFAULTS"


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # an unknown jax layout: assume started, change nothing
        return True


def with_defaults(flags: str, defaults: Sequence[str] = DEFAULT_FLAGS) -> str:
    """``flags`` (an ``XLA_FLAGS`` value) plus each default whose name it does not set."""
    names = {f.split("=", 1)[0] for f in flags.split()}
    extra = [d for d in defaults if d.split("=", 1)[0] not in names]
    return " ".join([flags.strip(), *extra]).strip()


def apply_xla_defaults(environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Add ``DEFAULT_FLAGS`` to ``environ["XLA_FLAGS"]`` (``os.environ`` by default) if JAX's
    backends have not started and ``METARL_JAX_XLA_DEFAULTS`` is not ``0``. True if it did."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR, "").strip() == "0" or _backends_started():
        return False
    environ["XLA_FLAGS"] = with_defaults(environ.get("XLA_FLAGS", ""))
    return True


__all__ = ["DEFAULT_FLAGS", "ENV_VAR", "apply_xla_defaults", "with_defaults"]
