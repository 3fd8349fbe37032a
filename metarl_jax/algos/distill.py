"""Actor-Mimic / policy distillation (Parisotto et al. 2016; Rusu et al. 2016), on the contract.

    distill = Distill(env, num_tasks=T, teacher=PPO(env), teacher_config=cfg)
    state = distill.init(key, config, task_params)      # task_params: Params stacked [T]
    state, m = distill.train_chunk(state, config, n, teachers)   # Teachers(params[T], stats[T])

One student network (``nets.ActorCritic``, PPO's architecture, so a PPO run can finetune it)
learns to act like ``T`` expert teachers, each trained on its own task. DAgger-style: the
student's own stochastic policy collects ``num_steps`` steps in ``num_envs_per_task`` envs of
every task; on the visited states, the student's action distribution is moved towards the
teacher of that state's task by minimizing

    L = E_s[ KL(pi_teacher(.|s) || pi_student(.|s)) ] + value_coef * 0.5 E_s[(V_s(s) - V_t(s))^2]

(the cross-entropy to the teacher's distribution up to the teacher's entropy, a constant; the
value term copies the teachers' critics so finetuning starts with a critic too). The KL has a
closed form for both policy heads: ``categorical_kl`` (discrete) and ``gaussian_kl`` (diagonal
Gaussian, continuous). Each teacher sees observations normalized by its own statistics, the
student by its own running statistics (as PPO does).

Actor-Mimic's feature-regression loss (``feature_coef`` = the paper's beta > 0): one linear
regressor per task, ``f_t(h) = h W_t + b_t``, predicts teacher ``t``'s last hidden actor features
from the student's, and ``feature_coef * E_s[||f_t(h_student(s)) - h_teacher_t(s)||^2]`` joins
the loss, trained through both the regressors and the student (``feature_regression_loss``).
With ``feature_coef = 0`` (default) the term is computed but has no effect on training.

Shapes: ``E = T * num_envs_per_task`` envs, task-major (env ``e`` plays task
``e // num_envs_per_task``); a rollout is ``[num_steps, E, ...]``.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
from flax import struct

from metarl_jax.algos.learner import Learner
from metarl_jax.algos.ppo_loss import ppo_optimizer, run_epochs
from metarl_jax.core import normalization
from metarl_jax.core.env import Env, is_discrete
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset, EpisodeStats
from metarl_jax.nets.actor_critic import ActorCritic
from metarl_jax.randomization.param_space import fixed_space

static = dict(pytree_node=False)


def categorical_kl(teacher_logits: jax.Array, student_logits: jax.Array) -> jax.Array:
    """``KL(p_t || p_s) = sum_a p_t(a) (log p_t(a) - log p_s(a))``: logits ``[..., A]`` ->
    ``[...]``."""
    log_t = jax.nn.log_softmax(teacher_logits)
    return jnp.sum(jnp.exp(log_t) * (log_t - jax.nn.log_softmax(student_logits)), axis=-1)


def gaussian_kl(teacher: Tuple[jax.Array, jax.Array], student: Tuple[jax.Array, jax.Array]
                ) -> jax.Array:
    """KL between diagonal Gaussians ``(mean, log_std)``, each ``[..., A]``, summed over ``A``:
    ``log s_s - log s_t + (s_t^2 + (m_t - m_s)^2) / (2 s_s^2) - 1/2`` per dimension."""
    (m_t, ls_t), (m_s, ls_s) = teacher, student
    var_ratio = jnp.exp(2.0 * (ls_t - ls_s))
    return jnp.sum(ls_s - ls_t + 0.5 * (var_ratio + jnp.square(m_t - m_s) * jnp.exp(-2.0 * ls_s))
                   - 0.5, axis=-1)


def actor_features(params: Any, obs: jax.Array, num_hidden: int) -> jax.Array:
    """The last hidden layer of an ``ActorCritic``'s actor MLP (``nets.mlp.MLP``: tanh after
    each of its ``num_hidden`` Dense layers) on ``obs[..., obs_size]``: ``[..., H]``."""
    actor, h = params["params"]["actor"], obs
    for i in range(num_hidden):
        h = jnp.tanh(h @ actor[f"Dense_{i}"]["kernel"] + actor[f"Dense_{i}"]["bias"])
    return h


def feature_regression_loss(regressor: Tuple[jax.Array, jax.Array], student_h: jax.Array,
                            teacher_h: jax.Array, task: jax.Array) -> jax.Array:
    """Actor-Mimic's feature regression: ``mean_n ||student_h[n] W[task[n]] + b[task[n]] -
    teacher_h[n]||^2`` for ``regressor = (W[T, Hs, Ht], b[T, Ht])``, ``student_h[N, Hs]``,
    ``teacher_h[N, Ht]``, ``task[N]`` int."""
    weights, bias = regressor
    prediction = jnp.einsum("nh,nhk->nk", student_h, weights[task]) + bias[task]
    return jnp.mean(jnp.sum(jnp.square(prediction - teacher_h), axis=-1))


def policy_kl(teacher_dist: Any, student_dist: Any, discrete: bool) -> jax.Array:
    """``KL(teacher || student)`` per state for either policy head."""
    if discrete:
        return categorical_kl(teacher_dist, student_dist)
    return gaussian_kl(teacher_dist, student_dist)


@struct.dataclass
class DistillConfig:
    """Sizes static, rates leaves."""

    num_envs_per_task: int = struct.field(default=8, **static)
    num_steps: int = struct.field(default=64, **static)
    total_steps: int = struct.field(default=100_000, **static)  # env steps, all tasks together
    num_epochs: int = struct.field(default=4, **static)
    num_minibatches: int = struct.field(default=4, **static)
    hidden_sizes: Tuple[int, ...] = struct.field(default=(64, 64), **static)
    normalize_obs: bool = struct.field(default=True, **static)
    learning_rate: float = 1e-3
    value_coef: float = 0.5
    feature_coef: float = 0.0  # Actor-Mimic's beta (feature regression; module doc)
    max_grad_norm: float = 0.5

    def steps_per_update(self, num_tasks: int) -> int:
        return num_tasks * self.num_envs_per_task * self.num_steps

    def validate(self) -> "DistillConfig":
        for name in ("num_envs_per_task", "num_steps", "total_steps", "num_epochs",
                     "num_minibatches"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"DistillConfig.{name} must be >= 1, got {getattr(self, name)}")
        if (self.num_envs_per_task * self.num_steps) % self.num_minibatches:
            raise ValueError("DistillConfig: num_envs_per_task * num_steps must be divisible "
                             "by num_minibatches")
        if not (self.learning_rate > 0 and self.max_grad_norm > 0 and self.value_coef >= 0
                and self.feature_coef >= 0):
            raise ValueError("DistillConfig: need learning_rate > 0, max_grad_norm > 0, "
                             "value_coef >= 0, feature_coef >= 0")
        return self


class Teachers(NamedTuple):
    """``T`` trained teachers: PPO ``params`` and ``obs_stats`` stacked ``[T, ...]``."""

    params: Any
    obs_stats: Any


@struct.dataclass
class DistillState:
    params: Any  # the student's ActorCritic params
    regressor: Tuple[jax.Array, jax.Array]  # (W[T, Hs, Ht], b[T, Ht]): feature regression
    opt_state: Any  # over {"student": params, "regressor": regressor}
    obs_stats: normalization.RunningStats
    env_state: Any  # [E, ...]
    obs: jax.Array  # [E, obs_size]
    spaces: Any  # [E] one fixed space per env (its task)
    key: jax.Array
    update_step: jax.Array  # [] int32


class Distill(Learner):
    """Multi-teacher policy distillation (module doc). ``teacher``: the PPO learner whose
    ``network(teacher_config)`` the teachers were trained with."""

    def __init__(self, env: Env, num_tasks: int, teacher: Any, teacher_config: Any):
        self.env, self.num_tasks = env, int(num_tasks)
        self.teacher, self.teacher_config = teacher, teacher_config
        self.discrete = is_discrete(env.action_space)
        self.train_env = EpisodeStats(AutoReset(env))
        super().__init__()

    def network(self, config: DistillConfig) -> ActorCritic:
        return ActorCritic(self.env.action_size, self.discrete, tuple(config.hidden_sizes), 0.0)

    def num_updates(self, config: DistillConfig) -> int:
        return config.total_steps // config.steps_per_update(self.num_tasks)

    def trainable(self, state: DistillState) -> Any:
        return (state.params, state.regressor)

    def student_params_for_ppo(self, state: DistillState) -> Tuple[Any, Any]:
        """``(params, obs_stats)`` to put into a ``PPOState`` of the same architecture."""
        return state.params, state.obs_stats

    def _init(self, key: jax.Array, config: DistillConfig, task_params: Any) -> DistillState:
        net_key, env_key, key = jax.random.split(key, 3)
        E = self.num_tasks * config.num_envs_per_task
        task_of_env = jnp.arange(E) // config.num_envs_per_task
        spaces = jax.vmap(fixed_space)(jax.tree.map(lambda x: x[task_of_env], task_params))
        params = self.network(config).init(net_key, jnp.zeros((1, self.env.observation_size)))
        hs, ht = config.hidden_sizes[-1], self.teacher_config.hidden_sizes[-1]
        eye = jnp.eye(hs, ht)  # identity where the sizes allow: a neutral start
        regressor = (jnp.broadcast_to(eye, (self.num_tasks, hs, ht)),
                     jnp.zeros((self.num_tasks, ht)))
        env_state, obs = reset_batch(self.train_env, env_key, spaces, E, params_axis=0)
        trained = {"student": params, "regressor": regressor}
        return DistillState(params=params, regressor=regressor,
                            opt_state=ppo_optimizer(config.max_grad_norm).init(trained),
                            obs_stats=normalization.init(self.env.observation_size),
            env_state=env_state, obs=obs, spaces=spaces, key=key, update_step=jnp.int32(0))

    def teacher_outputs(self, teachers: Teachers, obs: jax.Array
                        ) -> Tuple[Any, jax.Array, jax.Array]:
        """Teacher ``(dist, value, hidden features[..., Ht])`` for ``obs[T, ..., obs_size]``
        (task-major: row ``t`` goes to teacher ``t``)."""
        net = self.teacher.network(self.teacher_config)
        num_hidden = len(self.teacher_config.hidden_sizes)

        def one(params, stats, o):
            if self.teacher_config.normalize_obs:
                o = normalization.normalize(stats, o)
            dist, value = net.apply(params, o)
            return dist, value, actor_features(params, o, num_hidden)

        return jax.vmap(one)(teachers.params, teachers.obs_stats, obs)

    def _update(self, state: DistillState, config: DistillConfig, teachers: Teachers
                ) -> Tuple[DistillState, Dict[str, jax.Array]]:
        net = self.network(config)
        key, rollout_key, perm_key = jax.random.split(state.key, 3)
        norm = (lambda s, o: normalization.normalize(s, o)) if config.normalize_obs else (
            lambda s, o: o)

        def policy(k, obs):
            dist, _ = net.apply(state.params, norm(state.obs_stats, obs))
            return net.head.sample(k, dist), {}

        carry, traj = rollout(policy, self.train_env, rollout_key, state.env_state, state.obs,
                              state.spaces, config.num_steps, params_axis=0)
        T, N, L = self.num_tasks, config.num_envs_per_task, config.num_steps
        by_task = traj.obs.reshape(L, T, N, -1).transpose(1, 0, 2, 3)  # [T, L, N, obs]
        t_dist, t_value, t_features = self.teacher_outputs(teachers, by_task)
        to_samples = lambda x: x.reshape((T * L * N,) + x.shape[3:])  # noqa: E731
        task = jnp.broadcast_to(jnp.arange(T)[:, None, None], (T, L, N))
        batch = dict(obs=to_samples(norm(state.obs_stats, by_task)),
                     dist=jax.tree.map(to_samples, t_dist), value=to_samples(t_value),
                     features=to_samples(t_features), task=to_samples(task))
        obs_stats = (normalization.update(state.obs_stats, traj.obs) if config.normalize_obs
                     else state.obs_stats)

        num_hidden = len(config.hidden_sizes)

        def loss_fn(trained, mb):
            dist, value = net.apply(trained["student"], mb["obs"])
            kl = jnp.mean(policy_kl(mb["dist"], dist, self.discrete))
            value_loss = 0.5 * jnp.mean(jnp.square(value - mb["value"]))
            feature_loss = feature_regression_loss(
                trained["regressor"], actor_features(trained["student"], mb["obs"], num_hidden),
                mb["features"], mb["task"])
            loss = kl + config.value_coef * value_loss + config.feature_coef * feature_loss
            return loss, {"kl": kl, "value_loss": value_loss, "feature_loss": feature_loss}

        (trained, opt_state), stats = run_epochs(
            loss_fn, ppo_optimizer(config.max_grad_norm), config.learning_rate,
            {"student": state.params, "regressor": state.regressor}, state.opt_state, batch,
            perm_key, config.num_epochs, config.num_minibatches)
        params = trained["student"]
        metrics = jax.tree.map(jnp.mean, stats)
        metrics["distill_loss"] = (metrics["kl"] + config.value_coef * metrics["value_loss"]
                                   + config.feature_coef * metrics["feature_loss"])
        last = carry.env_state.last_return.reshape(T, N).mean(-1)
        metrics.update({f"episode_return_task{t}": last[t] for t in range(T)})
        metrics["episode_return"] = jnp.mean(last)
        return state.replace(params=params, regressor=trained["regressor"], opt_state=opt_state,
                             obs_stats=obs_stats,
                             env_state=carry.env_state, obs=carry.obs, key=key,
                             update_step=state.update_step + 1), metrics
