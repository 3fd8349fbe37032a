"""metarl_jax: transfer, sim-to-real and meta reinforcement learning on JAX (see README.md).

``metarl_jax.load_run(run_dir)`` reads a finished (or checkpointed) run folder back: the trained
states and a numpy ``act(obs)`` per policy (``metarl_jax.io.load``). It is imported on first use,
so ``import metarl_jax`` (and the numpy-only ``metarl_jax.sim2real.export``) does not load JAX.
"""

from importlib import metadata as _metadata

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
