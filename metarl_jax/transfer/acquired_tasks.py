"""Tasks acquired from a skill discriminator: the task distribution of unsupervised meta-RL
(Gupta et al. 2018, "Unsupervised Meta-Learning for Reinforcement Learning").

DIAYN (``algos.diayn``) leaves a discriminator ``q(z | s)`` over ``K`` skills. Each skill ``z``
defines a task whose reward is ``r_z(s') = log q(z | s')`` on the next state's features; a
meta-learner (``algos.maml_rl.MAMLRL``, ``algos.rl2``) trained on these tasks never sees a
hand-designed reward. Following DESIGN.md's parameters-as-data, the task -- the skill index, the
frozen discriminator's weights, and whether the reward is the acquired one or the env's own --
lives in ``AcquiredTaskParams``, so a meta-batch of tasks is a batch of params and one compiled
program trains on acquired tasks or on the env's own task distribution (the upper reference)::

    env = AcquiredTasks(PointNav2D(max_steps=50), diayn.discriminator(cfg), feature_size=2)
    acquired = AcquiredTaskSpace(goal_space, disc_params, jnp.bool_(True), num_skills=K)
    true_goals = acquired.replace(acquired=jnp.bool_(False))   # reward: -distance to the goal
    state = MAMLRL(env).init(key, maml_config, acquired)

Goal-like tasks from the same skills (``SkillDensity``): a spherical Gaussian fitted to each
skill's visited states is a generative model ``q(s | z)`` whose posterior is a discriminator;
with ``density_weight`` ``lambda > 1`` the reward becomes CARML's (Jabri et al. 2019)
``lambda log q(s'|z) - log q(s')`` (up to the constant ``log K``), a bowl around the skill's
states rather than DIAYN's saturating cone::

    density = fit_skill_density(skill_states)           # [K, N, F] visited states per skill
    env = AcquiredTasks(PointNav2D(max_steps=50), SkillDensity(K), feature_size=2)
    acquired = acquired_task_space(goal_space, density, K, density_weight=2.0)

Shapes (unbatched): obs = the inner env's; ``skill`` [] int32; ``acquired`` [] bool;
``disc_params`` the discriminator's flax params; ``min_log_q`` and ``density_weight`` []
float32. The observation never contains the skill: like a hidden goal, it is what the learner
must infer from rewards.
"""

from __future__ import annotations

from typing import Any, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl_jax.core.env import Env
from metarl_jax.core.wrappers import Wrapper

static = dict(pytree_node=False)


@struct.dataclass
class AcquiredTaskParams:
    """One task (module doc).

    Attributes:
        inner: the wrapped env's ``Params`` (its goal is used only when ``acquired`` is False).
        skill: [] int32, the skill ``z`` whose ``log q(z | s')`` is the reward.
        disc_params: the frozen discriminator's parameters (``Discriminator`` of ``algos.diayn``).
        acquired: [] bool, True: reward ``log q(z | s')``; False: the inner env's own reward.
        min_log_q: [] float32, floor of the acquired reward (``-inf``: none). Far from the
            states DIAYN visited, ``log q`` can be arbitrarily negative; a floor bounds the
            returns' scale without changing where the reward is high.
        density_weight: [] float32, ``lambda``: the reward is ``log q(z | s') + (lambda - 1)
            * logits_z(s')`` (floored). 1: DIAYN's ``log q(z | s')`` exactly. With a
            ``SkillDensity`` discriminator, whose logits are ``log q(s' | z)``, this is
            ``lambda log q(s' | z) - log q(s') - log K`` (CARML's task reward).
    """

    inner: Any
    skill: jax.Array
    disc_params: Any
    acquired: jax.Array
    min_log_q: jax.Array
    density_weight: jax.Array = 1.0


class AcquiredTasks(Wrapper):
    """``env`` whose reward is ``log q(skill | s'[:feature_size])`` for ``params.acquired`` tasks
    (else the env's own); dynamics, observations and horizon are the env's.

    Args:
        discriminator: a flax module ``features[..., F] -> logits[..., K]``.
        feature_size: ``F``, the discriminator reads ``obs[:F]`` of the next observation.
    """

    def __init__(self, env: Env, discriminator: nn.Module, feature_size: int):
        if not 1 <= int(feature_size) <= env.observation_size:
            raise ValueError(f"feature_size must be in [1, {env.observation_size}], "
                             f"got {feature_size}")
        super().__init__(env)
        self.discriminator = discriminator
        self.feature_size = int(feature_size)

    def default_params(self) -> AcquiredTaskParams:
        raise ValueError("AcquiredTasks has no default discriminator: build the params with "
                         "AcquiredTaskSpace(...).nominal")

    def log_q(self, params: AcquiredTaskParams, obs: jax.Array) -> jax.Array:
        """``log q(params.skill | obs[..., :F])``: ``[...]`` (``skill`` broadcasts against the
        leading axes of ``obs``)."""
        return self._log_q_and_logit(params, obs)[0]

    def _log_q_and_logit(self, params: AcquiredTaskParams, obs: jax.Array):
        logits = self.discriminator.apply(params.disc_params, obs[..., :self.feature_size])
        one_hot = jax.nn.one_hot(params.skill, logits.shape[-1], dtype=logits.dtype)
        return (jnp.sum(jax.nn.log_softmax(logits, axis=-1) * one_hot, axis=-1),
                jnp.sum(logits * one_hot, axis=-1))

    def acquired_reward(self, params: AcquiredTaskParams, obs: jax.Array) -> jax.Array:
        """The acquired reward of ``obs[..., :F]`` (``AcquiredTaskParams.density_weight``),
        floored at ``min_log_q``: ``[...]``."""
        log_q, logit = self._log_q_and_logit(params, obs)
        # (lambda - 1) * logit is exactly 0 at lambda = 1 (finite logits): DIAYN's reward.
        reward = log_q + (params.density_weight - 1.0) * logit
        # Not jnp.maximum: under jit XLA's max may return the floor for a NaN reward (seen on
        # CPU), which would hide a diverged policy's NaN state behind a finite return.
        return jnp.where(reward < params.min_log_q, params.min_log_q, reward)

    def reset(self, key, params: AcquiredTaskParams):
        return self.env.reset(key, params.inner)

    def step(self, key, state, action, params: AcquiredTaskParams):
        state, obs, reward, done, info = self.env.step(key, state, action, params.inner)
        acquired = self.acquired_reward(params, obs)
        return state, obs, jnp.where(params.acquired, acquired, reward), done, info


@struct.dataclass
class AcquiredTaskSpace:
    """A distribution over ``AcquiredTaskParams`` (``randomization.ParamDistribution``):
    ``skill ~ U{0..num_skills-1}``, ``inner ~ inner`` (a distribution over the env's params,
    e.g. goals for the true task distribution), the discriminator and ``acquired`` fixed.

    Attributes:
        inner: a ``ParamDistribution`` of the wrapped env.
        disc_params: the frozen discriminator's parameters.
        acquired: [] bool (``AcquiredTaskParams.acquired``).
        min_log_q: [] float32 (``AcquiredTaskParams.min_log_q``).
        density_weight: [] float32 (``AcquiredTaskParams.density_weight``).
        num_skills: ``K`` (static); 1 after ``collapse_to_nominal`` (always skill 0).
    """

    inner: Any
    disc_params: Any
    acquired: jax.Array
    min_log_q: jax.Array = -jnp.inf
    density_weight: jax.Array = 1.0
    num_skills: int = struct.field(default=2, **static)

    @property
    def nominal(self) -> AcquiredTaskParams:
        return AcquiredTaskParams(self.inner.nominal, jnp.int32(0), self.disc_params,
                                  jnp.asarray(self.acquired, jnp.bool_),
                                  jnp.asarray(self.min_log_q, jnp.float32),
                                  jnp.asarray(self.density_weight, jnp.float32))

    def sample(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> AcquiredTaskParams:
        """Tasks with every leaf ``[*shape, *field_shape]``."""
        shape = tuple(shape)
        inner_key, skill_key = jax.random.split(key)
        nominal = jax.tree.map(lambda x: jnp.broadcast_to(x, shape + jnp.shape(x)),
                               self.nominal)
        return nominal.replace(inner=self.inner.sample(inner_key, shape),
                               skill=jax.random.randint(skill_key, shape, 0, self.num_skills))

    def support(self):
        """The inner distribution's support and ``skill: (0, num_skills - 1)``."""
        return dict(self.inner.support(), skill=(jnp.int32(0), jnp.int32(self.num_skills - 1)))

    def collapse_to_nominal(self) -> "AcquiredTaskSpace":
        """Always the nominal task: the inner nominal params and skill 0."""
        return self.replace(inner=self.inner.collapse_to_nominal(), num_skills=1)


def acquired_task_space(inner: Any, disc_params: Any, num_skills: int, acquired: bool = True,
                        min_log_q: float = -float("inf"),
                        density_weight: float = 1.0) -> AcquiredTaskSpace:
    """A validated ``AcquiredTaskSpace`` (``ValueError`` on ``num_skills < 1``, a ``min_log_q``
    that is NaN or positive -- ``log q <= 0``, so a positive floor is a constant --, or a
    ``density_weight`` below 1 or not finite)."""
    if int(num_skills) < 1:
        raise ValueError(f"num_skills must be >= 1, got {num_skills}")
    if not float(min_log_q) <= 0.0:
        raise ValueError(f"min_log_q must be <= 0 (log q <= 0), got {min_log_q}")
    if not (np.isfinite(density_weight) and float(density_weight) >= 1.0):
        raise ValueError(f"density_weight must be a finite number >= 1, got {density_weight}")
    return AcquiredTaskSpace(inner, disc_params, jnp.bool_(acquired), jnp.float32(min_log_q),
                             jnp.float32(density_weight), int(num_skills))


class SkillDensity(nn.Module):
    """``q(s | z)``: one spherical Gaussian per skill, ``features[..., F] -> logits[..., K]``
    with ``logits_z = log N(features; mean_z, exp(log_var_z) I)``; its softmax is the posterior
    ``q(z | s)`` under a uniform skill prior. Parameters (``fit_skill_density``):
    ``{"params": {"mean": [K, F], "log_var": [K]}}``; not trained by gradient here."""

    num_skills: int

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        size = features.shape[-1]
        mean = self.param("mean", nn.initializers.zeros, (self.num_skills, size))
        log_var = self.param("log_var", nn.initializers.zeros, (self.num_skills,))
        sq = jnp.sum(jnp.square(features[..., None, :] - mean), axis=-1)  # [..., K]
        return -0.5 * (sq * jnp.exp(-log_var) + size * (log_var + jnp.log(2 * jnp.pi)))


def fit_skill_density(states: jax.Array, min_std: float = 0.1) -> dict:
    """Maximum-likelihood spherical Gaussians of ``states[K, N, F]`` (``N`` visited states of
    each of ``K`` skills): ``SkillDensity`` params with ``mean_z`` the skill's mean state and
    ``exp(log_var_z)`` its variance averaged over the ``F`` features, floored at ``min_std**2``
    (a skill that never moves would otherwise give an infinitely sharp task). ``ValueError`` on
    a non-3-D input, ``N < 2`` or non-finite states."""
    states = jnp.asarray(states, jnp.float32)
    if states.ndim != 3 or states.shape[1] < 2:
        raise ValueError(f"states must be [K, N >= 2, F], got shape {states.shape}")
    if not bool(jnp.all(jnp.isfinite(states))):
        raise ValueError("states must be finite")
    if not min_std > 0:
        raise ValueError(f"min_std must be > 0, got {min_std}")
    mean = states.mean(axis=1)
    var = jnp.mean(jnp.square(states - mean[:, None]), axis=(1, 2))
    return {"params": {"mean": mean, "log_var": jnp.log(jnp.maximum(var, min_std ** 2))}}
