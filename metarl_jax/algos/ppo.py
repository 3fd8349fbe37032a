"""Proximal policy optimization (Schulman et al. 2017), pure-functional and compiled whole.

    ppo = PPO(env)                                   # env: any Env (wrapped or not)
    state = ppo.init(key, config, space)             # space: ParamSpace the episodes are drawn from
    state, metrics = ppo.train_chunk(state, config, num_updates=10)   # one compiled lax.scan
    state, metrics = ppo.train(key, config, space)   # the whole run as one program

Every episode of every env draws fresh physics from ``space`` inside the compiled program
(``AutoReset``); the space is part of the train state, so adaptive schemes can update it.
``PPOConfig`` is a pytree: sizes are static (changing them recompiles), rates are leaves
(changing a learning rate does not). Seeds are a ``vmap`` axis: ``init_seeds`` /
``train_chunk_seeds`` train several seeds in one program.

Robust / adaptive randomization: ``PPO(env, robust=hook)`` calls a ``RobustHook``
(``metarl_jax.randomization.robust``) once per update on the rollout's episodes. The hook is
stored in ``PPOState.robust``, so its coefficients are data: ``ppo.init(key, config, space,
EPOpt(0.2))`` reuses the compiled program. It may return
per-episode weights (EPOpt's CVaR selection, MRPO's selection), which then weight every per-sample
term of the loss and the advantage normalization (a weighted mean over the minibatch), and a new
randomization distribution (ADR), stored back in ``PPOState.space``. Hooks need one whole episode
per env per update (``num_steps == env.max_steps``; checked). With ``robust=None`` (the default)
the update is exactly plain PPO.

Shapes: ``N = num_envs``, ``T = num_steps``; the rollout is time-major ``[T, N, ...]``.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos.advantages import gae
from metarl_jax.algos.learner import Learner
from metarl_jax.algos.ppo_loss import Batch, clipped_surrogate_loss, ppo_optimizer, run_epochs
from metarl_jax.core import normalization
from metarl_jax.core.env import Env, is_discrete
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset, EpisodeStats, validate_space
from metarl_jax.nets.actor_critic import ActorCritic
from metarl_jax.nets.policy_heads import set_log_std
from metarl_jax.randomization import robust as robust_lib
from metarl_jax.randomization.param_space import ParamDistribution

static = dict(pytree_node=False)


@struct.dataclass
class PPOConfig:
    """PPO hyperparameters. Sizes are static fields; rates are pytree leaves."""

    num_envs: int = struct.field(default=64, **static)
    num_steps: int = struct.field(default=128, **static)  # rollout length per update
    total_steps: int = struct.field(default=1_000_000, **static)  # env steps, all envs together
    num_epochs: int = struct.field(default=10, **static)
    num_minibatches: int = struct.field(default=8, **static)
    hidden_sizes: Tuple[int, ...] = struct.field(default=(64, 64), **static)
    normalize_obs: bool = struct.field(default=True, **static)
    anneal_lr: bool = struct.field(default=True, **static)
    init_log_std: float = 0.0  # a leaf: set in init (nets.policy_heads.set_log_std)
    learning_rate: float = 3e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.0
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    reward_scale: float = 1.0

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.batch_size

    def validate(self) -> "PPOConfig":
        """Raise ``ValueError`` naming the field for an inconsistent config; return self."""
        for name in ("num_envs", "num_steps", "total_steps", "num_epochs", "num_minibatches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PPOConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size % self.num_minibatches:
            raise ValueError(
                f"PPOConfig: num_envs * num_steps = {self.batch_size} is not divisible by "
                f"num_minibatches = {self.num_minibatches}"
            )
        if self.num_updates < 1:
            raise ValueError(
                f"PPOConfig.total_steps = {self.total_steps} is less than one update "
                f"(num_envs * num_steps = {self.batch_size})"
            )
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError(f"PPOConfig: need 0 < gamma <= 1 and 0 <= gae_lambda <= 1, got "
                             f"gamma={self.gamma}, gae_lambda={self.gae_lambda}")
        for name in ("learning_rate", "clip_eps", "max_grad_norm", "reward_scale"):
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"PPOConfig.{name} must be > 0, got {getattr(self, name)}")
        return self


@struct.dataclass
class PPOState:
    """Everything a run needs to continue bit-for-bit (checkpointed whole)."""

    params: Any  # network parameters
    opt_state: Any
    obs_stats: normalization.RunningStats
    env_state: Any  # [N, ...] (EpisodeStats(AutoReset(env)) state, incl. current episode params)
    obs: jax.Array  # [N, obs_size]
    space: ParamDistribution  # the randomization distribution episodes are drawn from
    key: jax.Array
    update_step: jax.Array  # [] int32, updates done so far
    robust: Any = None  # the RobustHook (a pytree of its coefficients), or None for plain PPO


def _optimizer(config: PPOConfig) -> optax.GradientTransformation:
    return ppo_optimizer(config.max_grad_norm)


class PPO(Learner):
    """PPO on one env. Holds only static structure (the wrapped env); all data is in ``PPOState``.

    Args:
        env: the environment; wrapped here as ``EpisodeStats(AutoReset(env, resample_every))``.
        resample_every: draw new params every N steps (``None``: once per episode).
        robust: an optional ``RobustHook`` (EPOpt, MRPO, ADR, ...): per-episode loss weights and
            updates of the randomization distribution, computed from each rollout.
        actor_obs_size: ``None``, or ``k``: an asymmetric actor-critic whose actor reads only the
            first ``k`` observation entries and whose critic reads them all (privileged entries
            at the end, e.g. ``ParamObservation``'s physics). Policies (``act``,
            ``make_policy``) still take the env's whole observation; ``export_ppo`` writes an
            actor that takes the first ``k``.
    """

    def __init__(self, env: Env, resample_every: int | None = None,
                 robust: robust_lib.RobustHook | None = None,
                 actor_obs_size: int | None = None):
        if robust is not None:  # resample_every must be None; num_steps is checked at init
            robust_lib.check_alignment(env, env.max_steps, resample_every)
        if actor_obs_size is not None and not 1 <= actor_obs_size <= env.observation_size:
            raise ValueError(f"actor_obs_size must be in [1, {env.observation_size}] (the env's "
                             f"observation size), got {actor_obs_size}")
        self.env = env
        self.robust = robust
        self.actor_obs_size = actor_obs_size
        self.train_env = EpisodeStats(AutoReset(env, resample_every))
        self.discrete = is_discrete(env.action_space)
        super().__init__()

    # ----------------------------------------------------------------------------- networks
    def network(self, config: PPOConfig) -> ActorCritic:
        return ActorCritic(self.env.action_size, self.discrete, tuple(config.hidden_sizes),
                           0.0,  # init_log_std is set by init (a traced config leaf)
                           actor_obs_size=self.actor_obs_size)

    def _normalize(self, config, stats, obs):
        return normalization.normalize(stats, obs) if config.normalize_obs else obs

    def act(self, params, obs_stats, config: PPOConfig, key, obs, deterministic: bool = False):
        """Actions for ``obs[..., obs_size]`` (raw observations; normalized here)."""
        net = self.network(config)
        dist, _ = net.apply(params, self._normalize(config, obs_stats, obs))
        return net.head.mode(dist) if deterministic else net.head.sample(key, dist)

    def make_policy(self, state: PPOState, config: PPOConfig, deterministic: bool = False):
        """``act(key, obs[..., obs_size]) -> action`` of one seed's ``state`` (raw observations;
        normalized inside with the state's statistics)."""
        params, obs_stats = state.params, state.obs_stats
        return lambda key, obs: self.act(params, obs_stats, config, key, obs, deterministic)

    def retarget(self, state: PPOState, config: PPOConfig, space: ParamDistribution,
                 key: jax.Array) -> PPOState:
        """``state`` moved to train on ``space`` (finetuning, ``transfer/finetune.py``): the
        network, optimizer moments and observation statistics are kept; ``config.num_envs`` envs
        are reset with physics from ``space``; ``update_step`` restarts at 0, so learning-rate
        annealing spans ``config.num_updates`` of the new run."""
        env_state, obs = reset_batch(self.train_env, key, space, config.num_envs)
        return state.replace(env_state=env_state, obs=obs, space=space, update_step=jnp.int32(0))

    # ----------------------------------------------------------------------------- init
    def check_init_args(self, config: PPOConfig, space: ParamDistribution, *robust) -> None:
        """The space must fit the env (``validate_space``: ranges, wrapper-only fields, delay
        ranges against ``ActionDelay.max_delay``), checked before ``init`` traces it."""
        validate_space(self.env, space)

    def _init(self, key: jax.Array, config: PPOConfig, space: ParamDistribution,
              robust: robust_lib.RobustHook | None = None) -> PPOState:
        """``robust``: the hook's coefficients for this run (default: the hook given to the
        constructor); the same hook type, so another epsilon does not recompile."""
        if self.robust is not None:
            robust_lib.check_alignment(self.env, config.num_steps, None)
        if robust is None:
            robust = self.robust
        elif type(robust) is not type(self.robust):
            raise ValueError(f"PPO was built with robust={type(self.robust).__name__}; "
                             f"init got {type(robust).__name__}")
        net_key, env_key, key = jax.random.split(key, 3)
        obs_size = self.env.observation_size
        params = self.network(config).init(net_key, jnp.zeros((1, obs_size), jnp.float32))
        if not self.discrete:
            params = set_log_std(params, config.init_log_std)
        env_state, obs = reset_batch(self.train_env, env_key, space, config.num_envs)
        return PPOState(
            params=params,
            opt_state=_optimizer(config).init(params),
            obs_stats=normalization.init(obs_size),
            env_state=env_state,
            obs=obs,
            space=space,
            key=key,
            update_step=jnp.int32(0),
            robust=robust,
        )

    # ----------------------------------------------------------------------------- update
    def _update(self, state: PPOState, config: PPOConfig) -> Tuple[PPOState, Dict[str, jax.Array]]:
        net = self.network(config)
        key, rollout_key, perm_key = jax.random.split(state.key, 3)

        def policy(k, obs):
            dist, value = net.apply(state.params, self._normalize(config, state.obs_stats, obs))
            action = net.head.sample(k, dist)
            return action, {"log_prob": net.head.log_prob(dist, action), "value": value}

        carry, traj = rollout(
            policy, self.train_env, rollout_key, state.env_state, state.obs, state.space,
            config.num_steps, info_keys=("episode_return", "episode_length"),
        )

        # Normalize with the statistics the actions were chosen under (ratios start at 1),
        # then fold this batch into the statistics for the next rollout.
        obs = self._normalize(config, state.obs_stats, traj.obs)
        final_obs = self._normalize(config, state.obs_stats, traj.final_obs)
        _, next_value = net.apply(state.params, final_obs)
        reward = traj.reward * config.reward_scale
        advantages, targets = gae(reward, traj.extras["value"], next_value, traj.terminated,
                                  traj.done, config.gamma, config.gae_lambda)
        obs_stats = (normalization.update(state.obs_stats, traj.obs)
                     if config.normalize_obs else state.obs_stats)

        weights, space, hook_metrics = None, state.space, {}
        if self.robust is not None:
            robust_lib.check_alignment(self.env, config.num_steps, None)
            weights, space, hook_metrics = robust_lib.hook_step(
                state.robust, traj.reward, traj.done, state.env_state, state.space,
                state.update_step)

        batch = Batch(obs, traj.action, traj.extras["log_prob"], advantages, targets,
                      weights)  # weights: [T, N], one per sample (the episode's), or None
        batch = jax.tree.map(lambda x: x.reshape((config.batch_size,) + x.shape[2:]), batch)
        lr = config.learning_rate
        if config.anneal_lr:
            lr = lr * (1.0 - state.update_step.astype(jnp.float32) / config.num_updates)

        def loss_fn(params, minibatch: Batch):
            dist, value = net.apply(params, minibatch.obs)
            return clipped_surrogate_loss(
                net.head.log_prob(dist, minibatch.action), value, net.head.entropy(dist),
                minibatch, config.clip_eps, config.vf_coef, config.ent_coef)

        (params, opt_state), stats = run_epochs(
            loss_fn, _optimizer(config), lr, state.params, state.opt_state, batch, perm_key,
            config.num_epochs, config.num_minibatches)
        metrics = jax.tree.map(jnp.mean, stats)
        metrics.update(
            # Mean return of the latest finished episode of each env (0 before any finishes).
            episode_return=jnp.mean(carry.env_state.last_return),
            episodes_finished=traj.done.astype(jnp.float32).sum(),
            rollout_reward=jnp.mean(traj.reward),
            **hook_metrics,
        )
        new_state = state.replace(
            params=params, opt_state=opt_state, obs_stats=obs_stats, env_state=carry.env_state,
            obs=carry.obs, space=space, key=key, update_step=state.update_step + 1,
        )
        # The Learner base checks losses, grad_norm and params for NaN/inf (state kept if any).
        return new_state, metrics
