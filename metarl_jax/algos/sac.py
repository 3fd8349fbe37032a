"""Soft actor-critic (Haarnoja et al. 2018), pure-functional, with an on-device replay buffer.

    sac = SAC(env)                                   # continuous actions only
    state = sac.init(key, config, space)             # space: ParamSpace the episodes are drawn from
    state, metrics = sac.train_chunk(state, config, num_updates=100)   # one compiled lax.scan
    state, metrics = sac.train(key, config, space)   # the whole run as one program

One update = ``num_steps`` steps of ``num_envs`` envs (``vmap``-ed, every episode's physics drawn
from ``space`` inside the program by ``AutoReset``, exactly as PPO) written into the replay
buffer, then ``num_grad_steps = num_envs * num_steps * utd`` gradient steps (a ``lax.scan``):
twin Q critics regressed on the soft Bellman target from Polyak-averaged target critics, the
tanh-Gaussian actor on ``alpha log pi - min Q``, and (``autotune``) the temperature ``alpha``
towards ``target_entropy`` (default ``-action_size``). The losses are in ``sac_loss``.

Warm-up: until ``learning_starts`` env steps (all envs together) have been collected, actions are
uniform over the action box and no gradient step runs (nor while the buffer holds fewer than
``batch_size`` transitions).

The replay buffer is part of ``SACState``, so a checkpoint holds it and a resumed run continues
bit-for-bit. It dominates the checkpoint's size (``buffer_size x (2 obs + action + 2)`` floats
per seed). To save without it: ``without_buffer(state)`` gives the state with ``buffer=None``
(save that; restore with ``like=without_buffer(template)``), and ``sac.with_empty_buffer(state,
config)`` puts back an empty buffer; training then refills it (the run is no longer identical to
an uninterrupted one, and no gradient step runs until ``batch_size`` transitions are back).
``io.training_loop.train_phase`` always saves the full state.

Actions: the actor outputs ``a = tanh(u)`` in ``[-1, 1]^A`` (this is what the buffer stores and
what the critics see); the env receives it rescaled to ``[low, high]`` of its action box.
Observations are optionally normalized with running statistics (raw observations are stored; the
current statistics are applied when sampling).
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from metarl_jax.algos import sac_loss
from metarl_jax.algos.learner import Learner
from metarl_jax.core import normalization, replay
from metarl_jax.core.env import Env, is_discrete
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset, EpisodeStats
from metarl_jax.nets.mlp import MLP
from metarl_jax.randomization.param_space import ParamSpace

static = dict(pytree_node=False)
LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@struct.dataclass
class SACConfig:
    """SAC hyperparameters. Sizes are static fields; rates are pytree leaves."""

    num_envs: int = struct.field(default=8, **static)
    num_steps: int = struct.field(default=1, **static)  # env steps per env per update
    total_steps: int = struct.field(default=100_000, **static)  # env steps, all envs together
    utd: float = struct.field(default=1.0, **static)  # gradient steps per env step
    batch_size: int = struct.field(default=256, **static)
    buffer_size: int = struct.field(default=100_000, **static)
    learning_starts: int = struct.field(default=1_000, **static)  # env steps of random actions
    hidden_sizes: Tuple[int, ...] = struct.field(default=(256, 256), **static)
    normalize_obs: bool = struct.field(default=False, **static)
    autotune: bool = struct.field(default=True, **static)  # False: alpha fixed at init_alpha
    target_entropy: Optional[float] = struct.field(default=None, **static)  # None: -action_size
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005  # Polyak rate of the target critics
    init_alpha: float = 1.0
    reward_scale: float = 1.0

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.steps_per_update

    @property
    def num_grad_steps(self) -> int:
        return int(round(self.steps_per_update * self.utd))

    def validate(self) -> "SACConfig":
        """Raise ``ValueError`` naming the field for an inconsistent config; return self."""
        for name in ("num_envs", "num_steps", "total_steps", "batch_size", "buffer_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SACConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_starts < 0:
            raise ValueError(f"SACConfig.learning_starts must be >= 0, got {self.learning_starts}")
        if self.num_updates < 1:
            raise ValueError(f"SACConfig.total_steps = {self.total_steps} is less than one update "
                             f"(num_envs * num_steps = {self.steps_per_update})")
        if not self.utd > 0 or self.num_grad_steps < 1:
            raise ValueError(f"SACConfig.utd = {self.utd} gives {self.num_grad_steps} gradient "
                             f"steps per update; need >= 1")
        if self.buffer_size < max(self.batch_size, self.steps_per_update):
            raise ValueError(f"SACConfig.buffer_size = {self.buffer_size} must hold a batch "
                             f"({self.batch_size}) and one update's transitions "
                             f"({self.steps_per_update})")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f"SACConfig: need 0 < gamma <= 1 and 0 < tau <= 1, got "
                             f"gamma={self.gamma}, tau={self.tau}")
        for name in ("actor_lr", "critic_lr", "alpha_lr", "init_alpha", "reward_scale"):
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"SACConfig.{name} must be > 0, got {getattr(self, name)}")
        return self


class Transition(NamedTuple):
    """One stored step (leaves ``[...]`` unbatched; ``[capacity, ...]`` in the buffer)."""

    obs: jax.Array  # [obs_size] raw observation
    action: jax.Array  # [A] squashed action in [-1, 1]
    reward: jax.Array  # []
    next_obs: jax.Array  # [obs_size], before any auto-reset
    terminal: jax.Array  # [] float32, 1 for a real terminal state (not a time limit)


@struct.dataclass
class SACState:
    """Everything a run needs to continue bit-for-bit (checkpointed whole)."""

    params: Any  # {"actor", "critic", "log_alpha"}
    target_critic: Any
    opt_state: Any  # {"actor", "critic", "log_alpha"}: Adam moments
    buffer: Optional[replay.ReplayBuffer]
    obs_stats: normalization.RunningStats
    env_state: Any  # [N, ...] EpisodeStats(AutoReset(env)) state
    obs: jax.Array  # [N, obs_size]
    space: ParamSpace
    key: jax.Array
    update_step: jax.Array  # [] int32


class Actor(nn.Module):
    """``obs[..., obs_size] -> (mean[..., A], log_std[..., A])`` of the pre-tanh Gaussian; the
    log-std is squashed into ``[LOG_STD_MIN, LOG_STD_MAX]``."""

    action_size: int
    hidden_sizes: Tuple[int, ...]

    @nn.compact
    def __call__(self, obs):
        out = MLP(self.hidden_sizes, 2 * self.action_size, activation=nn.relu,
                  output_scale=0.01)(obs)
        mean, raw = jnp.split(out, 2, axis=-1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (jnp.tanh(raw) + 1.0)
        return mean, log_std


class TwinQ(nn.Module):
    """``(obs[..., obs_size], action[..., A]) -> (q1[...], q2[...])``, two independent MLPs."""

    hidden_sizes: Tuple[int, ...]

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], axis=-1)
        q1 = MLP(self.hidden_sizes, 1, activation=nn.relu, name="q1")(x)[..., 0]
        q2 = MLP(self.hidden_sizes, 1, activation=nn.relu, name="q2")(x)[..., 0]
        return q1, q2


def without_buffer(state: SACState) -> SACState:
    """``state`` with ``buffer=None``: a much smaller pytree to checkpoint (module doc)."""
    return state.replace(buffer=None)


def adam_step(grads, opt_state, params, lr):
    """Adam with a traced learning rate: ``(new_params, new_opt_state)``."""
    updates, opt_state = optax.scale_by_adam().update(grads, opt_state, params)
    return jax.tree.map(lambda p, u: p - lr * u, params, updates), opt_state


class SAC(Learner):
    """SAC on one env with a continuous action box. Holds only static structure (the wrapped
    env); all data is in ``SACState``.

    Args:
        env: the environment; wrapped here as ``EpisodeStats(AutoReset(env, resample_every))``.
        resample_every: draw new params every N steps (``None``: once per episode).

    ``batch_sharding``: None, or a ``jax.sharding.NamedSharding`` that observation batches
    ``[B, obs_size]`` entering the networks are pinned to (``_normalize``, the first step of
    every forward pass): ``metarl_jax.scale.ShardedSAC`` sets it on its own copy of the learner
    so each device runs the networks on ``B / D`` samples.
    """

    batch_sharding: Any = None

    def __init__(self, env: Env, resample_every: int | None = None):
        if is_discrete(env.action_space):
            raise ValueError(f"SAC needs a continuous action space; {env.name} is discrete")
        self.env = env
        self.train_env = EpisodeStats(AutoReset(env, resample_every))
        space = env.action_space
        self.action_size = int(env.action_size)
        self.low = np.broadcast_to(np.asarray(space.low, np.float32), (self.action_size,))
        self.high = np.broadcast_to(np.asarray(space.high, np.float32), (self.action_size,))
        super().__init__()

    # ----------------------------------------------------------------------------- networks
    def actor(self, config: SACConfig) -> Actor:
        return Actor(self.action_size, tuple(config.hidden_sizes))

    def critic(self, config: SACConfig) -> TwinQ:
        return TwinQ(tuple(config.hidden_sizes))

    def target_entropy(self, config: SACConfig) -> float:
        return (-float(self.action_size) if config.target_entropy is None
                else float(config.target_entropy))

    def _normalize(self, config, stats, obs):
        obs = normalization.normalize(stats, obs) if config.normalize_obs else obs
        pin = self.batch_sharding
        if pin is not None and obs.ndim == 2 and obs.shape[0] % pin.mesh.shape[pin.spec[0]] == 0:
            obs = jax.lax.with_sharding_constraint(obs, pin)
        return obs

    def to_env_action(self, squashed: jax.Array) -> jax.Array:
        """``[-1, 1]^A -> [low, high]`` of the env's action box."""
        return self.low + 0.5 * (squashed + 1.0) * (self.high - self.low)

    def act(self, actor_params, obs_stats, config: SACConfig, key, obs,
            deterministic: bool = False) -> jax.Array:
        """Env actions ``[..., A]`` for raw ``obs[..., obs_size]`` (``deterministic``:
        ``tanh(mean)``)."""
        mean, log_std = self.actor(config).apply(actor_params,
                                                  self._normalize(config, obs_stats, obs))
        squashed = (jnp.tanh(mean) if deterministic
                    else sac_loss.sample_tanh_gaussian(key, mean, log_std)[0])
        return self.to_env_action(squashed)

    def make_policy(self, state: SACState, config: SACConfig, deterministic: bool = False):
        """``act(key, obs[..., obs_size]) -> action`` of one seed's ``state``."""
        actor_params, obs_stats = state.params["actor"], state.obs_stats
        return lambda key, obs: self.act(actor_params, obs_stats, config, key, obs, deterministic)

    def trainable(self, state: SACState) -> Any:
        return (state.params, state.target_critic)

    # ----------------------------------------------------------------------------- init
    def _empty_buffer(self, config: SACConfig) -> replay.ReplayBuffer:
        obs = jnp.zeros((self.env.observation_size,), jnp.float32)
        example = Transition(obs, jnp.zeros((self.action_size,), jnp.float32), jnp.float32(0),
                             obs, jnp.float32(0))
        return replay.init(example, config.buffer_size)

    def with_empty_buffer(self, state: SACState, config: SACConfig) -> SACState:
        """Put an empty replay buffer into a state saved ``without_buffer`` (module doc)."""
        return state.replace(buffer=self._empty_buffer(config))

    def retarget(self, state: SACState, config: SACConfig, space: ParamSpace,
                 key: jax.Array) -> SACState:
        """``state`` moved to train on ``space`` (finetuning, ``transfer/finetune.py``): actor,
        critics, targets, temperature, optimizer moments and observation statistics are kept;
        the replay buffer is emptied (its transitions come from the old physics);
        ``config.num_envs`` envs are reset with physics from ``space``; ``update_step`` restarts
        at 0, so ``config.learning_starts`` steps of uniform actions come first (0: act with the
        pretrained actor from the first step)."""
        env_state, obs = reset_batch(self.train_env, key, space, config.num_envs)
        return state.replace(buffer=self._empty_buffer(config), env_state=env_state, obs=obs,
                             space=space, update_step=jnp.int32(0))

    def _init(self, key: jax.Array, config: SACConfig, space: ParamSpace) -> SACState:
        actor_key, critic_key, env_key, key = jax.random.split(key, 4)
        obs_size = self.env.observation_size
        dummy_obs = jnp.zeros((1, obs_size), jnp.float32)
        actor = self.actor(config).init(actor_key, dummy_obs)
        critic = self.critic(config).init(critic_key, dummy_obs,
                                          jnp.zeros((1, self.action_size), jnp.float32))
        params = {"actor": actor, "critic": critic,
                  "log_alpha": jnp.log(jnp.asarray(config.init_alpha, jnp.float32))}
        env_state, obs = reset_batch(self.train_env, env_key, space, config.num_envs)
        return SACState(
            params=params,
            target_critic=critic,
            opt_state={k: optax.scale_by_adam().init(v) for k, v in params.items()},
            buffer=self._empty_buffer(config),
            obs_stats=normalization.init(obs_size),
            env_state=env_state,
            obs=obs,
            space=space,
            key=key,
            update_step=jnp.int32(0),
        )

    # ----------------------------------------------------------------------------- update
    def _grad_step(self, config: SACConfig, buffer, obs_stats, carry, key, reward_fn=None):
        """One gradient step on a sampled batch: critics, then actor, then temperature, then
        the targets. ``carry = (params, target_critic, opt_state)``. ``reward_fn(batch, key) ->
        reward[B]`` (optional) replaces the stored rewards of the sampled batch (``_update``)."""
        params, target, opt_state = carry
        actor, critic = self.actor(config), self.critic(config)
        sample_key, next_key, pi_key = jax.random.split(key, 3)
        batch = replay.sample(buffer, sample_key, config.batch_size)
        obs = self._normalize(config, obs_stats, batch.obs)
        next_obs = self._normalize(config, obs_stats, batch.next_obs)
        log_alpha = params["log_alpha"]
        alpha = jnp.exp(log_alpha) if config.autotune else jnp.asarray(config.init_alpha)

        next_action, next_log_prob = sac_loss.sample_tanh_gaussian(
            next_key, *actor.apply(params["actor"], next_obs))
        next_q1, next_q2 = critic.apply(target, next_obs, next_action)
        reward = (batch.reward if reward_fn is None
                  else reward_fn(batch, jax.random.fold_in(key, 1)))  # own stream: same draws
        y = sac_loss.critic_target(reward * config.reward_scale, batch.terminal, next_q1,
                                   next_q2, next_log_prob, alpha, config.gamma)

        def critic_fn(c):
            q1, q2 = critic.apply(c, obs, batch.action)
            return sac_loss.critic_loss(q1, q2, y), q1

        (c_loss, q1), c_grads = jax.value_and_grad(critic_fn, has_aux=True)(params["critic"])
        new_critic, critic_opt = adam_step(c_grads, opt_state["critic"], params["critic"],
                                            config.critic_lr)

        def actor_fn(a):
            action, log_prob = sac_loss.sample_tanh_gaussian(pi_key, *actor.apply(a, obs))
            q1, q2 = critic.apply(new_critic, obs, action)
            return sac_loss.actor_loss(log_prob, q1, q2, alpha), log_prob

        (a_loss, log_prob), a_grads = jax.value_and_grad(actor_fn, has_aux=True)(params["actor"])
        new_actor, actor_opt = adam_step(a_grads, opt_state["actor"], params["actor"],
                                          config.actor_lr)

        target_entropy = self.target_entropy(config)
        t_loss, t_grad = jax.value_and_grad(sac_loss.temperature_loss)(log_alpha, log_prob,
                                                                         target_entropy)
        new_log_alpha, alpha_opt = log_alpha, opt_state["log_alpha"]
        if config.autotune:
            new_log_alpha, alpha_opt = adam_step(t_grad, alpha_opt, log_alpha, config.alpha_lr)

        target = jax.tree.map(lambda t, p: (1.0 - config.tau) * t + config.tau * p, target,
                              new_critic)
        params = {"actor": new_actor, "critic": new_critic, "log_alpha": new_log_alpha}
        opt_state = {"actor": actor_opt, "critic": critic_opt, "log_alpha": alpha_opt}
        metrics = dict(critic_loss=c_loss, actor_loss=a_loss, alpha_loss=t_loss, alpha=alpha,
                       entropy=-jnp.mean(log_prob), q_mean=jnp.mean(q1),
                       grad_norm=optax.tree.norm((c_grads, a_grads)))
        return (params, target, opt_state), metrics

    def _update(self, state: SACState, config: SACConfig, reward_fn=None
                ) -> Tuple[SACState, Dict[str, jax.Array]]:
        """One update (module doc). ``reward_fn(batch, key) -> reward[B]``, when given, relabels
        every sampled batch's rewards (intrinsic rewards of a model learned beside SAC, e.g.
        DIAYN's discriminator); it is a Python closure, so callers pass it from their own
        ``_update``, never through ``Learner.update``'s context."""
        actor = self.actor(config)
        key, rollout_key, train_key = jax.random.split(state.key, 3)
        env_steps = state.update_step * config.steps_per_update  # collected before this update
        warmup = env_steps < config.learning_starts

        def policy(k, obs):
            mean, log_std = actor.apply(state.params["actor"],
                                        self._normalize(config, state.obs_stats, obs))
            policy_key, uniform_key = jax.random.split(k)
            squashed, _ = sac_loss.sample_tanh_gaussian(policy_key, mean, log_std)
            uniform = jax.random.uniform(uniform_key, squashed.shape, minval=-1.0, maxval=1.0)
            squashed = jnp.where(warmup, uniform, squashed)
            return self.to_env_action(squashed), {"squashed": squashed}

        carry, traj = rollout(policy, self.train_env, rollout_key, state.env_state, state.obs,
                              state.space, config.num_steps, info_keys=("episode_return",))
        transitions = Transition(traj.obs, traj.extras["squashed"], traj.reward, traj.final_obs,
                                 traj.terminated.astype(jnp.float32))
        transitions = jax.tree.map(
            lambda x: x.reshape((config.steps_per_update,) + x.shape[2:]), transitions)
        buffer = replay.add(state.buffer, transitions)
        obs_stats = (normalization.update(state.obs_stats, traj.obs)
                     if config.normalize_obs else state.obs_stats)

        def train(train_carry):
            keys = jax.random.split(train_key, config.num_grad_steps)
            step = lambda c, k: self._grad_step(config, buffer, obs_stats, c, k, reward_fn)
            train_carry, stats = jax.lax.scan(step, train_carry, keys)
            return train_carry, jax.tree.map(jnp.mean, stats)

        train_carry = (state.params, state.target_critic, state.opt_state)
        skipped = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                               jax.eval_shape(train, train_carry)[1])
        ready = ((env_steps + config.steps_per_update >= config.learning_starts)
                 & (buffer.size >= config.batch_size))
        (params, target, opt_state), metrics = jax.lax.cond(
            ready, train, lambda c: (c, skipped), train_carry)

        metrics.update(
            # Mean return of the latest finished episode of each env (0 before any finishes).
            episode_return=jnp.mean(carry.env_state.last_return),
            episodes_finished=traj.done.astype(jnp.float32).sum(),
            rollout_reward=jnp.mean(traj.reward),
            buffer_size=buffer.size.astype(jnp.float32),
        )
        new_state = state.replace(
            params=params, target_critic=target, opt_state=opt_state, buffer=buffer,
            obs_stats=obs_stats, env_state=carry.env_state, obs=carry.obs, key=key,
            update_step=state.update_step + 1,
        )
        return new_state, metrics


class SACBasedConfig:
    """Mixin for the configs of learners built on SAC (``DANN``, ``DARC``, ``DIAYN``, ``DADS``):
    the run's length is the wrapped ``sac`` config's (a ``SACConfig`` field named ``sac``)."""

    @property
    def num_updates(self) -> int:
        return self.sac.num_updates

    @property
    def steps_per_update(self) -> int:
        return self.sac.steps_per_update


class SACBased(Learner):
    """Base of learners that train a ``SAC`` agent (``self.sac``) beside a model of their own
    (a domain classifier, a discriminator, skill dynamics). Their state holds SAC's state as
    ``state.sac`` and that model's parameters in the field named by ``model_field``; their config
    is a ``SACBasedConfig``. The policy is SAC's; the non-finite guard checks both."""

    model_field: str = ""

    def make_policy(self, state: Any, config: Any, deterministic: bool = False):
        """``act(key, obs[..., obs_size]) -> action`` of SAC's actor (``obs`` as the wrapped
        env's, e.g. ending with the skill)."""
        return self.sac.make_policy(state.sac, config.sac, deterministic)

    def trainable(self, state: Any) -> Any:
        return (self.sac.trainable(state.sac), getattr(state, self.model_field))
