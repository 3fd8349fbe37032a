"""Gradient-based meta-RL: MAML-TRPO (Finn et al. 2017) and ProMP (Rothfuss et al. 2019).

One meta-iteration, compiled whole (``jit`` of ``update``; ``train_chunk`` scans updates)::

    tasks ~ space                                           B tasks (e.g. goals), vmap
    per task: theta_0 = theta; for i < k:                   k = num_inner_steps (static)
        samples_i ~ pi(theta_i)                             N episodes of T steps (core.rollout)
        theta_{i+1} = theta_i + lr * grad J_inner(theta_i; samples_i)
    samples_k ~ pi(theta_k)                                 post-adaptation samples
    outer: maximize the post-adaptation surrogate as a function of theta through the (recomputed,
    differentiable) inner steps on the fixed pre-adaptation samples:
      "trpo":  conjugate gradient on the Hessian of the post-adaptation KL + line search
      "promp": ``promp_steps`` Adam steps on the clipped surrogate minus ``kl_coef`` times the
               KL of the pre-adaptation policy to the sampling one (coefficient adapted to
               ``target_kl``, or fixed; ``adapt_kl_coef``)

``estimator`` picks ``J_inner`` (``dice``, ``lvc``, ``pg``; see ``algos.dice``): its Hessian is
what the meta-gradient's second-order term uses, so DiCE gives the unbiased MAML gradient
(including the pre-update sampling term), LVC the low-variance one, and ``pg`` the original
MAML implementation's. LVC takes ProMP's likelihood ratio to the *sampling* policy
``pi_theta / pi_theta_o`` (Algorithm 1), so every one of the ``promp_steps`` outer steps
recomputes the inner step as the paper does, not only the first. Advantages come from a
linear-feature baseline (Duan et al. 2016) fitted per task and per batch, with GAE.
``num_inner_steps=0`` trains one policy on all tasks (the "pretrained" baseline) with the same
code.

Shapes: ``B = meta_batch_size``, ``N = episodes_per_task``, ``T = env.max_steps``; samples are
time-major ``[T, N, ...]`` per task and ``[B, k+1, T, N, ...]`` for a meta-batch.
"""

from __future__ import annotations

from typing import Any, Dict, NamedTuple, Sequence, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos import dice
from metarl_jax.algos.advantages import gae
from metarl_jax.algos.learner import Learner
from metarl_jax.algos.maml import (
    LR_MODES,
    MetaParams,
    adapt_sequence,
    init_meta_params,
    inner_rates,
    mean_rate,
    sgd_step,
)
from metarl_jax.algos.trpo import gauss_newton_fvp, trpo_step
from metarl_jax.core.rollout import reset_batch, rollout
from metarl_jax.nets.mlp import MLP
from metarl_jax.nets.policy_heads import DiagGaussian, set_log_std
from metarl_jax.randomization.param_space import ParamSpace

static = dict(pytree_node=False)
ESTIMATORS = ("dice", "lvc", "pg")
OUTER = ("trpo", "promp")
ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu}  # MAMLRLConfig.activation -> function


@struct.dataclass
class MAMLRLConfig:
    """Sizes and switches are static; rates and coefficients are traced leaves."""

    meta_batch_size: int = struct.field(default=20, **static)
    episodes_per_task: int = struct.field(default=20, **static)
    num_inner_steps: int = struct.field(default=1, **static)
    hidden_sizes: Tuple[int, ...] = struct.field(default=(64, 64), **static)
    activation: str = struct.field(default="tanh", **static)  # a key of ACTIVATIONS
    estimator: str = struct.field(default="dice", **static)
    outer: str = struct.field(default="trpo", **static)
    inner_lr_mode: str = struct.field(default="fixed", **static)  # see maml.LR_MODES
    first_order: bool = struct.field(default=False, **static)
    remat: bool = struct.field(default=True, **static)
    promp_steps: int = struct.field(default=5, **static)
    adaptive_kl: bool = struct.field(default=True, **static)
    cg_iters: int = struct.field(default=10, **static)
    max_backtracks: int = struct.field(default=15, **static)
    init_log_std: float = 0.0  # a leaf: set in init (nets.policy_heads.set_log_std)
    # Inner advantages divided by their batch std (MAML's and ProMP's default). Off, their
    # magnitude -- and so the inner step's length -- can track how far the task's goal is.
    normalize_inner: bool = struct.field(default=True, **static)
    inner_lr: float = 0.1
    gamma: float = 0.99
    gae_lambda: float = 1.0
    max_kl: float = 0.01  # TRPO trust region
    cg_damping: float = 1e-5
    outer_lr: float = 1e-3  # ProMP's Adam
    clip_eps: float = 0.3
    kl_coef: float = 1e-2  # ProMP's initial KL penalty
    target_kl: float = 1e-2
    # floor of the adapted KL penalty (``adapt_kl_coef``): halved in float32 it reaches exactly
    # 0 after ~150 quiet updates, and 0 never doubles back (0 restores that behaviour)
    kl_coef_min: float = 1e-4

    def validate(self) -> "MAMLRLConfig":
        """Raise ``ValueError`` naming the field for an inconsistent config; return self."""
        for name in ("meta_batch_size", "episodes_per_task", "promp_steps", "cg_iters",
                     "max_backtracks"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MAMLRLConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_inner_steps < 0:
            raise ValueError(
                f"MAMLRLConfig.num_inner_steps must be >= 0, got {self.num_inner_steps}")
        for name, allowed in (("estimator", ESTIMATORS), ("outer", OUTER),
                              ("activation", tuple(ACTIVATIONS)),
                              ("inner_lr_mode", LR_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"MAMLRLConfig.{name} must be one of {allowed}, "
                                 f"got {getattr(self, name)!r}")
        if not 0.0 < self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError("MAMLRLConfig: need 0 < gamma <= 1 and 0 <= gae_lambda <= 1")
        for name in ("max_kl", "outer_lr", "clip_eps", "target_kl"):
            if not float(getattr(self, name)) > 0.0:
                raise ValueError(f"MAMLRLConfig.{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= float(self.kl_coef_min) <= float(self.kl_coef):
            raise ValueError(f"MAMLRLConfig: need 0 <= kl_coef_min <= kl_coef, got "
                             f"kl_coef_min={self.kl_coef_min}, kl_coef={self.kl_coef}")
        return self


def adapt_kl_coef(coef, kl, config: MAMLRLConfig):
    """ProMP's adaptive KL penalty (Rothfuss et al. 2019; Schulman et al. 2017's rule): halve
    ``coef`` when the pre-adaptation policy's ``kl`` to the sampling policy is below
    ``target_kl / 1.5``, double it above ``target_kl * 1.5``, never below ``kl_coef_min``.
    Without the floor the coefficient underflows to exactly 0 in float32 after ~150 quiet
    updates and stays there: in #19 part K (dir, seed 1) the KL then jumped from 0.006 to 7.6
    and MAML's adaptation gain collapsed with no penalty to pull it back. Scalars in, scalar
    out."""
    coef = jnp.where(kl < config.target_kl / 1.5, coef / 2.0,
                     jnp.where(kl > config.target_kl * 1.5, coef * 2.0, coef))
    return jnp.maximum(coef, config.kl_coef_min)


class GaussianPolicy(nn.Module):
    """``obs[..., O] -> (mean[..., A], log_std[..., A])``; state-independent learned log-std."""

    action_size: int
    hidden_sizes: Sequence[int]
    init_log_std: float = 0.0
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        mean = MLP(self.hidden_sizes, self.action_size, ACTIVATIONS[self.activation],
                   output_scale=0.01)(obs)
        log_std = self.param("log_std", nn.initializers.constant(self.init_log_std),
                             (self.action_size,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


class Samples(NamedTuple):
    """One task's batch, ``[T, N, ...]``: what the surrogates need, all constants.

    ``advantage`` (centred; divided by its batch std with ``normalize_inner``), ``reward`` and
    ``baseline`` (the fitted discounted return-to-go, divided by the same scale) feed the inner
    estimators; ``outer_advantage`` (always normalized) the outer surrogates; ``old_mean`` /
    ``old_log_std`` are the sampling policy's outputs. ``episode_return``: ``[N]``, undiscounted.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    baseline: jax.Array
    advantage: jax.Array
    outer_advantage: jax.Array
    old_mean: jax.Array
    old_log_std: jax.Array
    episode_return: jax.Array


def linear_baseline(obs: jax.Array, returns: jax.Array, reg: float = 1e-4,
                    retries: int = 4) -> jax.Array:
    """Ridge fit of ``returns[T, N]`` on features ``(o, o^2, t, t^2, t^3, 1)`` (t scaled to
    [0, 1)), evaluated on the same states: ``[T, N]``.

    As rllab's ``LinearFeatureBaseline`` (Duan et al. 2016), a fit that comes out non-finite is
    redone with the ridge ``reg`` ten times larger, up to ``retries`` times: when every episode
    is the same path (e.g. all actions clipped at the speed limit) ``o`` is a function of ``t``,
    the normal equations are singular in float32 and the first solve gives NaN. The first
    finite fit is used, so a well-posed fit is exactly the plain ridge one."""
    num_steps, num_episodes = returns.shape
    t = jnp.broadcast_to((jnp.arange(num_steps) / num_steps)[:, None, None],
                         (num_steps, num_episodes, 1)).astype(obs.dtype)
    o = jnp.clip(obs, -10.0, 10.0)
    feats = jnp.concatenate([o, o**2, t, t**2, t**3, jnp.ones_like(t)], axis=-1)
    x = feats.reshape(-1, feats.shape[-1])
    gram, target = x.T @ x, x.T @ returns.reshape(-1)
    eye = jnp.eye(x.shape[1], dtype=x.dtype)
    regs = reg * 10.0 ** jnp.arange(retries + 1, dtype=x.dtype)
    ws = jax.vmap(lambda r: jnp.linalg.solve(gram + r * eye, target))(regs)  # [retries+1, D]
    finite = jnp.all(jnp.isfinite(ws), axis=-1)
    # The first finite fit (the last one if none is: its NaNs then reach the caller's guards).
    w = ws[jnp.where(jnp.any(finite), jnp.argmax(finite), retries)]
    return feats @ w


def gaussian_kl(old_mean, old_log_std, mean, log_std) -> jax.Array:
    """``KL(N(old) || N(new))`` of diagonal Gaussians, summed over the last axis."""
    var_ratio = jnp.exp(2.0 * (old_log_std - log_std))
    return jnp.sum(log_std - old_log_std + 0.5 * (var_ratio + ((old_mean - mean)
                   * jnp.exp(-log_std)) ** 2 - 1.0), axis=-1)


@struct.dataclass
class MAMLRLState:
    meta: MetaParams
    opt_state: Any  # Adam state of ProMP's outer steps (unused by TRPO)
    kl_coef: jax.Array  # [] ProMP's KL penalty
    space: ParamSpace  # the task distribution
    key: jax.Array
    step: jax.Array  # [] int32


class MAMLRL(Learner):
    """Gradient-based meta-RL on one env; the task distribution is a ``ParamSpace``.

    A ``Learner``: ``init(key, config, space)``, ``train_chunk(state, config, n)`` and the
    non-finite guard (on the surrogate and ``state.meta``) come from the contract.
    ``make_policy`` is the meta-policy before adaptation (``pi_theta``).
    """

    def __init__(self, env, task_sharding: Any = None):
        """``task_sharding``: a ``jax.sharding.Sharding`` for the meta-batch axis of each
        update's tasks and their rollouts (``metarl_jax.scale.ShardedMAMLRL`` sets it; None:
        no constraint, one device)."""
        self.env = env
        self.task_sharding = task_sharding
        super().__init__()
        self.evaluate = jax.jit(self._evaluate, static_argnames="num_steps")

    def trainable(self, state: MAMLRLState) -> MetaParams:
        return state.meta

    def nonfinite_quantities(self, state: MAMLRLState, metrics) -> Dict[str, Any]:
        # TRPO and ProMP both report the outer surrogate before their step.
        return {"loss": metrics["surrogate_before"], "params": state.meta}

    def make_policy(self, state: MAMLRLState, config: MAMLRLConfig, deterministic: bool = False):
        """``act(key, obs[..., obs_size]) -> action`` of the pre-adaptation meta-policy."""
        net, params = self.policy(config), state.meta.params

        def act(key, obs):
            dist = net.apply(params, obs)
            return dist[0] if deterministic else DiagGaussian.sample(key, dist)

        return act

    def policy(self, config: MAMLRLConfig) -> GaussianPolicy:
        return GaussianPolicy(self.env.action_size, tuple(config.hidden_sizes),
                              0.0, config.activation)  # init_log_std: set by init

    def _init(self, key: jax.Array, config: MAMLRLConfig, space: ParamSpace) -> MAMLRLState:
        net_key, key = jax.random.split(key)
        obs = jnp.zeros((1, self.env.observation_size), jnp.float32)
        params = set_log_std(self.policy(config).init(net_key, obs), config.init_log_std)
        meta = init_meta_params(params, config)
        return MAMLRLState(meta, optax.scale_by_adam().init(meta),
                           jnp.asarray(config.kl_coef, jnp.float32), space, key, jnp.int32(0))

    # ------------------------------------------------------------------ sampling and surrogates
    def log_prob(self, config, params, obs, action) -> jax.Array:
        return DiagGaussian.log_prob(self.policy(config).apply(params, obs), action)

    def sample(self, config: MAMLRLConfig, params, task, key) -> Samples:
        """N episodes of one task with ``params`` (no gradient), processed into ``Samples``."""
        params = jax.lax.stop_gradient(params)
        net = self.policy(config)
        reset_key, key = jax.random.split(key)
        env_state, obs = reset_batch(self.env, reset_key, task, config.episodes_per_task)
        act = lambda k, o: (DiagGaussian.sample(k, net.apply(params, o)), {})
        _, traj = rollout(act, self.env, key, env_state, obs, task, self.env.max_steps)
        old_mean, old_log_std = net.apply(params, traj.obs)
        returns = dice.returns_to_go(traj.reward, config.gamma)
        values = linear_baseline(traj.obs, returns)
        next_values = jnp.concatenate([values[1:], jnp.zeros_like(values[:1])])
        zeros = jnp.zeros_like(traj.reward)
        adv, _ = gae(traj.reward, values, next_values, zeros, zeros, config.gamma,
                     config.gae_lambda)
        scale = jnp.std(adv) + 1e-8
        inner_scale = scale if config.normalize_inner else 1.0
        return Samples(traj.obs, traj.action, traj.reward / inner_scale, values / inner_scale,
                       (adv - adv.mean()) / inner_scale, (adv - adv.mean()) / scale, old_mean,
                       old_log_std, traj.reward.sum(0))

    def inner_objective(self, config: MAMLRLConfig, params, s: Samples,
                        plain: bool = False) -> jax.Array:
        """``J_inner`` (to maximize) on one task's samples: ``[]``. ``plain`` swaps the estimator
        for the plain surrogate with the same gradient value, whose derivatives are those of the
        fixed-sample function (the geometry TRPO's trust region and line search measure).

        ``lvc`` is ProMP's likelihood-ratio form ``mean(pi_params / pi_sampling * A)`` (Rothfuss
        et al. 2019, Algorithm 1; the sampling policy is ``s.old_mean`` / ``s.old_log_std``), so
        that after the first of ``promp_steps`` outer steps (``params != theta_o``) the inner
        step still weights the fixed samples by how likely the current policy makes them. It is
        itself a function of the fixed samples, so it is its own ``plain`` twin."""
        logp = self.log_prob(config, params, s.obs, s.action)
        if config.estimator == "dice":
            if plain:
                return dice.pg_objective(logp, dice.dice_score_weights(s.reward, config.gamma,
                                                                       s.baseline))
            return dice.dice_objective(logp, s.reward, config.gamma, s.baseline)
        if config.estimator == "lvc":
            sampling_logp = DiagGaussian.log_prob((s.old_mean, s.old_log_std), s.action)
            return dice.lvc_objective(logp, s.advantage, sampling_logp)
        return dice.pg_objective(logp, s.advantage)

    def inner_loss(self, config, plain: bool = False):
        return lambda params, s: -self.inner_objective(config, params, s, plain)

    def sample_chain(self, meta: MetaParams, config, task, key, num_steps: int) -> Samples:
        """Samples of ``theta_0 .. theta_num_steps`` for one task: leaves ``[num_steps+1, ...]``."""
        params, lr, chain = meta.params, inner_rates(meta, config), []
        for i, k in enumerate(jax.random.split(key, num_steps + 1)):
            chain.append(self.sample(config, params, task, k))
            if i < num_steps:
                params = sgd_step(self.inner_loss(config), params, lr, chain[-1])
        return jax.tree.map(lambda *x: jnp.stack(x), *chain)

    def adapted(self, meta: MetaParams, config, chain: Samples, plain: bool = False):
        """``theta_k`` as a differentiable function of ``meta`` on fixed pre-adaptation samples."""
        pre = jax.tree.map(lambda x: x[:config.num_inner_steps], chain)
        return adapt_sequence(self.inner_loss(config, plain), meta.params,
                              inner_rates(meta, config), pre, config.first_order, config.remat)

    def _post(self, meta, config, chain, plain: bool = False):
        post = jax.tree.map(lambda x: x[config.num_inner_steps], chain)
        adapted = self.adapted(meta, config, chain, plain)
        mean, log_std = self.policy(config).apply(adapted, post.obs)
        return post, mean, log_std

    def surrogate(self, meta, config, chain: Samples, plain: bool = False):
        """Importance-weighted post-adaptation advantage ``mean(ratio * A)`` of one task, as a
        function of ``meta`` through the inner steps; returns ``([], ratio[T, N])``."""
        post, mean, log_std = self._post(meta, config, chain, plain)
        ratio = jnp.exp(DiagGaussian.log_prob((mean, log_std), post.action)
                        - DiagGaussian.log_prob((post.old_mean, post.old_log_std), post.action))
        return jnp.mean(ratio * post.outer_advantage), ratio

    def post_kl(self, meta, config, chain: Samples, plain: bool = True) -> jax.Array:
        """Mean KL from the post-adaptation sampling policy to the current adapted one (through
        the plain inner surrogate by default: the constraint is on the measured KL)."""
        post, mean, log_std = self._post(meta, config, chain, plain)
        return jnp.mean(gaussian_kl(post.old_mean, post.old_log_std, mean, log_std))

    def pre_kl(self, meta, config, chain: Samples) -> jax.Array:
        """Mean KL from the pre-adaptation sampling policy to ``meta.params``."""
        pre = jax.tree.map(lambda x: x[0], chain)
        mean, log_std = self.policy(config).apply(meta.params, pre.obs)
        return jnp.mean(gaussian_kl(pre.old_mean, pre.old_log_std, mean, log_std))

    # ------------------------------------------------------------------ outer updates
    def _tasks_mean(self, fn, meta, config, chains):
        return jnp.mean(jax.vmap(lambda c: fn(meta, config, c), in_axes=0)(chains))

    def _trpo(self, state: MAMLRLState, config, chains):
        objective = lambda m: self._tasks_mean(lambda *a: self.surrogate(*a)[0], m, config, chains)
        kl = lambda m: self._tasks_mean(self.post_kl, m, config, chains)

        def curvature(unravel, x0):  # the KL's Hessian as a Gauss-Newton product (exact here)
            def outputs(x):
                return jax.vmap(lambda c: self._post(unravel(x), config, c, True)[1:])(chains)

            def metric(y):  # Fisher of a diagonal Gaussian in (mean, log_std), / sample count
                mean, log_std = y
                count = mean.size // mean.shape[-1]
                return jnp.exp(-2.0 * log_std) / count, jnp.full_like(log_std, 2.0 / count)

            return gauss_newton_fvp(outputs, x0, metric)

        meta, stats = trpo_step(objective, kl, state.meta, config.max_kl, config.cg_iters,
                                config.cg_damping, config.max_backtracks, curvature)
        return state.replace(meta=meta), stats

    def _promp(self, state: MAMLRLState, config, chains):
        def task_loss(meta, c):
            adv = jax.tree.map(lambda x: x[config.num_inner_steps], c).outer_advantage
            _, ratio = self.surrogate(meta, config, c)
            clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
            objective = jnp.mean(jnp.minimum(ratio * adv, clipped * adv))
            kl = self.pre_kl(meta, config, c)
            return -objective + state.kl_coef * kl, (objective, kl)

        def loss(meta):
            losses, aux = jax.vmap(lambda c: task_loss(meta, c))(chains)
            return jnp.mean(losses), jax.tree.map(jnp.mean, aux)

        def adam_step(carry, _):
            meta, opt_state = carry
            (_, (objective, kl)), grads = jax.value_and_grad(loss, has_aux=True)(meta)
            updates, opt_state = optax.scale_by_adam().update(grads, opt_state)
            meta = optax.apply_updates(meta, jax.tree.map(lambda u: -config.outer_lr * u, updates))
            return (meta, opt_state), (objective, kl)

        (meta, opt_state), (objective, kl) = jax.lax.scan(
            adam_step, (state.meta, state.opt_state), None, length=config.promp_steps)
        kl_after = loss(meta)[1][1]
        coef = state.kl_coef
        if config.adaptive_kl:
            coef = adapt_kl_coef(coef, kl_after, config)
        stats = {"surrogate_before": objective[0], "pre_kl": kl_after, "kl_coef": coef}
        return state.replace(meta=meta, opt_state=opt_state, kl_coef=coef), stats

    def _update(self, state: MAMLRLState, config: MAMLRLConfig) -> Tuple[MAMLRLState, Dict]:
        key, task_key, sample_key = jax.random.split(state.key, 3)
        tasks = state.space.sample(task_key, (config.meta_batch_size,))
        keys = jax.random.split(sample_key, config.meta_batch_size)
        if self.task_sharding is not None:  # each device samples and adapts its own tasks
            tasks, keys = jax.lax.with_sharding_constraint((tasks, keys), self.task_sharding)
        chains = jax.vmap(lambda t, k: self.sample_chain(
            state.meta, config, t, k, config.num_inner_steps))(tasks, keys)
        if self.task_sharding is not None:
            chains = jax.lax.with_sharding_constraint(chains, self.task_sharding)
        outer = self._trpo if config.outer == "trpo" else self._promp
        state, stats = outer(state, config, chains)
        returns = chains.episode_return.mean(axis=(0, 2))  # [k+1]
        stats.update(return_pre=returns[0], return_post=returns[-1])
        if config.inner_lr_mode != "fixed":  # the learned rate(s), after this update
            stats["inner_lr"] = mean_rate(state.meta.inner_lr)
        return state.replace(key=key, step=state.step + 1), stats

    def _evaluate(self, meta: MetaParams, config: MAMLRLConfig, tasks, key, num_steps: int):
        """Adapt to each of ``tasks`` (leaves ``[B, ...]``) for ``num_steps`` inner steps.

        Returns ``(returns[B, num_steps+1], positions[B, num_steps+1, T, N, obs_size])``: mean
        episode return and observed trajectories of the policy after 0..num_steps steps.
        """
        keys = jax.random.split(key, jax.tree.leaves(tasks)[0].shape[0])
        chains = jax.vmap(lambda t, k: self.sample_chain(meta, config, t, k, num_steps))(
            tasks, keys)
        return chains.episode_return.mean(-1), chains.obs
