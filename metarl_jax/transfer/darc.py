"""Off-dynamics RL with domain classifiers (DARC; Eysenbach et al., ICLR 2021).

SAC trains in the **source** simulator on ``r + Δr``, where the reward correction

    Δr(s, a, s') = log q(t|s,a,s') - log q(s|s,a,s') - log q(t|s,a) + log q(s|s,a)
                 = log p_target(s'|s,a) - log p_source(s'|s,a)     (for Bayes-optimal classifiers)

penalizes transitions the target's physics would not produce. Two binary classifiers learn it from
source transitions (SAC's replay buffer) and a small budget of **target** transitions gathered by
the current policy (``target_envs`` envs, ``sac.num_steps`` steps each per update, from the
``target_space`` given to ``init``): ``q(t|s,a) = σ(z_sa)`` and ``q(t|s,a,s') = σ(z_sa + r)`` (the
paper's parameterization, so ``Δr = r``; ``z_sa`` is held fixed in the second loss), trained
``classifier_steps`` times per update by cross-entropy on inputs with Gaussian noise
``classifier_noise`` (the paper's regularizer). Δr enters SAC's sampled batches after
``delta_r_warmup`` source env steps, scaled by ``delta_r_coef`` (``0``: the source-only ablation,
same compiled program).

Four departures from the paper, all switchable, all for localized shifts (a wall that blocks a
thin band of transitions; ``experiments.domain_adaptation`` measured why):

* ``displacement_inputs`` (default on): the classifiers read ``(s, a, s' - s)``, each entry
  standardized by its mean and std over the target buffer (``input_stats``), instead of raw
  ``(s, a, s')``. Same information; but a shift that changes a step by a fraction of the state's
  range (a wall: 0.1 of a displacement, next to positions of scale 1) needed first-layer weights
  of tens to show in the logit, which Adam grows by ~``classifier_lr`` per step: measured, the
  raw-input residual told a blocked step from the free step it replaces by 2-5 nats after 16k
  classifier steps (< 1 halfway; Bayes: tens), so Δr was mostly a function of (s, a); with
  standardized displacements, 8-10 nats.
* ``max_delta_r`` (default 0): SAC reads ``min(Δr, max_delta_r)``. Under the source's dynamics
  ``E[Δr] = -KL(p_source(s'|s,a) || p_target(s'|s,a)) <= 0``; a large positive Δr on a source
  transition is the classifiers extrapolating where neither domain's data goes, and SAC exploits
  it (measured: one seed of five ran off to (-3.9, 3.7), Δr +19 per step there against a task
  reward of -5, target return -126). A cap keeps the penalty and removes that bonus.
* ``balance_sa`` (default on): the paper trains ``z_sa + r`` with the plain cross-entropy. Where
  only the source visits (s,a), ``z_sa`` is finite and that loss keeps pushing ``r`` down, so Δr
  drifts to large negative values exactly where the target data says nothing (measured: -4 beside
  and beyond a wall the target policy never passed, and the policy stopped short of it). Here
  ``r`` alone is trained on samples reweighted so both domains' (s,a) follow the target's (source
  weight ``exp(z_sa) = p_t(s,a)/p_s(s,a)``, ``_balanced``): the same minimizer ``log p_t(s'|s,a) -
  log p_s(s'|s,a)`` wherever the target has data, and no push where it has none.
* ``shared_noise`` (default off): the noise on ``s'`` is the noise on ``s`` plus
  ``displacement_noise``, so the regularizer smooths over *where* a transition happened but keeps
  *what it did* (the displacement ``s' - s``, which is all that tells a blocked step from a free
  one when the shift is a fraction of a step).

    darc = DARC(env)
    state = darc.init(key, config, source_space, target_space)
    state, metrics = darc.train_chunk(state, config, num_updates=100)

Shapes: ``obs [B, O]``, ``action [B, A]`` (squashed, as SAC stores it), logits ``[B]``.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos import sac_loss
from metarl_jax.algos.sac import SAC, SACBased, SACBasedConfig, SACConfig, SACState, adam_step
from metarl_jax.core import replay
from metarl_jax.core.env import Env
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset, EpisodeStats
from metarl_jax.nets.mlp import MLP
from metarl_jax.randomization.param_space import ParamDistribution

static = dict(pytree_node=False)


def delta_r(log_q_target_sas: jax.Array, log_q_source_sas: jax.Array,
            log_q_target_sa: jax.Array, log_q_source_sa: jax.Array) -> jax.Array:
    """DARC's reward correction ``[B]`` from the classifiers' log-probabilities ``[B]``
    (module doc)."""
    return log_q_target_sas - log_q_source_sas - log_q_target_sa + log_q_source_sa


def delta_r_from_logits(logit_sa: jax.Array, logit_sas: jax.Array) -> jax.Array:
    """``delta_r`` for ``q(t|s,a) = σ(logit_sa)``, ``q(t|s,a,s') = σ(logit_sas)`` ``[B]``."""
    return delta_r(jax.nn.log_sigmoid(logit_sas), jax.nn.log_sigmoid(-logit_sas),
                   jax.nn.log_sigmoid(logit_sa), jax.nn.log_sigmoid(-logit_sa))


class DomainClassifiers(nn.Module):
    """``(obs, action, next_obs) -> (z_sa[...], z_sa + z_sas[...])``: the logits of
    ``q(target|s,a)`` and ``q(target|s,a,s')`` (the three inputs as ``DARC.classifier_inputs``
    makes them: raw, or standardized with the displacement in place of ``next_obs``)."""

    hidden_sizes: Tuple[int, ...]

    @nn.compact
    def __call__(self, obs, action, next_obs):
        sa = jnp.concatenate([obs, action], axis=-1)
        z_sa = MLP(self.hidden_sizes, 1, activation=nn.relu, name="sa")(sa)[..., 0]
        z_sas = MLP(self.hidden_sizes, 1, activation=nn.relu, name="sas")(
            jnp.concatenate([sa, next_obs], axis=-1))[..., 0]
        # The s,a,s' loss trains only the residual: where the (s,a) classifier already explains
        # the data (e.g. states only the source visits) the residual, i.e. Δr, stays near 0
        # instead of being dragged along by extrapolation.
        return z_sa, jax.lax.stop_gradient(z_sa) + z_sas


class Transitions(NamedTuple):
    """Target transitions as the classifiers read them (leaves ``[...]`` / ``[capacity, ...]``)."""

    obs: jax.Array  # [O]
    action: jax.Array  # [A] squashed in [-1, 1]
    next_obs: jax.Array  # [O], before any auto-reset


@struct.dataclass
class DARCConfig(SACBasedConfig):
    """SAC's config plus the classifiers'. Sizes static; rates and ``delta_r_coef`` leaves."""

    sac: SACConfig = SACConfig()
    target_envs: int = struct.field(default=1, **static)  # target steps per update / num_steps
    target_buffer_size: int = struct.field(default=20_000, **static)
    classifier_steps: int = struct.field(default=1, **static)  # per update
    classifier_batch: int = struct.field(default=128, **static)
    delta_r_warmup: int = struct.field(default=2_000, **static)  # source env steps without Δr
    classifier_noise: float = 0.05  # std of the Gaussian noise on classifier inputs
    classifier_lr: float = 3e-4
    delta_r_coef: float = 1.0
    shared_noise: bool = struct.field(default=False, **static)  # s' noise = s noise + own
    displacement_noise: float = 0.01  # std of s' noise beyond s's (with shared_noise)
    balance_sa: bool = struct.field(default=True, **static)  # s,a,s' loss on the target's (s,a)
    max_sa_weight: float = 20.0  # clip of the source samples' weight p_t(s,a) / p_s(s,a)
    displacement_inputs: bool = struct.field(default=True, **static)  # (s, a, s'-s) standardized
    max_delta_r: float = 0.0  # SAC reads min(Δr, max_delta_r); inf: the paper's uncapped Δr

    @property
    def target_budget(self) -> int:
        """Target env steps over the whole run."""
        return self.target_envs * self.sac.num_steps * self.sac.num_updates

    def validate(self) -> "DARCConfig":
        self.sac.validate()
        for name in ("target_envs", "classifier_steps", "classifier_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DARCConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.target_buffer_size < max(self.classifier_batch,
                                         self.target_envs * self.sac.num_steps):
            raise ValueError(f"DARCConfig.target_buffer_size = {self.target_buffer_size} must "
                             f"hold a classifier batch and one update's target transitions")
        if not (float(self.classifier_noise) >= 0 and float(self.classifier_lr) > 0
                and float(self.delta_r_coef) >= 0 and float(self.max_delta_r) >= 0):
            raise ValueError("DARCConfig: need classifier_noise >= 0, classifier_lr > 0, "
                             "delta_r_coef >= 0 and max_delta_r >= 0")
        return self


@struct.dataclass
class DARCState:
    sac: SACState
    classifier: Any  # DomainClassifiers params
    classifier_opt: Any  # Adam moments
    target_buffer: replay.ReplayBuffer  # Transitions from the target
    target_env_state: Any  # [target_envs, ...]
    target_obs: jax.Array  # [target_envs, O]
    target_space: ParamDistribution
    key: jax.Array


class DARC(SACBased):
    """SAC in the source with DARC's reward correction (module doc)."""

    model_field = "classifier"  # checked by the non-finite guard beside SAC's parameters

    def __init__(self, env: Env, classifier_sizes: Tuple[int, ...] = (64, 64)):
        self.env = env
        self.sac = SAC(env)
        self.target_env = EpisodeStats(AutoReset(env))
        self.classifiers = DomainClassifiers(tuple(classifier_sizes))
        super().__init__()

    def _init(self, key: jax.Array, config: DARCConfig, source_space: ParamDistribution,
              target_space: ParamDistribution) -> DARCState:
        sac_key, clf_key, env_key, key = jax.random.split(key, 4)
        sac_state = self.sac._init(sac_key, config.sac, source_space)
        obs_size, action_size = self.env.observation_size, self.sac.action_size
        obs, action = jnp.zeros((1, obs_size)), jnp.zeros((1, action_size))
        classifier = self.classifiers.init(clf_key, obs, action, obs)
        env_state, target_obs = reset_batch(self.target_env, env_key, target_space,
                                            config.target_envs)
        example = Transitions(obs[0], action[0], obs[0])
        return DARCState(sac=sac_state, classifier=classifier,
                         classifier_opt=optax.scale_by_adam().init(classifier),
                         target_buffer=replay.init(example, config.target_buffer_size),
                         target_env_state=env_state, target_obs=target_obs,
                         target_space=target_space, key=key)

    @staticmethod
    def input_stats(target_buffer: replay.ReplayBuffer) -> Tuple[jax.Array, jax.Array]:
        """Mean and std ``[2 O + A]`` of ``(s, a, s' - s)`` over the filled slots of the target
        buffer (``displacement_inputs``; a constant entry gets std ~1e-3, not 0)."""
        d = target_buffer.data
        x = jnp.concatenate([d.obs, d.action, d.next_obs - d.obs], axis=-1)  # [capacity, F]
        filled = (jnp.arange(x.shape[0]) < target_buffer.size)[:, None]
        n = jnp.maximum(target_buffer.size, 1).astype(x.dtype)
        mean = jnp.sum(jnp.where(filled, x, 0.0), axis=0) / n
        var = jnp.sum(jnp.where(filled, jnp.square(x - mean), 0.0), axis=0) / n
        return mean, jnp.sqrt(var + 1e-6)

    @staticmethod
    def classifier_inputs(stats, obs, action, next_obs) -> Tuple[jax.Array, ...]:
        """The classifiers' three inputs ``[B, O], [B, A], [B, O]``: ``(s, a, s')`` as given when
        ``stats`` is None, else ``(s, a, s' - s)`` standardized by ``stats = (mean, std)``
        (``input_stats``)."""
        if stats is None:
            return obs, action, next_obs
        mean, std = stats
        x = (jnp.concatenate([obs, action, next_obs - obs], axis=-1) - mean) / std
        o, a = obs.shape[-1], action.shape[-1]
        return x[..., :o], x[..., o:o + a], x[..., o + a:]

    def delta_r(self, classifier: Any, obs, action, next_obs, stats=None) -> jax.Array:
        """Δr ``[B]`` of the current classifiers on clean inputs (``stats``: as
        ``classifier_inputs``; the ones the classifiers were trained with)."""
        z_sa, z_sas = self.classifiers.apply(
            classifier, *self.classifier_inputs(stats, obs, action, next_obs))
        return delta_r_from_logits(z_sa, z_sas)

    def state_input_stats(self, state: DARCState, config: DARCConfig):
        """The ``stats`` argument of ``delta_r`` for ``state``'s classifiers (None: raw)."""
        return self.input_stats(state.target_buffer) if config.displacement_inputs else None

    @staticmethod
    def _balanced(sas_loss: jax.Array, z_sa: jax.Array, labels: jax.Array,
                  max_weight: float) -> jax.Array:
        """Per-sample losses ``[2B]`` of the residual logit ``r = Δr`` reweighted so that both
        domains' (s,a) follow the target's: a source sample gets ``w = p_t(s,a) / p_s(s,a) =
        exp(z_sa)`` (clipped at ``max_weight``, normalized to mean 1 over the source half), a
        target sample 1. Then ``r`` is a classifier of s' given (s,a) and its minimizer is
        ``log p_t(s'|s,a) - log p_s(s'|s,a)``, the paper's optimum, wherever the target has
        data; at (s,a) only the source visits the weight is ~0, so the confidence-seeking
        cross-entropy no longer drives Δr towards -inf there (module doc)."""
        source = 1.0 - labels
        w = jnp.minimum(jnp.exp(z_sa), max_weight) * source
        w = w / jnp.maximum(jnp.sum(w), 1e-8) * jnp.sum(source)
        return sas_loss * (w + labels)

    def _classifier_step(self, config: DARCConfig, source_buffer, target_buffer, carry, key,
                         stats=None):
        classifier, opt_state = carry
        source_key, target_key, noise_key = jax.random.split(key, 3)
        source = replay.sample(source_buffer, source_key, config.classifier_batch)
        target = replay.sample(target_buffer, target_key, config.classifier_batch)
        inputs = [jnp.concatenate([getattr(source, f), getattr(target, f)])
                  for f in ("obs", "action", "next_obs")]
        noise_keys = jax.random.split(noise_key, 3)
        noise = [config.classifier_noise * jax.random.normal(k, x.shape, x.dtype)
                 for x, k in zip(inputs, noise_keys)]
        if config.shared_noise:  # s' moves with s: smooth over where, keep what the step did
            noise[2] = noise[0] + config.displacement_noise * noise[2] / jnp.maximum(
                config.classifier_noise, 1e-12)
        inputs = self.classifier_inputs(stats, *(x + n for x, n in zip(inputs, noise)))
        labels = jnp.concatenate([jnp.zeros(config.classifier_batch),
                                  jnp.ones(config.classifier_batch)])

        def loss_fn(params):
            z_sa, z_sas = self.classifiers.apply(params, *inputs)
            if config.balance_sa:  # the residual alone, on balanced (s,a): see _balanced
                z_sa_fixed = jax.lax.stop_gradient(z_sa)
                sas_loss = self._balanced(
                    optax.sigmoid_binary_cross_entropy(z_sas - z_sa_fixed, labels), z_sa_fixed,
                    labels, config.max_sa_weight)
            else:
                sas_loss = optax.sigmoid_binary_cross_entropy(z_sas, labels)
            loss = (jnp.mean(optax.sigmoid_binary_cross_entropy(z_sa, labels))
                    + jnp.mean(sas_loss))
            return loss, jnp.mean((z_sas > 0) == (labels > 0.5))

        (loss, accuracy), grads = jax.value_and_grad(loss_fn, has_aux=True)(classifier)
        classifier, opt_state = adam_step(grads, opt_state, classifier, config.classifier_lr)
        return (classifier, opt_state), dict(classifier_loss=loss, classifier_accuracy=accuracy)

    def _update(self, state: DARCState, config: DARCConfig) -> Tuple[DARCState, Dict]:
        key, rollout_key, clf_key = jax.random.split(state.key, 3)
        sac, cfg = self.sac, config.sac
        env_steps = state.sac.update_step * cfg.steps_per_update
        actor = sac.actor(cfg)

        def target_policy(k, obs):  # SAC's behaviour: uniform during its warm-up
            policy_key, uniform_key = jax.random.split(k)
            squashed, _ = sac_loss.sample_tanh_gaussian(
                policy_key, *actor.apply(state.sac.params["actor"], obs))
            uniform = jax.random.uniform(uniform_key, squashed.shape, minval=-1.0, maxval=1.0)
            squashed = jnp.where(env_steps < cfg.learning_starts, uniform, squashed)
            return sac.to_env_action(squashed), {"squashed": squashed}

        carry, traj = rollout(target_policy, self.target_env, rollout_key, state.target_env_state,
                              state.target_obs, state.target_space, cfg.num_steps)
        flat = lambda x: x.reshape((-1,) + x.shape[2:])
        target_buffer = replay.add(state.target_buffer, Transitions(
            flat(traj.obs), flat(traj.extras["squashed"]), flat(traj.final_obs)))

        ready = ((state.sac.buffer.size >= config.classifier_batch)
                 & (target_buffer.size >= config.classifier_batch))

        stats = self.input_stats(target_buffer) if config.displacement_inputs else None

        def train_classifiers(c):
            keys = jax.random.split(clf_key, config.classifier_steps)
            step = lambda c, k: self._classifier_step(config, state.sac.buffer, target_buffer,
                                                      c, k, stats)
            c, step_metrics = jax.lax.scan(step, c, keys)
            return c, jax.tree.map(jnp.mean, step_metrics)

        clf_carry = (state.classifier, state.classifier_opt)
        skipped = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                               jax.eval_shape(train_classifiers, clf_carry)[1])
        (classifier, classifier_opt), clf_metrics = jax.lax.cond(
            ready, train_classifiers, lambda c: (c, skipped), clf_carry)

        coef = config.delta_r_coef * (env_steps >= config.delta_r_warmup).astype(jnp.float32)

        def corrected_reward(batch, _key):
            correction = self.delta_r(classifier, batch.obs, batch.action, batch.next_obs, stats)
            return batch.reward + coef * jnp.minimum(correction, config.max_delta_r)

        sac_state, metrics = sac._update(state.sac, cfg, corrected_reward)
        recent = replay.sample(sac_state.buffer, clf_key, config.classifier_batch)
        metrics.update(clf_metrics)
        metrics["delta_r_mean"] = jnp.mean(self.delta_r(classifier, recent.obs, recent.action,
                                                        recent.next_obs, stats))
        metrics["target_episode_return"] = jnp.mean(carry.env_state.last_return)
        return state.replace(sac=sac_state, classifier=classifier, classifier_opt=classifier_opt,
                             target_buffer=target_buffer, target_env_state=carry.env_state,
                             target_obs=carry.obs, key=key), metrics
