"""Interop with other RL libraries: ``gymnasium`` front-ends for our envs (``GymnasiumEnv``,
``GymnasiumVectorEnv``), with physics drawn from a ``ParamSpace`` at every reset."""

from metarl_jax.interop.gymnasium import (
    GymnasiumEnv,
    GymnasiumVectorEnv,
    params_to_numpy,
    to_gymnasium_space,
)

__all__ = ["GymnasiumEnv", "GymnasiumVectorEnv", "params_to_numpy", "to_gymnasium_space"]
