"""Invariant feature spaces across morphologies (Gupta et al., ICLR 2017).

Two robots with different state spaces solve a shared **proxy task**; time-aligned states of the
two form pairs ``(s_S, s_T)``. Encoders ``f`` (source) and ``g`` (target) into one feature space
``R^k``, with decoders back to each state space, minimise (Gupta et al. eq. 1-2)::

    L = mean_pairs ||f(s_S) - g(s_T)||^2                                   (paired similarity)
      + recon_coef * (mean ||dec_S(f(s_S)) - s_S||^2 + mean ||dec_T(g(s_T)) - s_T||^2)

The decoders keep the features informative (without them ``f = g = 0`` is optimal). A **new
skill** executed by the source robot then becomes a dense reward for the target robot: at step
``t`` of an episode the target is rewarded ``-alpha ||g(s_T,t) - f(s_S,t)|| / scale`` on top of
the task's reward (``FeatureReward``), where ``f(s_S,t)`` is the source's feature trajectory and
``scale`` the spread of source features on the proxy data (so ``alpha`` means the same for any
pair of encoders, trained or random).

Shapes: pairs ``[M, d_S]`` / ``[M, d_T]``; feature trajectories ``[T, k]`` (``T`` = episode
steps; entry ``t`` is the source's feature after its step ``t + 1``). The robots themselves (and
the scripted controller that solves the proxy task) are ``envs.planar_arm``; this module only
sees state vectors.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos.ppo import PPOConfig
from metarl_jax.core.seeding import init_each_seed
from metarl_jax.core.wrappers import Wrapper
from metarl_jax.nets.mlp import MLP

static = dict(pytree_node=False)


@struct.dataclass
class EncoderConfig:
    """Encoder/decoder sizes (static) and the loss's rates (leaves)."""

    feature_size: int = struct.field(default=4, **static)
    hidden_sizes: Tuple[int, ...] = struct.field(default=(64, 64), **static)
    num_steps: int = struct.field(default=2000, **static)  # Adam steps
    batch_size: int = struct.field(default=256, **static)
    recon_coef: float = 1.0
    learning_rate: float = 1e-3

    def validate(self) -> "EncoderConfig":
        for name in ("feature_size", "num_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"EncoderConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not (float(self.recon_coef) > 0 and float(self.learning_rate) > 0):
            raise ValueError("EncoderConfig: recon_coef and learning_rate must be > 0")
        return self


@struct.dataclass
class EncoderPair:
    """Parameters of f, g and their decoders (flax param dicts)."""

    f: Any
    g: Any
    f_dec: Any
    g_dec: Any


def _encoder(config: EncoderConfig) -> MLP:
    return MLP(tuple(config.hidden_sizes), config.feature_size)


def _decoder(config: EncoderConfig, size: int) -> MLP:
    return MLP(tuple(config.hidden_sizes), size)


def init_encoders(key: jax.Array, config: EncoderConfig, source_size: int,
                  target_size: int) -> EncoderPair:
    """Fresh (random) f: ``R^source_size -> R^k``, g: ``R^target_size -> R^k`` and decoders."""
    kf, kg, kdf, kdg = jax.random.split(key, 4)
    feature = jnp.zeros((1, config.feature_size))
    return EncoderPair(
        f=_encoder(config).init(kf, jnp.zeros((1, source_size))),
        g=_encoder(config).init(kg, jnp.zeros((1, target_size))),
        f_dec=_decoder(config, source_size).init(kdf, feature),
        g_dec=_decoder(config, target_size).init(kdg, feature))


def encode(params: Any, config: EncoderConfig, states: jax.Array) -> jax.Array:
    """Features ``[..., k]`` of ``states [..., d]`` through one encoder (f's or g's params)."""
    return _encoder(config).apply(params, states)


def paired_loss(pair: EncoderPair, config: EncoderConfig, source: jax.Array, target: jax.Array
                ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """The IFS objective (module doc) on pairs ``source [B, d_S]``, ``target [B, d_T]``.

    Returns ``(loss [], {"similarity": [], "reconstruction": []})``."""
    fs, gt = encode(pair.f, config, source), encode(pair.g, config, target)
    similarity = jnp.mean(jnp.sum(jnp.square(fs - gt), -1))
    rec_s = _decoder(config, source.shape[-1]).apply(pair.f_dec, fs)
    rec_t = _decoder(config, target.shape[-1]).apply(pair.g_dec, gt)
    reconstruction = (jnp.mean(jnp.sum(jnp.square(rec_s - source), -1))
                      + jnp.mean(jnp.sum(jnp.square(rec_t - target), -1)))
    loss = similarity + config.recon_coef * reconstruction
    return loss, {"similarity": similarity, "reconstruction": reconstruction}


def train_encoders(key: jax.Array, pair: EncoderPair, config: EncoderConfig,
                   source: jax.Array, target: jax.Array) -> Tuple[EncoderPair, Dict[str, Any]]:
    """``config.num_steps`` Adam steps on ``paired_loss`` over random minibatches of the pairs
    ``source [M, d_S]``, ``target [M, d_T]`` (one ``lax.scan``; ``vmap`` it over seeds).

    Returns the trained pair and the per-step ``{"loss", "similarity", "reconstruction"}``
    ``[num_steps]``."""
    optimizer = optax.adam(config.learning_rate)
    grad_fn = jax.value_and_grad(paired_loss, has_aux=True)

    def step(carry, k):
        p, opt_state = carry
        idx = jax.random.randint(k, (config.batch_size,), 0, source.shape[0])
        (loss, parts), grads = grad_fn(p, config, source[idx], target[idx])
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return (optax.apply_updates(p, updates), opt_state), dict(loss=loss, **parts)

    keys = jax.random.split(key, config.num_steps)
    (pair, _), history = jax.lax.scan(step, (pair, optimizer.init(pair)), keys)
    return pair, history


def init_encoders_seeds(keys: jax.Array, config: EncoderConfig, source_size: int,
                        target_size: int) -> EncoderPair:
    """``init_encoders`` for each of ``keys [S]`` stacked ``[S, ...]`` (seed by seed: see
    ``metarl_jax.core.seeding`` for why orthogonal inits are not ``vmap``-ed)."""
    init = jax.jit(init_encoders, static_argnums=(2, 3))
    return init_each_seed(lambda k: init(k, config, source_size, target_size), keys)


def feature_scale(features: jax.Array) -> jax.Array:
    """Mean distance of ``features [M, k]`` to their mean: ``[]`` (the unit of the IFS reward)."""
    return jnp.mean(jnp.linalg.norm(features - features.mean(0), axis=-1))


# ---------------------------------------------------------------------- transfer: the reward
@struct.dataclass
class FeatureRewardParams:
    """Params of ``FeatureReward``: the wrapped arm's and the feature-tracking target.

    Attributes:
        env: the wrapped env's params (e.g. ``envs.planar_arm.PlanarArmParams``).
        encoder: g's parameters (flax dict).
        targets: [T, k] the source's feature trajectory f(s_S, t).
        alpha: [] weight of the feature reward (0: the task's reward only).
        scale: [] feature unit (``feature_scale`` of the source's proxy features).
    """

    env: Any
    encoder: Any
    targets: jax.Array
    alpha: jax.Array
    scale: jax.Array


class FeatureReward(Wrapper):
    """The task's reward plus ``-alpha ||g(s_T,t) - f(s_S,t)|| / scale`` (module doc).

    Observations, dynamics and episodes are the wrapped env's; only the reward changes, so a
    policy trained here is evaluated on the bare env (its task reward). g sees the first
    ``state_size`` entries of each observation; the env's state must count its steps in
    ``state.time`` (the step index ``t`` into ``targets``)."""

    def __init__(self, env, config: EncoderConfig, state_size: int):
        super().__init__(env)
        self.config = config
        self.state_size = int(state_size)

    def default_params(self) -> FeatureRewardParams:
        """Random g, zero targets, ``alpha = 0``: the arm's own reward."""
        encoder = _encoder(self.config).init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, self.state_size)))
        return FeatureRewardParams(
            env=self.env.default_params(), encoder=encoder,
            targets=jnp.zeros((self.env.max_steps, self.config.feature_size)),
            alpha=jnp.float32(0.0), scale=jnp.float32(1.0))

    def reset(self, key, params: FeatureRewardParams):
        return self.env.reset(key, params.env)

    def step(self, key, state, action, params: FeatureRewardParams):
        state, obs, reward, done, info = self.env.step(key, state, action, params.env)
        feature = encode(params.encoder, self.config, obs[: self.state_size])
        t = jnp.clip(state.time - 1, 0, params.targets.shape[0] - 1)
        distance = jnp.linalg.norm(feature - params.targets[t]) / params.scale
        return state, obs, reward - params.alpha * distance, done, info


@struct.dataclass
class IFSConfig:
    """One IFS transfer run: the encoders, the target's PPO, the feature reward's weight and the
    proxy task's size. Sizes static, rates leaves (``alpha`` too: the no-transfer run,
    ``alpha = 0``, and the random-features run reuse the compiled PPO program)."""

    encoder: EncoderConfig = EncoderConfig()
    ppo: PPOConfig = PPOConfig(num_envs=16, num_steps=40, total_steps=16 * 40 * 400,
                               num_epochs=4, num_minibatches=4, ent_coef=0.0)
    alpha: float = 0.5
    num_proxy_goals: int = struct.field(default=48, **static)
    reach_steps: int = struct.field(default=25, **static)  # scripted reaches: steps to the goal

    @property
    def num_updates(self) -> int:
        return self.ppo.num_updates

    def validate(self) -> "IFSConfig":
        self.encoder.validate(), self.ppo.validate()
        if self.num_proxy_goals < 1 or self.reach_steps < 1:
            raise ValueError(f"IFSConfig: need num_proxy_goals >= 1 and reach_steps >= 1, got "
                             f"{self.num_proxy_goals}, {self.reach_steps}")
        if not float(self.alpha) > 0.0:
            raise ValueError(f"IFSConfig.alpha must be > 0, got {self.alpha}")
        return self
