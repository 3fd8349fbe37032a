"""Domain-adversarial features for RL (DANN; Ganin & Lempitsky 2015, Ganin et al. 2016).

The policy sees observations through an encoder ``f``; SAC trains encoder and head on **source**
rewards, while a domain classifier ``D`` learns to tell ``f(source obs)`` from ``f(target obs)``
and the encoder, through a gradient-reversal layer, learns to make them indistinguishable. The
target side needs only **unlabelled observations**; target rewards are never read (they are only
logged, as ``target_episode_return``, to watch transfer).

Where the observations come from matters. Aligning *marginals* is only sound when the two domains'
observation distributions differ by the sensor alone, so both streams are gathered under the same
behaviour: ``explore_envs`` envs per domain acting uniformly at random from the same start
distribution (``behaviour="uniform"``, the default). With ``behaviour="policy"`` the target
stream comes from the current policy and the source stream from SAC's replay buffer, as in
"adapt while acting": then the target marginal depends on the not-yet-adapted policy, and a wrong
alignment can be self-consistent (the target policy parks where the misaligned features say "goal",
and that cluster is what gets aligned with the source's goal cluster).

    dann = DANN(env)                                          # same env, two Params
    state = dann.init(key, config, source_space, target_space)
    state, metrics = dann.train_chunk(state, config, num_updates=100)

One update = SAC's update on the source (``algos/sac.py``, unchanged, with the actor
``EncodedActor``), one step of ``explore_envs`` envs in each domain whose observations go to
observation buffers, then ``domain_steps`` adversarial steps on batches of source and target
observations:

    L_D = BCE(D(R(f(o_s))), 0) + BCE(D(R(f(o_t))), 1),   R = gradient reversal with coefficient λ

``D`` descends ``L_D``; ``f`` receives ``-λ dL_D/df`` (it ascends the classifier's loss).
``domain_coef = 0`` turns the adversary off (the "no adaptation" ablation, same program).

Shapes: obs ``[B, obs_size]``, features ``[B, feature_size]``, logits ``[B]``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos import sac_loss
from metarl_jax.algos.sac import (
    SAC,
    Actor,
    SACBased,
    SACBasedConfig,
    SACConfig,
    SACState,
    adam_step,
)
from metarl_jax.core import replay
from metarl_jax.core.env import Env
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset, EpisodeStats
from metarl_jax.nets.mlp import MLP
from metarl_jax.randomization.param_space import ParamDistribution

static = dict(pytree_node=False)
DOMAINS = ("source", "target")


# ------------------------------------------------------------------------- gradient reversal
@jax.custom_vjp
def gradient_reversal(x: jax.Array, coef: jax.Array) -> jax.Array:
    """Identity forward; the backward pass multiplies the incoming gradient by ``-coef``
    (no gradient flows to ``coef``). ``x``: any shape, ``coef``: ``[]``."""
    return x


def _reversal_fwd(x, coef):
    return x, coef


def _reversal_bwd(coef, g):
    return (-coef * g, jnp.zeros_like(coef))


gradient_reversal.defvjp(_reversal_fwd, _reversal_bwd)


# ------------------------------------------------------------------------- networks
class EncodedActor(nn.Module):
    """SAC's tanh-Gaussian actor behind an encoder: ``obs[..., obs_size] -> (mean, log_std)``
    ``[..., A]`` via ``features = encode(obs)`` ``[..., feature_size]``."""

    action_size: int
    hidden_sizes: Tuple[int, ...]
    encoder_sizes: Tuple[int, ...]
    feature_size: int

    def setup(self):
        self.encoder = MLP(self.encoder_sizes, self.feature_size, activation=nn.relu)
        self.head = Actor(self.action_size, self.hidden_sizes)

    def encode(self, obs):
        return self.encoder(obs)

    def __call__(self, obs):
        return self.head(self.encode(obs))


class DomainClassifier(nn.Module):
    """``features[..., F] -> logit[...]`` of "target" (1) against "source" (0)."""

    hidden_sizes: Tuple[int, ...]

    @nn.compact
    def __call__(self, features):
        return MLP(self.hidden_sizes, 1, activation=nn.relu)(features)[..., 0]


def domain_loss(logits_source: jax.Array, logits_target: jax.Array
                ) -> Tuple[jax.Array, jax.Array]:
    """``(L_D [], accuracy [])`` of the classifier's logits ``[B]`` on both domains (module
    doc): mean binary cross-entropy over the two halves, and the fraction classified right."""
    loss = (jnp.mean(optax.sigmoid_binary_cross_entropy(logits_source, 0.0))
            + jnp.mean(optax.sigmoid_binary_cross_entropy(logits_target, 1.0)))
    accuracy = 0.5 * (jnp.mean(logits_source < 0) + jnp.mean(logits_target >= 0))
    return 0.5 * loss, accuracy


class EncodedSAC(SAC):
    """SAC whose actor is an ``EncodedActor`` (the critics keep the raw observation: they only
    ever see the source domain, where rewards are)."""

    def __init__(self, env: Env, encoder_sizes: Tuple[int, ...] = (64,), feature_size: int = 8):
        self.encoder_sizes, self.feature_size = tuple(encoder_sizes), int(feature_size)
        super().__init__(env)

    def actor(self, config: SACConfig) -> EncodedActor:
        return EncodedActor(self.action_size, tuple(config.hidden_sizes), self.encoder_sizes,
                            self.feature_size)


# ------------------------------------------------------------------------- learner
@struct.dataclass
class DANNConfig(SACBasedConfig):
    """SAC's config plus the adversary's. Sizes static, rates leaves (``domain_coef`` too, so
    the no-adaptation ablation ``domain_coef=0`` reuses the compiled program)."""

    sac: SACConfig = SACConfig()
    explore_envs: int = struct.field(default=8, **static)  # envs per domain feeding the buffers
    behaviour: str = struct.field(default="uniform", **static)  # uniform | policy (module doc)
    obs_buffer_size: int = struct.field(default=20_000, **static)
    domain_steps: int = struct.field(default=4, **static)  # adversarial steps per update
    domain_batch: int = struct.field(default=128, **static)
    domain_coef: float = 1.0  # λ of the gradient reversal
    domain_lr: float = 1e-3

    def validate(self) -> "DANNConfig":
        self.sac.validate()
        for name in ("explore_envs", "domain_steps", "domain_batch"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DANNConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.behaviour not in ("uniform", "policy"):
            raise ValueError(f"DANNConfig.behaviour must be 'uniform' or 'policy', got "
                             f"{self.behaviour!r}")
        if self.obs_buffer_size < max(self.domain_batch, self.explore_envs):
            raise ValueError(f"DANNConfig.obs_buffer_size = {self.obs_buffer_size} must "
                             f"hold a domain batch and one update's observations")
        if not float(self.domain_coef) >= 0.0 or not float(self.domain_lr) > 0.0:
            raise ValueError(f"DANNConfig: need domain_coef >= 0 and domain_lr > 0, got "
                             f"{self.domain_coef}, {self.domain_lr}")
        return self


@struct.dataclass
class DANNState:
    sac: SACState
    classifier: Any  # DomainClassifier params
    opt_state: Any  # {"encoder", "classifier"}: Adam moments of the adversarial steps
    obs_buffers: Any  # {"source", "target"}: ReplayBuffer of observations [capacity, obs_size]
    env_states: Any  # {"source", "target"}: [explore_envs, ...] exploring envs
    obs: Any  # {"source", "target"}: [explore_envs, obs_size]
    spaces: Any  # {"source", "target"}: ParamDistribution
    key: jax.Array


class DANN(SACBased):
    """SAC on the source with a domain-adversarial encoder (module doc). Static structure only:
    the env (both domains are ``Params`` of it), the network sizes."""

    model_field = "classifier"  # checked by the non-finite guard beside SAC's parameters

    def __init__(self, env: Env, encoder_sizes: Tuple[int, ...] = (64,), feature_size: int = 8,
                 classifier_sizes: Tuple[int, ...] = (64, 64)):
        self.env = env
        self.sac = EncodedSAC(env, encoder_sizes, feature_size)
        self.explore_env = EpisodeStats(AutoReset(env))
        self.classifier_net = DomainClassifier(tuple(classifier_sizes))
        super().__init__()

    def encoder(self, config: DANNConfig):
        return self.sac.actor(config.sac)

    def features(self, actor_params: Any, config: DANNConfig, obs: jax.Array) -> jax.Array:
        """``f(obs)``: ``[..., feature_size]`` for ``obs[..., obs_size]``."""
        return self.encoder(config).apply(actor_params, obs, method=EncodedActor.encode)

    def _init(self, key: jax.Array, config: DANNConfig, source_space: ParamDistribution,
              target_space: ParamDistribution) -> DANNState:
        sac_key, clf_key, env_key, key = jax.random.split(key, 4)
        sac_state = self.sac._init(sac_key, config.sac, source_space)
        encoder = sac_state.params["actor"]["params"]["encoder"]
        classifier = self.classifier_net.init(
            clf_key, jnp.zeros((1, self.sac.feature_size), jnp.float32))
        spaces = {"source": source_space, "target": target_space}
        resets = {d: reset_batch(self.explore_env, k, spaces[d], config.explore_envs)
                  for d, k in zip(DOMAINS, jax.random.split(env_key))}
        example = jnp.zeros((self.env.observation_size,), jnp.float32)
        return DANNState(
            sac=sac_state, classifier=classifier,
            opt_state={"encoder": optax.scale_by_adam().init(encoder),
                       "classifier": optax.scale_by_adam().init(classifier)},
            obs_buffers={d: replay.init(example, config.obs_buffer_size) for d in DOMAINS},
            env_states={d: resets[d][0] for d in DOMAINS}, obs={d: resets[d][1] for d in DOMAINS},
            spaces=spaces, key=key)

    def adversarial_loss(self, encoder: Any, classifier: Any, actor_params: Any,
                         config: DANNConfig, obs_source: jax.Array, obs_target: jax.Array
                         ) -> Tuple[jax.Array, jax.Array]:
        """``(L_D, accuracy)`` with the encoder's features passed through the gradient reversal
        (``obs_*: [B, obs_size]``; ``encoder`` replaces the encoder inside ``actor_params``):
        ``grad`` w.r.t. ``classifier`` is ``dL_D``, w.r.t. ``encoder`` it is ``-λ dL_D``."""
        params = {"params": {**actor_params["params"], "encoder": encoder}}
        feats = self.features(params, config, jnp.concatenate([obs_source, obs_target]))
        logits = self.classifier_net.apply(classifier,
                                           gradient_reversal(feats, config.domain_coef))
        n = obs_source.shape[0]
        return domain_loss(logits[:n], logits[n:])

    def _adversarial_step(self, config: DANNConfig, source_buffer, target_buffer, carry, key):
        """One step of the minimax game on fresh batches; ``carry = (actor_params, classifier,
        opt_state)``: the classifier descends ``L_D``, the encoder ascends it (reversal)."""
        actor_params, classifier, opt_state = carry
        source_key, target_key = jax.random.split(key)
        obs_s = replay.sample(source_buffer, source_key, config.domain_batch)
        obs_t = replay.sample(target_buffer, target_key, config.domain_batch)
        loss_fn = lambda enc, clf: self.adversarial_loss(enc, clf, actor_params, config, obs_s,
                                                         obs_t)
        encoder = actor_params["params"]["encoder"]
        (loss, accuracy), (g_enc, g_clf) = jax.value_and_grad(
            loss_fn, argnums=(0, 1), has_aux=True)(encoder, classifier)
        encoder, enc_opt = adam_step(g_enc, opt_state["encoder"], encoder, config.domain_lr)
        classifier, clf_opt = adam_step(g_clf, opt_state["classifier"], classifier,
                                         config.domain_lr)
        actor_params = {"params": {**actor_params["params"], "encoder": encoder}}
        metrics = dict(domain_loss=loss, domain_accuracy=accuracy)
        return (actor_params, classifier, {"encoder": enc_opt, "classifier": clf_opt}), metrics

    def _update(self, state: DANNState, config: DANNConfig) -> Tuple[DANNState, Dict]:
        key, rollout_key, domain_key = jax.random.split(state.key, 3)
        actor = self.sac.actor(config.sac)

        def behaviour(k, obs):  # uniform actions, or the current policy (module doc)
            mean, log_std = actor.apply(state.sac.params["actor"], obs)
            squashed = sac_loss.sample_tanh_gaussian(k, mean, log_std)[0]
            if config.behaviour == "uniform":
                squashed = jax.random.uniform(k, squashed.shape, minval=-1.0, maxval=1.0)
            return self.sac.to_env_action(squashed), {}

        buffers, env_states, obs, returns = {}, {}, {}, {}
        for d, k in zip(DOMAINS, jax.random.split(rollout_key)):
            carry, traj = rollout(behaviour, self.explore_env, k, state.env_states[d],
                                  state.obs[d], state.spaces[d], 1)
            buffers[d] = replay.add(state.obs_buffers[d], traj.obs[0])
            env_states[d], obs[d] = carry.env_state, carry.obs
            returns[d] = jnp.mean(carry.env_state.last_return)

        sac_state, metrics = self.sac._update(state.sac, config.sac)
        source_buffer = buffers["source"]
        if config.behaviour == "policy":  # SAC's own experience is the source stream
            source_buffer = replay.ReplayBuffer(sac_state.buffer.data.obs,
                                                sac_state.buffer.position, sac_state.buffer.size)
        ready = ((source_buffer.size >= config.domain_batch)
                 & (buffers["target"].size >= config.domain_batch))

        def adversarial(c):
            keys = jax.random.split(domain_key, config.domain_steps)
            step = lambda c, k: self._adversarial_step(config, source_buffer, buffers["target"],
                                                       c, k)
            c, stats = jax.lax.scan(step, c, keys)
            return c, jax.tree.map(jnp.mean, stats)

        adv_carry = (sac_state.params["actor"], state.classifier, state.opt_state)
        skipped = jax.tree.map(lambda s: jnp.full(s.shape, 0.5, s.dtype),
                               jax.eval_shape(adversarial, adv_carry)[1])
        (actor_params, classifier, opt_state), adv_metrics = jax.lax.cond(
            ready, adversarial, lambda c: (c, skipped), adv_carry)
        sac_state = sac_state.replace(params={**sac_state.params, "actor": actor_params})
        metrics.update(adv_metrics)
        if config.behaviour == "policy":  # target rewards: logged to watch transfer, never learned
            metrics["target_episode_return"] = returns["target"]
        return state.replace(sac=sac_state, classifier=classifier, opt_state=opt_state,
                             obs_buffers=buffers, env_states=env_states, obs=obs,
                             key=key), metrics
