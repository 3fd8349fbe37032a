"""Skills as options: the env a learned hierarchical meta-controller acts in (Eysenbach et al.
2018, sec. 4.3; Sharma et al. 2020 use the same construction with a planner instead).

A frozen skill policy ``pi(a | s, z)`` (DIAYN's or DADS's SAC actor) becomes the low level of a
two-level policy. ``SkillOptions(env, ...)`` is an env whose action is a skill -- a discrete index
``z in {0..K-1}`` (its one-hot is what the skill policy saw in training) or, for continuous
skills, a vector clipped to ``[-1, 1]^D`` -- and whose ``step`` runs the skill policy for
``option_steps`` (``k``) low-level steps of ``env``:

    reward = sum of the low-level rewards of the steps run      (no discount inside the option)
    obs    = the low-level observation after the option's last step
    done   = the low-level episode ended during the option (the option then stops early: the
             steps after ``done`` are not run, their reward is not counted)

so any learner of the library (``algos.ppo.PPO`` with its categorical head for discrete skills)
trains the high-level policy on the downstream task with no new code. Discount per option
``gamma ** k`` matches a per-step ``gamma`` (exact when no option ends early).

Parameters are data (DESIGN.md): the skill policy's weights are ``SkillOptionParams.policy``,
beside the inner env's params, so the same compiled program runs any trained skill set; the
env object holds only static structure (``k``, sizes, the policy's pure ``apply``)::

    apply = sac_skill_policy(diayn.sac, config.diayn.sac, deterministic=True)
    env = SkillOptions(PointNav2D(max_steps=50, goal_in_obs=True), apply, skill_size=K,
                       option_steps=5, skill_obs_size=2)
    space = SkillOptionSpace(goal_space, sac_policy_params(diayn_state.sac))
    state = PPO(env).init(key, ppo_config, space)

Shapes (unbatched): obs = the inner env's ``[obs_size]``; action ``[]`` int32 (categorical) or
``[D]`` float32 (uniform prior); reward ``[]`` float32; ``info["option_steps"]`` ``[]`` int32,
the low-level steps run (``k``, fewer when the episode ended inside the option).
"""

from __future__ import annotations

from typing import Any, Callable, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax.core.env import Box, Discrete, Env
from metarl_jax.core.wrappers import Wrapper, select_tree

PRIORS = ("categorical", "uniform")
# apply(policy_params, key, obs_with_skill[skill_obs_size + skill_size]) -> low-level action
SkillPolicy = Callable[[Any, jax.Array, jax.Array], jax.Array]


@struct.dataclass
class SkillOptionParams:
    """Attributes: inner (the low-level env's ``Params``); policy (the frozen skill policy's
    parameters, whatever its ``apply`` reads)."""

    inner: Any
    policy: Any


@struct.dataclass
class SkillOptionState:
    """Attributes: inner (the low-level env's state); obs ``[obs_size]``, its latest
    observation (the skill policy reads it at the next option's first step)."""

    inner: Any
    obs: jax.Array


class SkillOptions(Wrapper):
    """``env`` driven by a frozen skill policy; the action picks the skill (module doc).

    Args:
        env: the low-level env (continuous actions, as the skill policy's).
        policy: ``apply(policy_params, key, obs_with_skill) -> action``, pure (e.g.
            ``sac_skill_policy``); it sees ``[obs[:skill_obs_size], skill]``.
        skill_size: ``K`` skills (categorical: the action is an index, the policy sees its
            one-hot) or the dimension ``D`` of a continuous skill (uniform prior on [-1, 1]^D).
        option_steps: ``k >= 1`` low-level steps per high-level step.
        skill_obs_size: how many leading entries of the env's observation the skill policy was
            trained on (``None``: all). E.g. 2 when the downstream env appends a goal to the
            position the skills were learned on.
    """

    def __init__(self, env: Env, policy: SkillPolicy, skill_size: int, option_steps: int,
                 prior: str = "categorical", skill_obs_size: int | None = None):
        if int(skill_size) < 1:
            raise ValueError(f"skill_size must be >= 1, got {skill_size}")
        if int(option_steps) < 1:
            raise ValueError(f"option_steps must be >= 1, got {option_steps}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        size = env.observation_size
        skill_obs_size = size if skill_obs_size is None else int(skill_obs_size)
        if not 1 <= skill_obs_size <= size:
            raise ValueError(f"skill_obs_size must be in [1, {size}], got {skill_obs_size}")
        if not callable(policy):
            raise TypeError("policy must be apply(policy_params, key, obs_with_skill)")
        super().__init__(env)
        self.policy = policy
        self.skill_size = int(skill_size)
        self.option_steps = int(option_steps)
        self.prior = prior
        self.skill_obs_size = skill_obs_size
        self.max_steps = -(-env.max_steps // self.option_steps)  # options per episode, at most

    def default_params(self) -> SkillOptionParams:
        raise ValueError("SkillOptions has no default skill policy: build the params with "
                         "SkillOptionSpace(inner_space, policy_params).nominal")

    def skill(self, action: jax.Array) -> jax.Array:
        """The skill vector ``[skill_size]`` the policy sees for a high-level ``action``."""
        if self.prior == "categorical":
            return jax.nn.one_hot(action, self.skill_size, dtype=jnp.float32)
        return jnp.clip(jnp.asarray(action, jnp.float32), -1.0, 1.0)

    def reset(self, key, params: SkillOptionParams):
        inner, obs = self.env.reset(key, params.inner)
        return SkillOptionState(inner, obs), obs

    def step(self, key, state: SkillOptionState, action, params: SkillOptionParams):
        skill = self.skill(action)

        def low_step(inner, obs, k):
            act_key, env_key = jax.random.split(k)
            low_action = self.policy(params.policy, act_key,
                                     jnp.concatenate([obs[:self.skill_obs_size], skill]))
            return self.env.step(env_key, inner, low_action, params.inner)

        keys = jax.random.split(key, self.option_steps)
        # The first step always runs (an option starts on a live episode); it also gives the
        # info pytree the scan carries.
        inner, obs, reward, done, info = low_step(state.inner, state.obs, keys[0])

        def rest(carry, k):
            inner, obs, total, done, info, count = carry
            n_inner, n_obs, r, d, n_info = low_step(inner, obs, k)
            live = ~done  # after the episode ends nothing changes and nothing is counted
            return (select_tree(live, n_inner, inner), jnp.where(live, n_obs, obs),
                    total + jnp.where(live, r, 0.0), done | d, select_tree(live, n_info, info),
                    count + live.astype(jnp.int32)), None

        carry = (inner, obs, reward, done, info, jnp.int32(1))
        (inner, obs, reward, done, info, count), _ = jax.lax.scan(rest, carry, keys[1:])
        return (SkillOptionState(inner, obs), obs, reward, done,
                dict(info, option_steps=count))

    @property
    def action_space(self):
        if self.prior == "categorical":
            return Discrete(self.skill_size)
        return Box(low=-jnp.ones(self.skill_size, jnp.float32),
                   high=jnp.ones(self.skill_size, jnp.float32), shape=(self.skill_size,))


@struct.dataclass
class SkillOptionSpace:
    """A distribution over ``SkillOptionParams`` (``randomization.ParamDistribution``): the
    inner env's params from ``inner`` (e.g. downstream goals), the skill policy fixed.

    Attributes:
        inner: a ``ParamDistribution`` of the low-level env.
        policy: the frozen skill policy's parameters (broadcast to every draw).
    """

    inner: Any
    policy: Any

    @property
    def nominal(self) -> SkillOptionParams:
        return SkillOptionParams(self.inner.nominal, self.policy)

    def sample(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> SkillOptionParams:
        """Params with every leaf ``[*shape, *field_shape]``."""
        shape = tuple(shape)
        policy = jax.tree.map(lambda x: jnp.broadcast_to(x, shape + jnp.shape(x)), self.policy)
        return SkillOptionParams(self.inner.sample(key, shape), policy)

    def support(self):
        return self.inner.support()

    def collapse_to_nominal(self) -> "SkillOptionSpace":
        return self.replace(inner=self.inner.collapse_to_nominal())


def sac_skill_policy(sac: Any, config: Any, deterministic: bool = True) -> SkillPolicy:
    """``apply(policy_params, key, obs_with_skill)`` of a skill-conditioned SAC actor
    (``algos.sac.SAC.act``; ``policy_params = sac_policy_params(sac_state)``). ``deterministic``:
    the squashed mean ``tanh(mu)`` (else a sample of the tanh-Gaussian)."""

    def apply(policy_params, key, obs):
        return sac.act(policy_params["actor"], policy_params["obs_stats"], config, key, obs,
                       deterministic)

    return apply


def sac_policy_params(sac_state: Any) -> dict:
    """The data ``sac_skill_policy``'s ``apply`` reads: the actor's weights and the observation
    statistics it normalizes with."""
    return {"actor": sac_state.params["actor"], "obs_stats": sac_state.obs_stats}
