"""Multi-task PPO: one task-conditioned policy trained on K tasks at once, interference visible.

    tasks = task_batch(params_k, reward_scales=(1.0, 0.01))     # TaskParams, leaves [K, ...]
    mt = MultiTaskPPO(PointNav2D(), num_tasks=2)
    state = mt.init(key, MultiTaskConfig(num_envs=16), tasks)
    state, metrics = mt.train_chunk(state, config, num_updates=10)
    returns = mt.evaluate(state, config, tasks, key)            # [K], deterministic policy

**Tasks are data.** A task is the env's own ``Params`` (a goal, a target velocity, a mass) plus
a task id and a reward scale (``TaskParams``). ``TaskConditioned`` appends the one-hot task id
to the observation and multiplies the reward by the task's scale, so a task whose rewards are
100x smaller is a real, measurable source of interference. The ``N`` envs are split into ``K``
contiguous blocks of ``M = N / K``: env ``i`` always runs task ``i // M``.

**Interference, logged every update** (means over the update's minibatches): the return of each
task in its own units (``return_task_<k>``, the reward before its scale), each task's gradient
norm (``grad_norm_task_<k>``, before any surgery) and the cosine between every pair of per-task
gradients (``grad_cos_<i>_<j>``, plus ``grad_cos_mean``, ``grad_cos_min`` and
``grad_conflict_frac``, the fraction of pairs with a negative cosine). Per-task gradients come
from one ``vmap`` over tasks of the PPO loss on each task's part of a minibatch; every minibatch
holds the same number of samples of every task, so their mean is exactly the gradient of plain
PPO's loss.

**Mitigations** (config leaves, so all variants share one compiled program):

* ``per_task_norm``: rewards of task ``k`` are divided by the running standard deviation of its
  discounted return (``return_stats``, one entry per task; the value function then learns
  normalized returns), and advantages are normalized within each task's part of the minibatch
  instead of over the whole minibatch.
* ``pcgrad``: the per-task gradients go through PCGrad (``metarl_jax.algos.pcgrad``) before their
  mean is taken.

Shapes: ``N = num_envs``, ``T = num_steps``, ``K`` tasks, ``M = N / K`` envs per task.
"""

from __future__ import annotations

from typing import Any, Dict, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl_jax.algos.advantages import gae
from metarl_jax.algos.learner import Learner
from metarl_jax.algos.pcgrad import pcgrad, task_cosines
from metarl_jax.algos.ppo import PPOConfig
from metarl_jax.algos.ppo_loss import Batch, clipped_surrogate_loss, ppo_optimizer
from metarl_jax.core import normalization
from metarl_jax.core.env import Box, Env, is_discrete
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset, EpisodeStats, Wrapper
from metarl_jax.nets.actor_critic import ActorCritic
from metarl_jax.nets.policy_heads import set_log_std
from metarl_jax.randomization.param_space import fixed_space


# ------------------------------------------------------------------------------ tasks as data
@struct.dataclass
class TaskParams:
    """One task (or a batch ``[K]``): the env's params, its id and its reward scale."""

    task: Any  # the wrapped env's Params
    task_id: jax.Array  # [] int32 in [0, K)
    reward_scale: jax.Array  # [] float32, multiplies the env's reward


def task_batch(tasks: Any, reward_scales: Sequence[float] | None = None) -> TaskParams:
    """``TaskParams [K]`` from env params whose leaves are ``[K, ...]`` (ids ``0..K-1``)."""
    num_tasks = jax.tree.leaves(tasks)[0].shape[0]
    scales = jnp.ones(num_tasks) if reward_scales is None else jnp.asarray(reward_scales)
    if scales.shape != (num_tasks,) or not bool(jnp.all(scales > 0)):
        raise ValueError(f"reward_scales must be {num_tasks} positive numbers, got "
                         f"{list(reward_scales)}")
    return TaskParams(tasks, jnp.arange(num_tasks, dtype=jnp.int32), scales.astype(jnp.float32))


class TaskConditioned(Wrapper):
    """``obs [obs_size + K] = [env obs | one_hot(task_id, K)]``; reward times ``reward_scale``.

    Params: ``TaskParams`` (goes inside ``AutoReset``, which hands it each episode's task)."""

    def __init__(self, env: Env, num_tasks: int):
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        super().__init__(env)
        self.num_tasks = int(num_tasks)

    def default_params(self) -> TaskParams:
        return TaskParams(self.env.default_params(), jnp.int32(0), jnp.float32(1.0))

    def _obs(self, obs, params: TaskParams):
        one_hot = jax.nn.one_hot(params.task_id, self.num_tasks, dtype=jnp.float32)
        return jnp.concatenate([obs.astype(jnp.float32), one_hot])

    def reset(self, key, params: TaskParams):
        state, obs = self.env.reset(key, params.task)
        return state, self._obs(obs, params)

    def step(self, key, state, action, params: TaskParams):
        state, obs, reward, done, info = self.env.step(key, state, action, params.task)
        return state, self._obs(obs, params), reward * params.reward_scale, done, info

    @property
    def observation_space(self) -> Box:
        size = self.env.observation_size + self.num_tasks
        return Box(low=jnp.full((size,), -jnp.inf, jnp.float32),
                   high=jnp.full((size,), jnp.inf, jnp.float32), shape=(size,))


# ------------------------------------------------------------------------------ normalization
def by_task(x: jax.Array, num_tasks: int) -> jax.Array:
    """``[T, N, ...]`` (env ``i`` runs task ``i // M``) -> ``[K, T * M, ...]``, task-major."""
    t, n = x.shape[:2]
    x = x.reshape((t, num_tasks, n // num_tasks) + x.shape[2:])
    return jnp.moveaxis(x, 1, 0).reshape((num_tasks, t * (n // num_tasks)) + x.shape[3:])


def discounted_returns(reward: jax.Array, done: jax.Array, acc: jax.Array, gamma
                       ) -> Tuple[jax.Array, jax.Array]:
    """Running discounted return of each env, restarted after every episode end.

    ``acc_t = gamma * acc_{t-1} + r_t`` (``acc`` zeroed after ``done``); inputs ``[T, N]`` and
    the carried ``acc [N]``. Returns ``(acc after the last step [N], acc_t [T, N])``."""

    def step(acc, xs):
        r, d = xs
        acc = gamma * acc + r
        return jnp.where(d, 0.0, acc), acc

    return jax.lax.scan(step, acc, (reward, done))


def per_task_reward_scale(stats: normalization.RunningStats) -> jax.Array:
    """``[K]``: ``1 / std`` of each task's discounted return (``stats`` of size ``K``)."""
    return 1.0 / jnp.sqrt(stats.var + 1e-8)


def normalize_task_advantages(adv: jax.Array, per_task: Any) -> jax.Array:
    """``adv [K, B]`` standardized within each task's row (``per_task`` true) or over all
    ``K * B`` entries; ``per_task`` may be traced."""
    over_all = (adv - adv.mean()) / (adv.std() + 1e-8)
    within = (adv - adv.mean(1, keepdims=True)) / (adv.std(1, keepdims=True) + 1e-8)
    return jnp.where(per_task, within, over_all)


# ------------------------------------------------------------------------------ the learner
@struct.dataclass
class MultiTaskConfig(PPOConfig):
    """``PPOConfig`` plus the two mitigations (leaves: switching them does not recompile)."""

    per_task_norm: bool = False  # per-task return and advantage normalization
    pcgrad: bool = False  # PCGrad on the per-task gradients


@struct.dataclass
class MultiTaskState:
    """Everything a run needs to continue bit-for-bit (checkpointed whole)."""

    params: Any
    opt_state: Any
    obs_stats: normalization.RunningStats  # [obs_size + K]
    return_stats: normalization.RunningStats  # [K], of each task's discounted return
    return_acc: jax.Array  # [N] running discounted return (for return_stats)
    env_state: Any  # [N, ...]
    obs: jax.Array  # [N, obs_size + K]
    space: Any  # fixed_space(TaskParams [N]): env i's task
    key: jax.Array
    update_step: jax.Array  # [] int32


class MultiTaskPPO(Learner):
    """PPO with a task-conditioned actor-critic on ``num_tasks`` tasks (module doc)."""

    def __init__(self, env: Env, num_tasks: int):
        self.env = env
        self.num_tasks = int(num_tasks)
        self.task_env = TaskConditioned(env, num_tasks)
        self.train_env = EpisodeStats(AutoReset(self.task_env))
        self.discrete = is_discrete(env.action_space)
        super().__init__()

    def network(self, config: MultiTaskConfig) -> ActorCritic:
        return ActorCritic(self.env.action_size, self.discrete, tuple(config.hidden_sizes), 0.0)

    def _normalize(self, config, stats, obs):
        return normalization.normalize(stats, obs) if config.normalize_obs else obs

    def act(self, params, obs_stats, config, key, obs, deterministic: bool = False):
        """Actions for task-conditioned ``obs[..., obs_size + K]`` (raw; normalized here)."""
        net = self.network(config)
        dist, _ = net.apply(params, self._normalize(config, obs_stats, obs))
        return net.head.mode(dist) if deterministic else net.head.sample(key, dist)

    def make_policy(self, state: MultiTaskState, config, deterministic: bool = False):
        params, obs_stats = state.params, state.obs_stats
        return lambda key, obs: self.act(params, obs_stats, config, key, obs, deterministic)

    def _check(self, config: MultiTaskConfig, tasks: TaskParams) -> None:
        """Static checks at trace time (rates are checked by ``config.validate()``)."""
        num = jax.tree.leaves(tasks)[0].shape[0]
        if num != self.num_tasks:
            raise ValueError(f"MultiTaskPPO was built for {self.num_tasks} tasks, got {num}")
        if config.num_envs % self.num_tasks:
            raise ValueError(f"num_envs = {config.num_envs} must be a multiple of the number of "
                             f"tasks ({self.num_tasks})")
        if (config.num_steps * config.num_envs // self.num_tasks) % config.num_minibatches:
            raise ValueError(f"num_steps * num_envs / K = {config.num_steps * config.num_envs}"
                             f" / {self.num_tasks} samples per task must divide into "
                             f"num_minibatches = {config.num_minibatches}")

    def _init(self, key: jax.Array, config: MultiTaskConfig, tasks: TaskParams) -> MultiTaskState:
        self._check(config, tasks)
        net_key, env_key, key = jax.random.split(key, 3)
        obs_size = self.task_env.observation_size
        params = self.network(config).init(net_key, jnp.zeros((1, obs_size), jnp.float32))
        if not self.discrete:
            params = set_log_std(params, config.init_log_std)
        per_env = config.num_envs // self.num_tasks
        space = fixed_space(jax.tree.map(lambda x: jnp.repeat(x, per_env, axis=0), tasks))
        env_state, obs = reset_batch(self.train_env, env_key, space, config.num_envs, 0)
        return MultiTaskState(
            params=params, opt_state=ppo_optimizer(config.max_grad_norm).init(params),
            obs_stats=normalization.init(obs_size),
            return_stats=normalization.init(self.num_tasks),
            return_acc=jnp.zeros(config.num_envs, jnp.float32), env_state=env_state, obs=obs,
            space=space, key=key, update_step=jnp.int32(0))

    def _update(self, state: MultiTaskState, config: MultiTaskConfig
                ) -> Tuple[MultiTaskState, Dict[str, jax.Array]]:
        k_tasks, net = self.num_tasks, self.network(config)
        key, rollout_key, epoch_key = jax.random.split(state.key, 3)

        def policy(k, obs):
            dist, value = net.apply(state.params, self._normalize(config, state.obs_stats, obs))
            action = net.head.sample(k, dist)
            return action, {"log_prob": net.head.log_prob(dist, action), "value": value}

        carry, traj = rollout(policy, self.train_env, rollout_key, state.env_state, state.obs,
                              state.space, config.num_steps, params_axis=0)
        obs = self._normalize(config, state.obs_stats, traj.obs)
        _, next_value = net.apply(state.params,
                                  self._normalize(config, state.obs_stats, traj.final_obs))
        obs_stats = (normalization.update(state.obs_stats, traj.obs)
                     if config.normalize_obs else state.obs_stats)

        # Per-task return normalization: fold this rollout's discounted returns into each
        # task's statistics, then divide the task's rewards by its return std.
        reward = traj.reward * config.reward_scale
        return_acc, disc = discounted_returns(reward, traj.done, state.return_acc, config.gamma)
        return_stats = normalization.update(state.return_stats, by_task(disc, k_tasks).T)
        per_env = config.num_envs // k_tasks
        env_scale = jnp.repeat(per_task_reward_scale(return_stats), per_env)
        reward = jnp.where(config.per_task_norm, reward * env_scale, reward)
        advantages, targets = gae(reward, traj.extras["value"], next_value, traj.terminated,
                                  traj.done, config.gamma, config.gae_lambda)
        batch = Batch(obs, traj.action, traj.extras["log_prob"], advantages, targets)
        batch = jax.tree.map(lambda x: by_task(x, k_tasks), batch)  # [K, T * M, ...]

        lr = config.learning_rate
        if config.anneal_lr:
            lr = lr * (1.0 - state.update_step.astype(jnp.float32) / config.num_updates)
        (params, opt_state), stats = self._epochs(config, lr, state.params, state.opt_state,
                                                  batch, epoch_key)
        metrics = jax.tree.map(jnp.mean, stats)
        scales = state.space.nominal.reward_scale.reshape(k_tasks, per_env)
        last = carry.env_state.last_return.reshape(k_tasks, per_env) / scales
        task_returns = last.mean(1)  # [K], each task in its own (unscaled) units
        for k in range(k_tasks):
            metrics[f"return_task_{k}"] = task_returns[k]
        metrics["episode_return"] = task_returns.mean()
        metrics["worst_task_return"] = task_returns.min()
        new_state = state.replace(
            params=params, opt_state=opt_state, obs_stats=obs_stats, return_stats=return_stats,
            return_acc=return_acc, env_state=carry.env_state, obs=carry.obs, key=key,
            update_step=state.update_step + 1)
        return new_state, metrics

    def _epochs(self, config, lr, params, opt_state, batch: Batch, key):
        """``num_epochs`` passes over ``batch`` (leaves ``[K, n, ...]``); every minibatch holds
        ``n / num_minibatches`` samples of each task. Stats ``[epochs, minibatches]``."""
        k_tasks, nmb = self.num_tasks, config.num_minibatches
        n = batch.advantage.shape[1]
        net, tx = self.network(config), ppo_optimizer(config.max_grad_norm)

        def task_loss(p, mb: Batch):  # leaves [b, ...]: one task's part of a minibatch
            dist, value = net.apply(p, mb.obs)
            return clipped_surrogate_loss(net.head.log_prob(dist, mb.action), value,
                                          net.head.entropy(dist), mb, config.clip_eps,
                                          config.vf_coef, config.ent_coef,
                                          normalize_advantage=False)

        def minibatch_step(carry, xs):
            p, o = carry
            mb, pc_key = xs  # leaves [K, b, ...]
            mb = mb._replace(advantage=normalize_task_advantages(mb.advantage,
                                                                 config.per_task_norm))
            (loss, stats), grads = jax.vmap(jax.value_and_grad(task_loss, has_aux=True),
                                            in_axes=(None, 0))(p, mb)
            cos = task_cosines(grads)
            if k_tasks > 1:  # static: one task has nothing to conflict with
                surgery = pcgrad(grads, pc_key)
                grads = jax.tree.map(lambda a, b: jnp.where(config.pcgrad, a, b), surgery, grads)
            grad = jax.tree.map(lambda g: g.mean(0), grads)
            updates, o = tx.update(grad, o, p)
            p = jax.tree.map(lambda w, u: w - lr * u, p, updates)
            stats = {name: v.mean() for name, v in stats.items()}
            stats.update(loss=loss.mean(), **self._conflict_metrics(cos),
                         grad_norm=jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grad))))
            task_norms = jnp.sqrt(sum(jnp.sum(g.reshape(k_tasks, -1) ** 2, 1)
                                      for g in jax.tree.leaves(grads)))
            for k in range(k_tasks):
                stats[f"grad_norm_task_{k}"] = task_norms[k]
            return (p, o), stats

        def epoch(carry, ekey):
            perm_key, pc_key = jax.random.split(ekey)
            perms = jax.vmap(lambda kk: jax.random.permutation(kk, n))(
                jax.random.split(perm_key, k_tasks))  # [K, n]: each task shuffled on its own

            def split(x):  # [K, n, ...] -> [nmb, K, n / nmb, ...]
                x = jnp.take_along_axis(x, perms.reshape(perms.shape + (1,) * (x.ndim - 2)), 1)
                return jnp.swapaxes(x.reshape((k_tasks, nmb, n // nmb) + x.shape[2:]), 0, 1)

            return jax.lax.scan(minibatch_step, carry,
                                (jax.tree.map(split, batch), jax.random.split(pc_key, nmb)))

        return jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, config.num_epochs))

    def _conflict_metrics(self, cos: jax.Array) -> Dict[str, jax.Array]:
        """Scalars from the ``[K, K]`` cosine matrix (none for a single task)."""
        i, j = np.triu_indices(self.num_tasks, 1)
        if len(i) == 0:
            return {}
        pairs = cos[i, j]
        out = {f"grad_cos_{a}_{b}": pairs[n] for n, (a, b) in enumerate(zip(i, j))}
        out.update(grad_cos_mean=pairs.mean(), grad_cos_min=pairs.min(),
                   grad_conflict_frac=(pairs < 0).mean())
        return out

    # ------------------------------------------------------------------------------ evaluation
    def evaluate(self, state: MultiTaskState, config: MultiTaskConfig, tasks: TaskParams,
                 key: jax.Array, deterministic: bool = True) -> jax.Array:
        """``[K]``: one episode of each task (``tasks`` leaves ``[K, ...]``), the return in
        the task's own units (the env reward before ``reward_scale``). Pure; jit / vmap it."""
        env = self.task_env

        def episode(task, k):
            reset_key, k = jax.random.split(k)
            env_state, obs = env.reset(reset_key, task)

            def step(carry, _):
                k, env_state, obs, total, alive = carry
                k, act_key, step_key = jax.random.split(k, 3)
                action = self.act(state.params, state.obs_stats, config, act_key, obs,
                                  deterministic)
                env_state, obs, reward, done, _ = env.step(step_key, env_state, action, task)
                total = total + jnp.where(alive, reward / task.reward_scale, 0.0)
                return (k, env_state, obs, total, alive & ~done), None

            init = (k, env_state, obs, jnp.float32(0.0), jnp.bool_(True))
            return jax.lax.scan(step, init, None, length=self.env.max_steps)[0][3]

        num = jax.tree.leaves(tasks)[0].shape[0]
        return jax.vmap(episode)(tasks, jax.random.split(key, num))
