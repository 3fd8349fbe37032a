"""Environment registry: ``envs.make("Pendulum")`` builds an env by name.

Constructors take only static structure (``max_steps``, observation layout) as keyword arguments;
physics and task fields come from ``env.default_params()`` or a randomized ``Params`` batch.
"""

from __future__ import annotations

import difflib
from typing import Callable, Dict, List

from envs.bandits import BernoulliBandit, DependentBandit
from envs.cartpole import CartPole, CartPoleContinuous, CartPoleParams, CartPoleState
from envs.domain_nav import DomainNav2D, DomainNavParams, DomainNavState
from envs.feature_nav import FeatureNav2D
from envs.mjx_registry import lazy_mjx
from envs.multigoal import MultiGoal2D, MultiGoalParams, MultiGoalState
from envs.pendulum import Pendulum, PendulumParams, PendulumState
from envs.planar_arm import PlanarArm, PlanarArmParams, PlanarArmState
from envs.point_nav import PointNav2D, PointNavParams, PointNavState
from envs.tabular_mdp import TabularMDP
from metarl_jax.core.env import Env

_REGISTRY: Dict[str, Callable[..., Env]] = {}


def register(name: str, constructor: Callable[..., Env], overwrite: bool = False) -> None:
    """Make ``make(name, **kwargs)`` call ``constructor(**kwargs)``. Re-registering a name raises
    ``ValueError`` unless ``overwrite`` is true (a silent shadowing is usually a typo)."""
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"environment {name!r} is already registered; "
                         "pass overwrite=True to replace it")
    _REGISTRY[name] = constructor


def registered() -> List[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


def make(name: str, **kwargs) -> Env:
    """Build the env registered as ``name``; ``kwargs`` go to its constructor (``max_steps``...)."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY.keys(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown environment {name!r}.{hint} Known: {', '.join(registered())}")
    return _REGISTRY[name](**kwargs)


register("Pendulum", Pendulum)
register("CartPole", CartPole)
register("CartPoleContinuous", CartPoleContinuous)
register("PointNav2D", PointNav2D)
register("PlanarArm", PlanarArm)
register("MultiGoal2D", MultiGoal2D)
register("DomainNav2D", DomainNav2D)
register("FeatureNav2D", FeatureNav2D)
register("BernoulliBandit", BernoulliBandit)
register("DependentBandit", DependentBandit)
register("TabularMDP", TabularMDP)
register("HalfCheetah", lazy_mjx("HalfCheetah"))  # MJX; imports MuJoCo on first make()
register("HalfCheetahVel", lazy_mjx("HalfCheetahVel"))
register("HalfCheetahDir", lazy_mjx("HalfCheetahDir"))
register("Hopper", lazy_mjx("Hopper"))
register("Walker2d", lazy_mjx("Walker2d"))
register("Ant", lazy_mjx("Ant"))
register("AntDir", lazy_mjx("AntDir"))
register("AntGoal", lazy_mjx("AntGoal"))

__all__ = [
    "BernoulliBandit",
    "CartPole",
    "CartPoleContinuous",
    "CartPoleParams",
    "CartPoleState",
    "DependentBandit",
    "DomainNav2D",
    "DomainNavParams",
    "DomainNavState",
    "FeatureNav2D",
    "MultiGoal2D",
    "MultiGoalParams",
    "MultiGoalState",
    "Pendulum",
    "PendulumParams",
    "PendulumState",
    "PlanarArm",
    "PlanarArmParams",
    "PlanarArmState",
    "PointNav2D",
    "PointNavParams",
    "PointNavState",
    "TabularMDP",
    "make",
    "register",
    "registered",
]
