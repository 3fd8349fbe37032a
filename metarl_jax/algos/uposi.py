"""UP-OSI: a universal policy conditioned on physics, and an online system identifier.

Yu, Tan, Liu, Turk, "Preparing for the Unknown: Learning a Universal Policy with Online System
Identification", RSS 2017.

* **UP**: a policy ``pi(s, mu)`` whose observation is augmented with the true, normalized physics
  ``mu`` (``ParamObservation``), trained with domain randomization (here: ``PPO``).
* **OSI**: a regressor ``mu_hat = f(history)`` from the last ``H`` transitions (``s_k, a_k,
  s_{k+1} - s_k``; ``TransitionHistory``) to the physics, trained by supervised regression on
  transitions labelled with the true params the sampler drew. As in the paper, data collection is
  iterated (DAgger-style) so the OSI learns on the states it will meet: collection 0 runs the UP
  with the true params, every later collection runs the UP fed with the current OSI's estimate;
  the dataset aggregates the last ``buffer_collections`` collections (a ring buffer).
* **Deployment**: ``a = pi(s, f(history))``.

``OSILearner`` is a ``Learner`` (``metarl_jax.algos.learner``): ``init``, ``init_seeds``,
``train_chunk(state, config, n, up)`` (compiled ``lax.scan`` over updates; one update = one
collection + ``fit_steps`` Adam steps) and the non-finite guard come from the contract, with the
UP's parameters passed in as data (the update's context). Targets and estimates are normalized
params in [-1, 1].

Shapes: ``N = num_envs``, ``T = num_steps``, ``H`` transitions, ``D`` identified params,
``X = H * F`` history features, ``B = buffer_collections * T * N`` dataset rows.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos.learner import Learner
from metarl_jax.core import normalization
from metarl_jax.core.context_wrappers import ContextLayout, ParamObservation
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset
from metarl_jax.nets.mlp import MLP

static = dict(pytree_node=False)


@struct.dataclass
class OSIConfig:
    """OSI training hyperparameters (sizes static, rates traced)."""

    num_envs: int = struct.field(default=64, **static)
    num_steps: int = struct.field(default=200, **static)  # steps per collection
    num_updates: int = struct.field(default=10, **static)  # collections (each followed by a fit)
    buffer_collections: int = struct.field(default=4, **static)  # collections kept in the dataset
    fit_steps: int = struct.field(default=300, **static)  # Adam steps after each collection
    batch_size: int = struct.field(default=256, **static)
    hidden_sizes: Tuple[int, ...] = struct.field(default=(128, 128), **static)
    stochastic_frac: float = struct.field(default=0.5, **static)  # envs that sample UP actions
    learning_rate: float = 1e-3

    def validate(self) -> "OSIConfig":
        for name in ("num_envs", "num_steps", "num_updates", "buffer_collections", "fit_steps",
                     "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"OSIConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.stochastic_frac <= 1.0:
            raise ValueError(f"OSIConfig.stochastic_frac must be in [0, 1], "
                             f"got {self.stochastic_frac}")
        if not float(self.learning_rate) > 0:
            raise ValueError(f"OSIConfig.learning_rate must be > 0, got {self.learning_rate}")
        return self


@struct.dataclass
class OSIState:
    """Everything OSI training needs to continue bit-for-bit (checkpointed whole)."""

    params: Any  # OSI network
    opt_state: Any
    in_stats: normalization.RunningStats  # of the history features [X]
    data_x: jax.Array  # [B, X] history features
    data_y: jax.Array  # [B, D] normalized true params (labels)
    data_size: jax.Array  # [] int32 rows filled
    env_state: Any  # [N, ...] AutoReset(context env) state
    obs: jax.Array  # [N, obs_size]
    space: Any  # the prior the episodes' physics are drawn from (a ParamSpace)
    key: jax.Array
    update_step: jax.Array  # [] int32 collections done


class OSILearner(Learner):
    """Trains the OSI of a fixed universal policy.

    Args:
        env: the context env ``ParamObservation(TransitionHistory(base, H), fields, low, high)``.
        up_act: ``up_act(up, key, up_obs[..., raw + D], deterministic) -> action``, where ``up``
            is the UP's data (e.g. ``(params, obs_stats)``), passed to ``train_chunk``.
    """

    def __init__(self, env: ParamObservation, up_act):
        self.env = env
        self.layout = ContextLayout.of(env)
        self.num_params = self.layout.params
        self.collect_env = AutoReset(env)
        self.up_act = up_act
        super().__init__()

    def network(self, config: OSIConfig) -> MLP:
        return MLP(tuple(config.hidden_sizes), self.num_params)

    def estimate(self, params, in_stats, config: OSIConfig, history: jax.Array) -> jax.Array:
        """``history[..., X] -> mu_hat[..., D]`` (normalized params)."""
        return self.network(config).apply(params, normalization.normalize(in_stats, history))

    def act(self, up, osi_params, in_stats, config: OSIConfig, key, obs, deterministic=True):
        """The deployed UP-OSI policy on a context-env observation ``obs[..., obs_size]``: the
        true-params part of ``obs`` is never read."""
        raw, history, _ = self.layout.split(obs)
        mu_hat = self.estimate(osi_params, in_stats, config, history)
        return self.up_act(up, key, jnp.concatenate([raw, mu_hat], -1), deterministic)

    def make_policy(self, state: OSIState, config: OSIConfig, deterministic: bool = True, *,
                    up: Any = None):
        """``act(key, obs) -> action`` of the deployed UP-OSI for one seed's OSI ``state`` and
        the UP's data ``up`` (required: the OSI only estimates the physics the UP acts on)."""
        if up is None:
            raise ValueError("OSILearner.make_policy needs up=<the universal policy's data>")
        return lambda key, obs: self.act(up, state.params, state.in_stats, config, key, obs,
                                         deterministic)

    def _init(self, key, config: OSIConfig, space) -> OSIState:
        net_key, env_key, key = jax.random.split(key, 3)
        params = self.network(config).init(net_key, jnp.zeros((1, self.layout.history)))
        env_state, obs = reset_batch(self.collect_env, env_key, space, config.num_envs)
        rows = config.buffer_collections * config.num_steps * config.num_envs
        return OSIState(
            params=params, opt_state=optax.adam(config.learning_rate).init(params),
            in_stats=normalization.init(self.layout.history),
            data_x=jnp.zeros((rows, self.layout.history), jnp.float32),
            data_y=jnp.zeros((rows, self.num_params), jnp.float32),
            data_size=jnp.int32(0), env_state=env_state, obs=obs, space=space, key=key,
            update_step=jnp.int32(0))

    def _update(self, state: OSIState, config: OSIConfig, up
                ) -> Tuple[OSIState, Dict[str, jax.Array]]:
        key, roll_key, fit_key = jax.random.split(state.key, 3)
        first = state.update_step == 0
        stochastic = jnp.arange(config.num_envs) < round(config.stochastic_frac * config.num_envs)

        def policy(k, obs):  # obs [N, obs_size]
            raw, history, true = self.layout.split(obs)
            mu_hat = self.estimate(state.params, state.in_stats, config, history)
            mu = jnp.where(first, true, mu_hat)  # collection 0: the UP with the true params
            up_obs = jnp.concatenate([raw, mu], -1)
            sampled = self.up_act(up, k, up_obs, False)
            mode = self.up_act(up, k, up_obs, True)
            return jnp.where(stochastic[:, None], sampled, mode), {}

        carry, traj = rollout(policy, self.collect_env, roll_key, state.env_state, state.obs,
                              state.space, config.num_steps)
        _, history, true = self.layout.split(traj.obs)  # [T, N, X], [T, N, D]
        new_x = history.reshape(-1, history.shape[-1])
        new_y = true.reshape(-1, true.shape[-1])
        rows = new_x.shape[0]
        slot = (state.update_step % config.buffer_collections) * rows
        data_x = jax.lax.dynamic_update_slice(state.data_x, new_x, (slot, 0))
        data_y = jax.lax.dynamic_update_slice(state.data_y, new_y, (slot, 0))
        data_size = jnp.minimum(state.data_size + rows, data_x.shape[0])
        # Error of the OSI that collected this data, on it (before fitting): the deployment error.
        pre_rmse = jnp.sqrt(jnp.mean(
            (self.estimate(state.params, state.in_stats, config, new_x) - new_y) ** 2, axis=0))
        in_stats = normalization.update(state.in_stats, new_x)

        tx = optax.adam(config.learning_rate)
        net = self.network(config)

        def loss_fn(params, x, y):
            return jnp.mean((net.apply(params, normalization.normalize(in_stats, x)) - y) ** 2)

        def fit_step(carry, k):
            params, opt_state = carry
            idx = jax.random.randint(k, (config.batch_size,), 0, data_size)
            loss, grads = jax.value_and_grad(loss_fn)(params, data_x[idx], data_y[idx])
            updates, opt_state = tx.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            fit_step, (state.params, state.opt_state), jax.random.split(fit_key, config.fit_steps))
        metrics = {"osi_loss": losses[-10:].mean(), "episode_reward": traj.reward.mean()}
        for i in range(self.num_params):
            metrics[f"osi_rmse_{i}"] = pre_rmse[i]
        new_state = state.replace(
            params=params, opt_state=opt_state, in_stats=in_stats, data_x=data_x, data_y=data_y,
            data_size=data_size, env_state=carry.env_state, obs=carry.obs, key=key,
            update_step=state.update_step + 1)
        return new_state, metrics


def deployment_trace(osi: OSILearner, up, osi_params, in_stats, config: OSIConfig, params,
                     key: jax.Array, num_steps: int):
    """One episode of the deployed UP-OSI (deterministic) on fixed ``params`` (unbatched).

    Returns ``(mu_hat[T, D], mu_true[T, D], reward[T])``: the OSI's estimate from the history
    available when acting at step ``t`` (``t`` transitions, at most ``H``), the true normalized
    params, and the rewards.
    """
    reset_key, key = jax.random.split(key)
    state, obs = osi.env.reset(reset_key, params)

    def step(carry, k):
        state, obs = carry
        _, history, true = osi.layout.split(obs)
        mu_hat = osi.estimate(osi_params, in_stats, config, history)
        action = osi.act(up, osi_params, in_stats, config, k, obs, deterministic=True)
        state, obs, reward, _, _ = osi.env.step(k, state, action, params)
        return (state, obs), (mu_hat, true, reward)

    _, trace = jax.lax.scan(step, (state, obs), jax.random.split(key, num_steps))
    return trace
