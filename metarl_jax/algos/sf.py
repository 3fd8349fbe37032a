"""Deep successor features with GPI (SFQL, Barreto et al. 2017), on the learner contract.

    sf = SFLearner(env)                       # env: discrete actions, info["features"] = phi [K]
    state = sf.init(key, config, space)       # space: the task (its params hold the reward's w)
    state, m = sf.train_chunk(state, config, n, library)   # library: frozen policies, below

A network ``psi_theta(obs) -> [A, K]`` estimates the successor features of the policy being
learned; the task weights ``w_hat[K]`` are regressed on the observed rewards (least squares on
running sums of ``phi phi^T`` and ``phi r``, shrunk towards an optimistic prior ``w_prior`` with
strength ``w_ridge``), never read from the env. Both
acting and the TD target use GPI over a **library** of frozen policies' SF networks plus the
learner's own (target) network:

    (i*, a*) = argmax_{i, a} psi_i(s', a) . w_hat         i over library (masked) + own target net
    loss     = mean || psi_theta(s, a) - (phi + gamma (1 - terminated) psi_{i*}(s', a*)) ||^2

so the learned ``psi`` starts from the best stored policy's values and improves on them (GPI's
guarantee: ``Q_new >= max_i Q_i``). With an all-False ``library.mask`` this is plain SF
Q-learning, i.e. learning the task from scratch with ``Q = psi . w_hat``; both compile to the
same program (the mask is data). Behaviour is epsilon-greedy on the GPI values, epsilon decaying
linearly from ``eps_start`` to ``eps_end`` over ``eps_decay_fraction`` of the run.

Shapes: ``N = num_envs``; each update steps every env once (``N`` transitions into the replay
buffer) and takes one gradient step on a batch of ``batch_size`` once ``learning_starts`` env
steps are stored. ``Library.params`` holds ``L`` networks stacked ``[L, ...]``.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos.learner import Learner
from metarl_jax.algos.successor_features import gpi_values
from metarl_jax.core import replay
from metarl_jax.core.env import Env, is_discrete
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.core.wrappers import AutoReset, EpisodeStats
from metarl_jax.nets.mlp import MLP

static = dict(pytree_node=False)


@struct.dataclass
class SFConfig:
    """Sizes static, rates leaves (a learning-rate change does not recompile)."""

    num_envs: int = struct.field(default=16, **static)
    total_steps: int = struct.field(default=40_000, **static)  # env steps, all envs together
    hidden_sizes: Tuple[int, ...] = struct.field(default=(64, 64), **static)
    buffer_size: int = struct.field(default=20_000, **static)
    batch_size: int = struct.field(default=64, **static)
    learning_starts: int = struct.field(default=1000, **static)  # env steps before learning
    learning_rate: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.01  # Polyak rate of the target network
    eps_start: float = 1.0
    eps_end: float = 0.05
    eps_decay_fraction: float = 0.3
    # w_hat's Gaussian prior: mean w_prior for every feature, strength w_ridge (in samples).
    # An optimistic prior (> every reward weight seen) makes GPI visit features it has not
    # seen yet, so every region's weight gets identified; 0 would leave unseen regions at 0.
    w_prior: float = 1.0
    w_ridge: float = 0.1

    @property
    def num_updates(self) -> int:
        return self.total_steps // self.num_envs

    def validate(self) -> "SFConfig":
        for name in ("num_envs", "total_steps", "batch_size", "buffer_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"SFConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_updates < 1:
            raise ValueError(f"SFConfig.total_steps = {self.total_steps} is less than one "
                             f"update (num_envs = {self.num_envs})")
        if self.buffer_size < max(self.batch_size, self.num_envs):
            raise ValueError(f"SFConfig.buffer_size = {self.buffer_size} must hold a batch "
                             f"({self.batch_size}) and one step of every env ({self.num_envs})")
        if not 0.0 < self.gamma < 1.0:
            raise ValueError(f"SFConfig.gamma must be in (0, 1), got {self.gamma}")
        if not 0.0 <= self.eps_end <= self.eps_start <= 1.0:
            raise ValueError(f"SFConfig: need 0 <= eps_end <= eps_start <= 1, got "
                             f"{self.eps_end}, {self.eps_start}")
        return self


class SFNetwork(nn.Module):
    """``obs[..., obs_size] -> psi[..., A, K]``."""

    num_actions: int
    num_features: int
    hidden_sizes: Tuple[int, ...]

    @nn.compact
    def __call__(self, obs: jax.Array) -> jax.Array:
        out = MLP(self.hidden_sizes, self.num_actions * self.num_features, activation=nn.relu,
                  output_scale=0.1)(obs)
        return out.reshape(obs.shape[:-1] + (self.num_actions, self.num_features))


class Library(NamedTuple):
    """Frozen policies for GPI: ``params`` (``L`` SF networks stacked ``[L, ...]``), ``mask[L]``
    bool (False: left out; all False = learn from scratch)."""

    params: Any
    mask: jax.Array


class SFTransition(NamedTuple):
    obs: jax.Array  # [obs_size]
    action: jax.Array  # [] int32
    phi: jax.Array  # [K]
    next_obs: jax.Array  # [obs_size] (before any auto-reset)
    terminated: jax.Array  # [] float32


@struct.dataclass
class SFState:
    params: Any
    target_params: Any
    opt_state: Any
    buffer: replay.ReplayBuffer
    env_state: Any  # [N, ...]
    obs: jax.Array  # [N, obs_size]
    space: Any
    phi_phi: jax.Array  # [K, K] sum of phi phi^T over every step seen
    phi_r: jax.Array  # [K] sum of phi * reward
    key: jax.Array
    update_step: jax.Array  # [] int32


def regress_w(phi_phi: jax.Array, phi_r: jax.Array, ridge, prior=0.0) -> jax.Array:
    """Ridge regression of rewards on features, shrunk towards ``prior``:
    ``(sum phi phi^T + ridge I)^{-1} (sum phi r + ridge prior)``: ``[K]``."""
    return jnp.linalg.solve(phi_phi + ridge * jnp.eye(phi_r.shape[-1]),
                            phi_r + ridge * prior)


class SFLearner(Learner):
    """SF Q-learning with GPI over a library (module doc). Holds only the wrapped env."""

    def __init__(self, env: Env, num_features: int):
        if not is_discrete(env.action_space):
            raise ValueError("SFLearner needs discrete actions (GPI takes an exact argmax)")
        self.env, self.num_features = env, int(num_features)
        self.num_actions = env.action_space.n
        self.train_env = EpisodeStats(AutoReset(env))
        super().__init__()

    def network(self, config: SFConfig) -> SFNetwork:
        return SFNetwork(self.num_actions, self.num_features, tuple(config.hidden_sizes))

    def psi_all(self, config: SFConfig, own_params: Any, library: Library, obs: jax.Array
                ) -> Tuple[jax.Array, jax.Array]:
        """``(psi[L + 1, ..., A, K], mask[L + 1])``: the library's then the own network's."""
        net = self.network(config)
        lib = jax.vmap(net.apply, in_axes=(0, None))(library.params, obs)
        own = net.apply(own_params, obs)
        return (jnp.concatenate([lib, own[None]]),
                jnp.concatenate([library.mask, jnp.ones((1,), jnp.bool_)]))

    def gpi_act(self, config: SFConfig, params: Any, library: Library, w: jax.Array,
                obs: jax.Array) -> jax.Array:
        """Greedy GPI action ``[...]`` int32 for ``obs[..., obs_size]`` on the task ``w[K]``."""
        psis, mask = self.psi_all(config, params, library, obs)
        return jnp.argmax(gpi_values(psis, w, mask), axis=-1).astype(jnp.int32)

    def w_hat(self, state: SFState, config: SFConfig) -> jax.Array:
        return regress_w(state.phi_phi, state.phi_r, config.w_ridge, config.w_prior)

    def _init(self, key: jax.Array, config: SFConfig, space: Any) -> SFState:
        net_key, env_key, key = jax.random.split(key, 3)
        obs_size = self.env.observation_size
        params = self.network(config).init(net_key, jnp.zeros((1, obs_size), jnp.float32))
        env_state, obs = reset_batch(self.train_env, env_key, space, config.num_envs)
        K = self.num_features
        example = SFTransition(jnp.zeros(obs_size), jnp.int32(0), jnp.zeros(K),
                               jnp.zeros(obs_size), jnp.float32(0))
        return SFState(params=params, target_params=params,
                       opt_state=optax.adam(config.learning_rate).init(params),
                       buffer=replay.init(example, config.buffer_size), env_state=env_state,
                       obs=obs, space=space, phi_phi=jnp.zeros((K, K)), phi_r=jnp.zeros(K),
                       key=key, update_step=jnp.int32(0))

    def _update(self, state: SFState, config: SFConfig, library: Library
                ) -> Tuple[SFState, Dict[str, jax.Array]]:
        key, rollout_key, sample_key = jax.random.split(state.key, 3)
        w = self.w_hat(state, config)
        progress = state.update_step / (config.eps_decay_fraction * config.num_updates)
        eps = config.eps_start + (config.eps_end - config.eps_start) * jnp.minimum(progress, 1.0)

        def policy(k, obs):
            greedy_key, explore_key = jax.random.split(k)
            greedy = self.gpi_act(config, state.params, library, w, obs)
            random = jax.random.randint(explore_key, greedy.shape, 0, self.num_actions)
            explore = jax.random.uniform(greedy_key, greedy.shape) < eps
            return jnp.where(explore, random, greedy), {}

        carry, traj = rollout(policy, self.train_env, rollout_key, state.env_state, state.obs,
                              state.space, 1, info_keys=("features",))
        phi = traj.info["features"][0]  # [N, K]
        reward = traj.reward[0]
        buffer = replay.add(state.buffer, SFTransition(
            traj.obs[0], traj.action[0], phi, traj.final_obs[0],
            traj.terminated[0].astype(jnp.float32)))
        phi_phi = state.phi_phi + phi.T @ phi
        phi_r = state.phi_r + phi.T @ reward
        w = regress_w(phi_phi, phi_r, config.w_ridge, config.w_prior)

        batch = replay.sample(buffer, sample_key, config.batch_size)
        psis, mask = self.psi_all(config, state.target_params, library, batch.next_obs)
        q = jnp.where(mask[:, None, None], psis @ w, -jnp.inf)  # [L+1, B, A]
        best = jnp.argmax(q.reshape(q.shape[0], q.shape[1], -1).transpose(1, 0, 2)
                          .reshape(q.shape[1], -1), axis=-1)  # [B] over (policy, action)
        i_star, a_star = best // self.num_actions, best % self.num_actions
        rows = jnp.arange(config.batch_size)
        next_psi = psis[i_star, rows, a_star]  # [B, K]
        target = jax.lax.stop_gradient(
            batch.phi + config.gamma * (1.0 - batch.terminated)[:, None] * next_psi)
        net = self.network(config)

        def loss_fn(params):
            psi = net.apply(params, batch.obs)[rows, batch.action]
            return jnp.mean(jnp.sum(jnp.square(psi - target), axis=-1))

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = optax.adam(config.learning_rate).update(grads, state.opt_state)
        learn = (buffer.size >= config.learning_starts).astype(jnp.float32)
        updates = jax.tree.map(lambda u: learn * u, updates)
        params = optax.apply_updates(state.params, updates)
        opt_state = jax.tree.map(lambda new, old: jnp.where(learn > 0, new, old),
                                 opt_state, state.opt_state)
        target_params = jax.tree.map(lambda t, p: t + learn * config.tau * (p - t),
                                     state.target_params, params)
        metrics = dict(
            sf_loss=loss, grad_norm=optax.tree.norm(grads), epsilon=eps,
            episode_return=jnp.mean(carry.env_state.last_return),
            own_policy_fraction=jnp.mean(i_star == psis.shape[0] - 1),
        )
        return state.replace(params=params, target_params=target_params, opt_state=opt_state,
                             buffer=buffer, env_state=carry.env_state, obs=carry.obs,
                             phi_phi=phi_phi, phi_r=phi_r, key=key,
                             update_step=state.update_step + 1), metrics

