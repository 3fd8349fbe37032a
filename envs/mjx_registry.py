"""Lazy registry entries for the MJX robots: ``envs.make("HalfCheetah")`` imports MuJoCo/MJX only
when an MJX env is actually built, so ``import envs`` stays cheap for the pure-JAX envs."""

from __future__ import annotations

import importlib
from typing import Callable

# registry name -> (module, class)
MJX_ENVS = {
    "HalfCheetah": ("envs.half_cheetah", "HalfCheetah"),
    "HalfCheetahVel": ("envs.half_cheetah", "HalfCheetahVel"),
    "HalfCheetahDir": ("envs.half_cheetah", "HalfCheetahDir"),
    "Hopper": ("envs.hopper", "Hopper"),
    "Walker2d": ("envs.walker2d", "Walker2d"),
    "Ant": ("envs.ant", "Ant"),
    "AntDir": ("envs.ant", "AntDir"),
    "AntGoal": ("envs.ant", "AntGoal"),
}


def lazy_mjx(name: str) -> Callable:
    """A constructor for ``MJX_ENVS[name]`` that imports its module on first call."""
    module, cls = MJX_ENVS[name]

    def construct(**kwargs):
        return getattr(importlib.import_module(module), cls)(**kwargs)

    construct.__name__ = cls
    return construct
