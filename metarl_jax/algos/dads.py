"""DADS, "Dynamics-Aware Unsupervised Discovery of Skills" (Sharma et al. 2020), and its
latent-space planner.

    dads = DADS(env, skill_size=2, feature_size=2)
    state = dads.init(key, config, space)
    state, metrics = dads.train_chunk(state, config, num_updates=100)

Continuous skills ``z ~ U[-1, 1]^D`` are drawn per episode and appended to the observation
(``diayn.SkillConditioned``). A skill-dynamics model ``q(ds | s, z) = N(mu(s, z),
diag sigma(s, z)^2)`` over the change of the features ``ds = s' - s`` (``s = obs[:feature_size]``)
is fit by maximum likelihood on replayed transitions, and SAC's reward is the intrinsic reward
with ``L`` prior samples ``z_1..z_L`` (drawn afresh for every transition)::

    r(s, z, s') = log q(ds | s, z) - log( (q(ds | s, z) + sum_l q(ds | s, z_l)) / (L + 1) )

-- the paper's ``log q(ds|s,z) - log mean_l q(ds|s,z_l)`` with the true skill counted among the
alternatives, as the authors' code does, so the reward is bounded by ``ln(L + 1)`` and stays
finite when ``q`` sharpens. Relabelled at every gradient step with the current model.

Planning (``plan_to_goal``, the paper's Algorithm 2): every ``steps_per_skill`` env steps, MPPI
(``algos.mppi``) refines a sequence of ``horizon`` skills, scoring each candidate by rolling the
model's mean ``s <- s + mu(s, z)`` forward and summing distances to the goal; the first skill is
executed by the skill policy, the rest warm-start the next plan.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos.diayn import SkillConditioned
from metarl_jax.algos.mppi import MPPIConfig, mppi
from metarl_jax.algos.sac import SAC, SACBased, SACBasedConfig, SACConfig, SACState, adam_step
from metarl_jax.core import replay
from metarl_jax.core.env import Env
from metarl_jax.nets.mlp import MLP
from metarl_jax.randomization.param_space import ParamSpace
from metarl_jax.transfer.skills import run_skill_sequence

static = dict(pytree_node=False)
_LOG_2PI = 1.8378770664093453


def gaussian_log_prob(x: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """``log N(x; mean, diag exp(log_std)^2)`` ``[...]`` of ``[..., F]`` inputs."""
    z = (x - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * z**2 - log_std - 0.5 * _LOG_2PI, axis=-1)


def dads_reward(log_q: jax.Array, log_q_alt: jax.Array) -> jax.Array:
    """Intrinsic reward ``[...]`` (module doc) from ``log_q[...] = log q(ds|s,z)`` and
    ``log_q_alt[..., L] = log q(ds|s,z_l)``; at most ``ln(L + 1)``."""
    num_alt = log_q_alt.shape[-1]
    all_q = jnp.concatenate([log_q[..., None], log_q_alt], axis=-1)
    return log_q - jax.nn.logsumexp(all_q, axis=-1) + jnp.log(jnp.float32(num_alt + 1))


class SkillDynamics(nn.Module):
    """``(s[..., F], z[..., D]) -> (mean[..., F], log_std[..., F])`` of ``q(ds | s, z)``; the
    log-std is squashed into ``[log min_std, log max_std]``."""

    feature_size: int
    hidden_sizes: Tuple[int, ...]
    min_std: float = 0.01
    max_std: float = 1.0

    @nn.compact
    def __call__(self, features, skill):
        x = jnp.concatenate([features, skill], axis=-1)
        out = MLP(self.hidden_sizes, 2 * self.feature_size, activation=nn.relu)(x)
        mean, raw = jnp.split(out, 2, axis=-1)
        lo, hi = jnp.log(self.min_std), jnp.log(self.max_std)
        return mean, lo + 0.5 * (hi - lo) * (jnp.tanh(raw) + 1.0)


def split_obs(obs: jax.Array, next_obs: jax.Array, base_obs_size: int, feature_size: int):
    """``(s[..., F], z[..., D], ds[..., F])`` of ``SkillConditioned`` observations."""
    s = obs[..., :feature_size]
    return s, obs[..., base_obs_size:], next_obs[..., :feature_size] - s


def dynamics_step(model: SkillDynamics, params, opt, batch, base_obs_size: int, lr):
    """One Adam step of the negative log-likelihood on a replayed ``batch`` (``obs``,
    ``next_obs`` ``[B, obs_size + D]``): ``((params, opt), (loss, r2))`` with ``r2`` the
    coefficient of determination of the mean on the batch (before the step)."""
    s, z, ds = split_obs(batch.obs, batch.next_obs, base_obs_size, model.feature_size)

    def loss_fn(p):
        mean, log_std = model.apply(p, s, z)
        return -jnp.mean(gaussian_log_prob(ds, mean, log_std)), r_squared(ds, mean)

    (loss, r2), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    return adam_step(grads, opt, params, lr), (loss, r2)


def r_squared(target: jax.Array, prediction: jax.Array) -> jax.Array:
    """``1 - SSE / SST`` ``[]`` over ``[N, F]`` arrays (summed over the ``F`` outputs)."""
    sse = jnp.sum((target - prediction) ** 2)
    sst = jnp.sum((target - jnp.mean(target, axis=0)) ** 2)
    return 1.0 - sse / jnp.maximum(sst, 1e-12)


def fit_dynamics(key: jax.Array, model: SkillDynamics, buffer: replay.ReplayBuffer,
                 base_obs_size: int, num_steps: int, batch_size: int, lr: float = 1e-3):
    """A fresh skill-dynamics model fit on ``buffer``'s transitions (any ``SkillConditioned``
    learner's replay, e.g. DIAYN's with one-hot skills): ``(params, losses[num_steps])``."""
    init_key, key = jax.random.split(key)
    obs = buffer.data.obs[0]
    params = model.init(init_key, obs[None, :model.feature_size], obs[None, base_obs_size:])

    def step(carry, k):
        batch = replay.sample(buffer, k, batch_size)
        carry, (loss, _) = dynamics_step(model, *carry, batch, base_obs_size, lr)
        return carry, loss

    (params, _), losses = jax.lax.scan(step, (params, optax.scale_by_adam().init(params)),
                                       jax.random.split(key, num_steps))
    return params, losses


# --------------------------------------------------------------------------- learner
@struct.dataclass
class DADSConfig(SACBasedConfig):
    sac: SACConfig = SACConfig()
    dyn_hidden: Tuple[int, ...] = struct.field(default=(64, 64), **static)
    dyn_batch: int = struct.field(default=256, **static)
    dyn_steps: int = struct.field(default=1, **static)  # model steps per update
    num_prior_samples: int = struct.field(default=16, **static)  # L
    min_std: float = struct.field(default=0.01, **static)
    dyn_lr: float = 3e-4

    def validate(self) -> "DADSConfig":
        self.sac.validate()
        for name in ("dyn_batch", "dyn_steps", "num_prior_samples"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DADSConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (float(self.dyn_lr) > 0 and 0 < float(self.min_std) < 1):
            raise ValueError(f"DADSConfig needs dyn_lr > 0 and 0 < min_std < 1, got "
                             f"{self.dyn_lr}, {self.min_std}")
        return self


@struct.dataclass
class DADSState:
    sac: SACState
    dyn_params: Any
    dyn_opt: Any
    key: jax.Array


class DADS(SACBased):
    """DADS on ``env`` with ``skill_size``-dimensional skills (module doc); the model predicts
    the change of ``obs[:feature_size]`` (``None``: the whole observation)."""

    model_field = "dyn_params"  # checked by the non-finite guard beside SAC's parameters

    def __init__(self, env: Env, skill_size: int, feature_size: Optional[int] = None,
                 resample_every: Optional[int] = None):
        self.skill_env = SkillConditioned(env, skill_size, "uniform")
        base = self.skill_env.base_obs_size
        self.feature_size = base if feature_size is None else int(feature_size)
        if not 1 <= self.feature_size <= base:
            raise ValueError(f"feature_size must be in [1, {base}], got {feature_size}")
        self.skill_size = int(skill_size)
        self.sac = SAC(self.skill_env, resample_every)
        super().__init__()

    def dynamics(self, config: DADSConfig) -> SkillDynamics:
        return SkillDynamics(self.feature_size, tuple(config.dyn_hidden), config.min_std)

    def _init(self, key: jax.Array, config: DADSConfig, space: ParamSpace) -> DADSState:
        sac_key, dyn_key, key = jax.random.split(key, 3)
        dyn_params = self.dynamics(config).init(
            dyn_key, jnp.zeros((1, self.feature_size)), jnp.zeros((1, self.skill_size)))
        return DADSState(sac=self.sac._init(sac_key, config.sac, space), dyn_params=dyn_params,
                         dyn_opt=optax.scale_by_adam().init(dyn_params), key=key)

    def reward(self, dyn_params, config: DADSConfig, obs, next_obs, key) -> jax.Array:
        """Intrinsic reward ``[B]`` of transitions ``obs, next_obs[B, obs_size + D]``."""
        model = self.dynamics(config)
        s, z, ds = split_obs(obs, next_obs, self.skill_env.base_obs_size, self.feature_size)
        log_q = gaussian_log_prob(ds, *model.apply(dyn_params, s, z))
        alt = self.skill_env.sample_skills(key, (config.num_prior_samples, s.shape[0]))
        alt_mean, alt_log_std = model.apply(dyn_params, jnp.broadcast_to(s, (alt.shape[0],)
                                                                          + s.shape), alt)
        log_q_alt = gaussian_log_prob(ds, alt_mean, alt_log_std)  # [L, B]
        return dads_reward(log_q, log_q_alt.T)

    def _update(self, state: DADSState, config: DADSConfig
                ) -> Tuple[DADSState, Dict[str, jax.Array]]:
        key, dyn_key = jax.random.split(state.key)
        buffer, model = state.sac.buffer, self.dynamics(config)

        def step(carry, k):
            batch = replay.sample(buffer, k, config.dyn_batch)
            return dynamics_step(model, *carry, batch, self.skill_env.base_obs_size,
                                 config.dyn_lr)

        (dyn_params, dyn_opt), (loss, r2) = jax.lax.scan(
            step, (state.dyn_params, state.dyn_opt), jax.random.split(dyn_key, config.dyn_steps))
        ready = buffer.size >= config.dyn_batch
        dyn_params, dyn_opt = jax.tree.map(lambda new, old: jnp.where(ready, new, old),
                                           (dyn_params, dyn_opt), (state.dyn_params, state.dyn_opt))

        def reward_fn(batch, k):
            return self.reward(dyn_params, config, batch.obs, batch.next_obs, k)

        sac_state, metrics = self.sac._update(state.sac, config.sac, reward_fn)
        metrics.update(dyn_loss=jnp.where(ready, jnp.mean(loss), 0.0),
                       dyn_r2=jnp.where(ready, jnp.mean(r2), 0.0))
        return state.replace(sac=sac_state, dyn_params=dyn_params, dyn_opt=dyn_opt,
                             key=key), metrics



# --------------------------------------------------------------------------- planning
@struct.dataclass
class PlannerConfig:
    horizon: int = struct.field(default=3, **static)  # skills planned ahead (H_P)
    steps_per_skill: int = struct.field(default=10, **static)  # env steps per skill (H_z)
    num_replans: int = struct.field(default=5, **static)
    mppi: MPPIConfig = MPPIConfig()


def plan_to_goal(key: jax.Array, act: Callable, env: SkillConditioned, params: Any,
                 predict: Callable, goal: jax.Array, config: PlannerConfig,
                 to_skill: Callable = lambda x: jnp.clip(x, -1.0, 1.0),
                 plan_size: Optional[int] = None):
    """Latent-space MPC towards ``goal[F]`` (module doc) from the env's reset state.

    ``predict(s[F], z[D]) -> ds[F]`` is the skill-dynamics mean (e.g. ``lambda s, z:
    model.apply(dyn_params, s, z)[0]``); ``act(key, obs_with_skill)`` the skill policy.
    ``to_skill`` maps a planner variable ``[plan_size]`` to the skill fed to the policy and the
    model (default: continuous skills clipped to ``[-1, 1]``; for DIAYN's categorical skills,
    ``one_hot(argmax)`` over ``K`` logits). Returns ``features[num_replans * steps_per_skill +
    1, F]``, the executed path starting at the reset state."""
    plan_size = env.skill_size if plan_size is None else int(plan_size)
    reset_key, key = jax.random.split(key)
    state, obs = env.reset_with_skill(reset_key, params, jnp.zeros(env.skill_size))
    feature_size = goal.shape[-1]

    def cost_fn(s0):
        def cost(seq):
            def one_skill(s, x):
                z = to_skill(x)

                def step(s, _):
                    s = s + predict(s, z)
                    return s, jnp.sqrt(jnp.sum((s - goal) ** 2))

                return jax.lax.scan(step, s, None, length=config.steps_per_skill)

            _, dist = jax.lax.scan(one_skill, s0, seq)
            return jnp.sum(dist)

        return cost

    def replan(carry, k):
        state, obs, mean = carry
        plan_key, run_key = jax.random.split(k)
        s0 = obs[:feature_size]
        mean, _ = mppi(plan_key, cost_fn(s0), mean, config.mppi)
        state, obs, _, feats = run_skill_sequence(act, env, params, state, obs,
                                                  to_skill(mean[:1]), config.steps_per_skill,
                                                  run_key)
        shifted = jnp.concatenate([mean[1:], jnp.zeros_like(mean[:1])])
        return (state, obs, shifted), feats[:, :feature_size]

    init = (state, obs, jnp.zeros((config.horizon, plan_size)))
    _, feats = jax.lax.scan(replan, init, jax.random.split(key, config.num_replans))
    return jnp.concatenate([obs[None, :feature_size], feats.reshape(-1, feature_size)])
