"""DIAYN, "Diversity is All You Need" (Eysenbach et al. 2018): skills without a reward.

    diayn = DIAYN(env, num_skills=8)                  # env: any continuous-action env
    state = diayn.init(key, config, space)
    state, metrics = diayn.train_chunk(state, config, num_updates=100)

A skill ``z`` is drawn from the uniform categorical prior ``p(z) = 1/K`` at every episode start
and held for the episode (``SkillConditioned``: the skill is part of the wrapped env's state and
its one-hot is appended to the observation, so SAC learns ``pi(a | s, z)`` on ``[s, z]``). A
discriminator ``q(z | s)`` (an MLP over the state features ``s = obs[:feature_size]``, logits
``[K]``) is trained by cross-entropy on replayed next states, and SAC's rewards are replaced by
the pseudo-reward

    r(s', z) = log q(z | s') - log p(z) = log_softmax(logits(s'))[z] + ln K   <= ln K

(relabelled at every gradient step with the current discriminator, ``SAC._update``'s
``reward_fn``). The env's own reward is ignored. Each update: ``disc_steps`` discriminator
Adam steps on batches of the SAC buffer, then one SAC update.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metarl_jax.algos.sac import SAC, SACBased, SACBasedConfig, SACConfig, SACState, adam_step
from metarl_jax.core import replay
from metarl_jax.core.env import Box, Env
from metarl_jax.core.wrappers import Wrapper
from metarl_jax.nets.mlp import MLP
from metarl_jax.randomization.param_space import ParamSpace

static = dict(pytree_node=False)
PRIORS = ("categorical", "uniform")


# --------------------------------------------------------------------------- skill-conditioned env
@struct.dataclass
class SkillState:
    """Attributes: inner (the env's state); skill ``[skill_size]`` (one-hot or continuous)."""

    inner: Any
    skill: jax.Array


class SkillConditioned(Wrapper):
    """``env`` with a skill drawn from ``prior`` at every reset, held for the episode and
    appended to the observation: obs ``[obs_size + skill_size]`` = ``[env obs, z]``.

    Args:
        skill_size: ``K`` one-hot entries (``prior="categorical"``) or the dimension ``D`` of a
            continuous skill (``prior="uniform"``: ``z ~ U[-1, 1]^D``, as DADS).
    """

    def __init__(self, env: Env, skill_size: int, prior: str = "categorical"):
        if int(skill_size) < 1:
            raise ValueError(f"skill_size must be >= 1, got {skill_size}")
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
        super().__init__(env)
        self.skill_size = int(skill_size)
        self.prior = prior
        self.base_obs_size = int(env.observation_size)

    def sample_skills(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> jax.Array:
        """Skills from the prior: ``[*shape, skill_size]``."""
        if self.prior == "categorical":
            index = jax.random.randint(key, shape, 0, self.skill_size)
            return jax.nn.one_hot(index, self.skill_size, dtype=jnp.float32)
        return jax.random.uniform(key, shape + (self.skill_size,), jnp.float32, -1.0, 1.0)

    def reset(self, key, params):
        skill_key, key = jax.random.split(key)
        return self.reset_with_skill(key, params, self.sample_skills(skill_key))

    def reset_with_skill(self, key, params, skill: jax.Array):
        """``reset`` with a given ``skill[skill_size]`` (evaluation, planning)."""
        inner, obs = self.env.reset(key, params)
        skill = jnp.asarray(skill, jnp.float32)
        return SkillState(inner, skill), jnp.concatenate([obs, skill])

    def with_skill(self, state: SkillState, obs: jax.Array, skill: jax.Array):
        """Switch the skill mid-episode (a meta-controller): ``(state, obs)`` with the new
        skill."""
        skill = jnp.asarray(skill, jnp.float32)
        return state.replace(skill=skill), jnp.concatenate([obs[:self.base_obs_size], skill])

    def step(self, key, state, action, params):
        inner, obs, reward, done, info = self.env.step(key, state.inner, action, params)
        return (SkillState(inner, state.skill), jnp.concatenate([obs, state.skill]), reward,
                done, info)

    @property
    def observation_space(self) -> Box:
        inner = self.env.observation_space
        low = jnp.concatenate([jnp.broadcast_to(inner.low, inner.shape),
                               -jnp.ones(self.skill_size, jnp.float32)])
        high = jnp.concatenate([jnp.broadcast_to(inner.high, inner.shape),
                                jnp.ones(self.skill_size, jnp.float32)])
        return Box(low=low, high=high, shape=(self.base_obs_size + self.skill_size,))


def skill_trajectories(act: Callable, env: SkillConditioned, params: Any, skills: jax.Array,
                       key: jax.Array, num_steps: int) -> jax.Array:
    """Observations (without the skill) of one episode per skill: ``[M, num_steps + 1,
    base_obs_size]`` for ``skills[M, skill_size]``; ``act(key, obs[obs_size + skill_size])``.
    The episode is not reset at ``done`` (use ``num_steps <= env.max_steps``)."""

    def one(skill, k):
        reset_key, k = jax.random.split(k)
        state, obs = env.reset_with_skill(reset_key, params, skill)

        def step(carry, step_key):
            state, obs = carry
            act_key, env_key = jax.random.split(step_key)
            state, obs, _, _, _ = env.step(env_key, state, act(act_key, obs), params)
            return (state, obs), obs[:env.base_obs_size]

        _, path = jax.lax.scan(step, (state, obs), jax.random.split(k, num_steps))
        return jnp.concatenate([obs[None, :env.base_obs_size], path])

    return jax.vmap(one)(skills, jax.random.split(key, skills.shape[0]))


def binned_entropy(points: np.ndarray, low: float, high: float, bins: int) -> float:
    """Entropy (nats) of the histogram of ``points[N, 2]`` on a ``bins x bins`` grid over
    ``[low, high]^2`` (points outside are clipped to the border bins): state coverage."""
    points = np.clip(np.asarray(points, np.float64).reshape(-1, 2), low, high - 1e-9)
    index = np.floor((points - low) / (high - low) * bins).astype(int)
    counts = np.bincount(index[:, 0] * bins + index[:, 1], minlength=bins * bins)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


# --------------------------------------------------------------------------- discriminator
def pseudo_reward(logits: jax.Array, skill: jax.Array) -> jax.Array:
    """``log q(z|s) - log p(z)`` ``[...]`` for a uniform prior over ``K`` skills: ``logits[...,
    K]`` of ``q(.|s)``, ``skill[..., K]`` one-hot. At most ``ln K`` (``log q <= 0``), reached
    when the discriminator is certain and right; ``0`` at chance."""
    num_skills = logits.shape[-1]
    log_q = jnp.sum(jax.nn.log_softmax(logits, axis=-1) * skill, axis=-1)
    return log_q + jnp.log(jnp.float32(num_skills))


class Discriminator(nn.Module):
    """``features[..., F] -> logits[..., K]`` of ``q(z | s)``."""

    num_skills: int
    hidden_sizes: Tuple[int, ...]

    @nn.compact
    def __call__(self, features):
        return MLP(self.hidden_sizes, self.num_skills, activation=nn.relu)(features)


# --------------------------------------------------------------------------- learner
@struct.dataclass
class DIAYNConfig(SACBasedConfig):
    """SAC's config plus the discriminator's (sizes static, rates leaves)."""

    sac: SACConfig = SACConfig()
    disc_hidden: Tuple[int, ...] = struct.field(default=(64, 64), **static)
    disc_batch: int = struct.field(default=256, **static)
    disc_steps: int = struct.field(default=1, **static)  # discriminator steps per update
    disc_lr: float = 3e-4

    def validate(self) -> "DIAYNConfig":
        self.sac.validate()
        for name in ("disc_batch", "disc_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DIAYNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not float(self.disc_lr) > 0:
            raise ValueError(f"DIAYNConfig.disc_lr must be > 0, got {self.disc_lr}")
        return self


@struct.dataclass
class DIAYNState:
    sac: SACState  # its env runs SkillConditioned(env); its buffer's obs carry the one-hot skill
    disc_params: Any
    disc_opt: Any
    key: jax.Array


class DIAYN(SACBased):
    """DIAYN on ``env`` with ``num_skills`` skills (module doc).

    Args:
        feature_size: the discriminator sees ``obs[:feature_size]`` of the env's observation
            (``None``: all of it; 2 for the x-y prior on a point mass whose obs starts with x-y).
    """

    model_field = "disc_params"  # checked by the non-finite guard beside SAC's parameters

    def __init__(self, env: Env, num_skills: int, feature_size: Optional[int] = None,
                 resample_every: Optional[int] = None):
        if int(num_skills) < 2:
            raise ValueError(f"DIAYN needs num_skills >= 2, got {num_skills}")
        self.skill_env = SkillConditioned(env, num_skills, "categorical")
        self.num_skills = int(num_skills)
        base = self.skill_env.base_obs_size
        self.feature_size = base if feature_size is None else int(feature_size)
        if not 1 <= self.feature_size <= base:
            raise ValueError(f"feature_size must be in [1, {base}], got {feature_size}")
        self.sac = SAC(self.skill_env, resample_every)
        super().__init__()

    def features(self, obs: jax.Array) -> jax.Array:
        """``obs[..., obs_size + K] -> s[..., feature_size]``."""
        return obs[..., :self.feature_size]

    def skill(self, obs: jax.Array) -> jax.Array:
        """The one-hot skill ``[..., K]`` at the end of an observation."""
        return obs[..., self.skill_env.base_obs_size:]

    def discriminator(self, config: DIAYNConfig) -> Discriminator:
        return Discriminator(self.num_skills, tuple(config.disc_hidden))

    def logits(self, disc_params, config: DIAYNConfig, obs: jax.Array) -> jax.Array:
        """``q(.|s)`` logits ``[..., K]`` of full observations ``obs[..., obs_size + K]``."""
        return self.discriminator(config).apply(disc_params, self.features(obs))

    def _init(self, key: jax.Array, config: DIAYNConfig, space: ParamSpace) -> DIAYNState:
        sac_key, disc_key, key = jax.random.split(key, 3)
        disc_params = self.discriminator(config).init(
            disc_key, jnp.zeros((1, self.feature_size), jnp.float32))
        return DIAYNState(sac=self.sac._init(sac_key, config.sac, space), disc_params=disc_params,
                          disc_opt=optax.scale_by_adam().init(disc_params), key=key)

    def _disc_step(self, config, buffer, carry, key):
        params, opt = carry
        batch = replay.sample(buffer, key, config.disc_batch)

        def loss_fn(p):
            logits = self.logits(p, config, batch.next_obs)
            labels = self.skill(batch.next_obs)
            loss = -jnp.mean(jnp.sum(jax.nn.log_softmax(logits) * labels, axis=-1))
            accuracy = jnp.mean(jnp.argmax(logits, -1) == jnp.argmax(labels, -1))
            return loss, (accuracy, jnp.mean(pseudo_reward(logits, labels)))

        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        new_params, new_opt = adam_step(grads, opt, params, config.disc_lr)
        return (new_params, new_opt), (loss,) + aux

    def _update(self, state: DIAYNState, config: DIAYNConfig
                ) -> Tuple[DIAYNState, Dict[str, jax.Array]]:
        key, disc_key = jax.random.split(state.key)
        buffer = state.sac.buffer
        (disc_params, disc_opt), (loss, accuracy, reward) = jax.lax.scan(
            lambda c, k: self._disc_step(config, buffer, c, k),
            (state.disc_params, state.disc_opt), jax.random.split(disc_key, config.disc_steps))
        ready = buffer.size >= config.disc_batch  # before that, the samples are mostly zeros
        disc_params, disc_opt = jax.tree.map(lambda new, old: jnp.where(ready, new, old),
                                             (disc_params, disc_opt),
                                             (state.disc_params, state.disc_opt))

        def reward_fn(batch, _):
            return pseudo_reward(self.logits(disc_params, config, batch.next_obs),
                                 self.skill(batch.next_obs))

        sac_state, metrics = self.sac._update(state.sac, config.sac, reward_fn)
        # On the discriminator's replayed batches, before its step: the reward SAC is seeing.
        metrics.update(disc_loss=jnp.where(ready, jnp.mean(loss), 0.0),
                       disc_accuracy=jnp.where(ready, jnp.mean(accuracy), 0.0),
                       pseudo_reward=jnp.where(ready, jnp.mean(reward), 0.0))
        return state.replace(sac=sac_state, disc_params=disc_params, disc_opt=disc_opt,
                             key=key), metrics
