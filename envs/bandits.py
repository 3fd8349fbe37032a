"""Bernoulli multi-armed bandits as envs whose task (the arm probabilities) lives in ``Params``.

``BernoulliBandit(num_arms=k, max_steps=n)``: one episode is ``n`` pulls of a ``k``-armed bandit
with success probabilities ``params.probs``; the RL^2 paper's task distribution is
``p_i ~ U[0, 1]`` independently (``bernoulli_task_space(k)``). ``DependentBandit``: the two-armed
bandit of Wang et al. (2016, "Learning to reinforcement learn") whose arms pay with
probabilities ``(p, 1 - p)``, so one pull informs about both arms (``dependent_task_space()``:
``p ~ U[0, 1]``).

Shapes (unbatched): obs [1] float32, a constant 0 (a bandit has no state; all information is in
the action/reward history a recurrent policy sees); action [] int32 in ``{0..k-1}``;
reward [] float32 in {0, 1}; done [] bool (``truncated`` after ``max_steps`` pulls).
``info["expected_reward"]`` is ``probs[action]`` and ``info["best_prob"]`` is ``max(probs)``
(for pseudo-regret, never shown to the policy).
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
from flax import struct

from envs._params import params_as_arrays
from metarl_jax.core.env import Box, Discrete, Env, EnvParams, Info, PRNGKey, time_limit
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import ParamSpace, make_param_space


@struct.dataclass
class BernoulliBanditParams(EnvParams):
    """Attributes: probs [k] float32, the success probability of every arm."""

    probs: jax.Array = (0.5,)


@struct.dataclass
class DependentBanditParams(EnvParams):
    """Attributes: p [] float32; arm 0 pays with probability p, arm 1 with 1 - p."""

    p: jax.Array = 0.5


@struct.dataclass
class BanditState:
    """Attributes: time [] int32, pulls so far in this episode."""

    time: jax.Array


class _Bandit(Env):
    """Shared step/reset of the Bernoulli bandits; subclasses say how to read the arm probs."""

    num_arms: int

    def arm_probs(self, params) -> jax.Array:
        raise NotImplementedError

    def reset(self, key: PRNGKey, params) -> Tuple[BanditState, jax.Array]:
        del key, params
        return BanditState(time=jnp.zeros((), jnp.int32)), jnp.zeros((1,), jnp.float32)

    def step(self, key: PRNGKey, state: BanditState, action: jax.Array, params
             ) -> Tuple[BanditState, jax.Array, jax.Array, jax.Array, Info]:
        probs = self.arm_probs(params)
        p = probs[action]
        reward = jax.random.bernoulli(key, p).astype(jnp.float32)
        time = state.time + 1
        truncated = time_limit(time, self.max_steps)
        info = {"truncated": truncated, "terminated": jnp.zeros((), jnp.bool_),
                "expected_reward": p, "best_prob": jnp.max(probs)}
        return BanditState(time), jnp.zeros((1,), jnp.float32), reward, truncated, info

    @property
    def observation_space(self) -> Box:
        return Box(low=jnp.zeros((1,), jnp.float32), high=jnp.zeros((1,), jnp.float32), shape=(1,))

    @property
    def action_space(self) -> Discrete:
        return Discrete(self.num_arms)


class BernoulliBandit(_Bandit):
    """``k``-armed Bernoulli bandit; an episode is ``max_steps`` pulls."""

    def __init__(self, num_arms: int = 5, max_steps: int = 10):
        if num_arms < 1 or max_steps < 1:
            raise ValueError(f"need num_arms >= 1 and max_steps >= 1, got {num_arms}, {max_steps}")
        self.num_arms = int(num_arms)
        self.max_steps = int(max_steps)

    def default_params(self) -> BernoulliBanditParams:
        return params_as_arrays(BernoulliBanditParams(probs=(0.5,) * self.num_arms))

    def arm_probs(self, params: BernoulliBanditParams) -> jax.Array:
        return params.probs


class DependentBandit(_Bandit):
    """Two arms paying with probabilities ``(p, 1 - p)`` (Wang et al. 2016)."""

    num_arms = 2

    def __init__(self, max_steps: int = 100):
        if max_steps < 1:
            raise ValueError(f"need max_steps >= 1, got {max_steps}")
        self.max_steps = int(max_steps)

    def default_params(self) -> DependentBanditParams:
        return params_as_arrays(DependentBanditParams())

    def arm_probs(self, params: DependentBanditParams) -> jax.Array:
        return jnp.stack([params.p, 1.0 - params.p])


def bernoulli_task_space(num_arms: int, low: float = 0.0, high: float = 1.0) -> ParamSpace:
    """Tasks of the RL^2 paper: every arm's probability ``~ U[low, high]`` independently."""
    return make_param_space(BernoulliBandit(num_arms).default_params(),
                            {"probs": uniform(low, high)})


def dependent_task_space(low: float = 0.0, high: float = 1.0) -> ParamSpace:
    """``p ~ U[low, high]`` for the dependent two-armed bandit."""
    return make_param_space(DependentBandit().default_params(), {"p": uniform(low, high)})
