"""metarl_jax: transfer, sim-to-real and meta reinforcement learning on JAX (see README.md).

``metarl_jax.load_run(run_dir)`` reads a finished (or checkpointed) run folder back: the trained
states and a numpy ``act(obs)`` per policy (``metarl_jax.io.load``). It is imported on first use,
so ``import metarl_jax`` (and the numpy-only ``metarl_jax.sim2real.export``) does not load JAX.

``import metarl_jax`` appends ``--xla_cpu_enable_concurrency_optimized_scheduler=false`` to
``XLA_FLAGS`` (``metarl_jax.xla_flags``): with XLA's default scheduler, compiled MJX programs
on 2-core CPUs hang for good in most runs of ``benchmarks.xla_cpu_hang``; with it, none did,
at the same speed (README, "Known issue: XLA:CPU hangs"). It only acts if JAX's backends are
not running yet, and never overrides a value the user gave; ``METARL_JAX_XLA_DEFAULTS=0`` turns
it off.
"""

from importlib import metadata as _metadata

from metarl_jax.xla_flags import apply_xla_defaults as _apply_xla_defaults

_apply_xla_defaults()

try:
    __version__ = _metadata.version("metarl_jax")
except _metadata.PackageNotFoundError:  # a source tree on sys.path that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__", "load_run"]


def __getattr__(name: str):
    if name == "load_run":
        from metarl_jax.io.load import load_run

        return load_run
    raise AttributeError(f"module 'metarl_jax' has no attribute {name!r}")
