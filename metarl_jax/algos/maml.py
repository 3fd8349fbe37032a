"""Model-agnostic meta-learning (Finn et al. 2017): inner SGD, exact meta-gradients, Meta-SGD rates.

The core is generic over a differentiable loss ``loss(params, data) -> []``::

    theta_{i+1} = theta_i - lr * grad loss(theta_i, support)        (k inner steps, k static)
    meta_loss(theta) = outer_loss(theta_k(theta), query)

``jax.grad(meta_loss)`` differentiates through the k inner updates, so the meta-gradient is the
exact second-order one ``prod_i (I - lr * H_i) grad outer``; ``first_order=True`` stops the
gradient through the inner gradients (FOMAML: every ``H_i`` treated as 0). Each inner step is
wrapped in ``jax.checkpoint`` and the steps run in a ``lax.scan``: reverse mode then keeps only
the k parameter vectors, not the k inner forward/backward passes (their activations are
recomputed), so memory grows by ``|theta|`` per step instead of by a whole double backward pass.
``adapt`` with a single step (the usual k = 1) skips both: a one-step checkpoint would recompute
the inner forward/backward pass in the backward pass for no memory (the sinusoid
meta-gradient's compiled temporaries at k = 1 are 0.82 vs 0.82 MiB at 10 points per task and
3.55 vs 3.57 MiB at 100, ``benchmarks/maml_speed.py``'s ``memory_vs_k``), and a one-trip scan
only adds carry copies. (``adapt_sequence``, MAML-RL's, keeps the checkpoint at k = 1.)

The inner rate is fixed (``inner_lr_mode="fixed"``), one learned scalar (``"scalar"``) or one
learned rate per parameter (``"per_param"``, Meta-SGD, Li et al. 2017); learned rates live in
``MetaParams.inner_lr`` and are meta-trained with the network.

``SupervisedMAML`` trains the whole meta-learning loop for a task sampler (one compiled
``lax.scan`` per chunk, Adam on the meta-parameters); ``num_inner_steps=0`` is the "pretrain on
all tasks" baseline with the same code path. RL uses the primitives (``sgd_step``, ``adapt``)
from ``maml_rl``.

Shapes: a meta-batch is a leading axis ``[B, ...]`` on every leaf of ``support`` / ``query``;
the per-task functions see unbatched task data and are ``vmap``-ed over it.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Tuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from metarl_jax.algos.learner import Learner

static = dict(pytree_node=False)
LR_MODES = ("fixed", "scalar", "per_param")

Loss = Callable[[Any, Any], jax.Array]  # loss(params, task_data) -> [] scalar


@struct.dataclass
class MAMLConfig:
    """MAML hyperparameters: sizes and switches static, rates traced (no recompile on change)."""

    num_inner_steps: int = struct.field(default=1, **static)  # k; 0 = no adaptation (pretrain)
    inner_lr_mode: str = struct.field(default="fixed", **static)  # one of LR_MODES
    first_order: bool = struct.field(default=False, **static)
    remat: bool = struct.field(default=True, **static)
    meta_batch_size: int = struct.field(default=25, **static)
    inner_lr: float = 0.01  # the rate ("fixed") or its initial value (learned modes)
    outer_lr: float = 1e-3

    def validate(self) -> "MAMLConfig":
        """Raise ``ValueError`` naming the field for an inconsistent config; return self."""
        if self.num_inner_steps < 0 or self.meta_batch_size < 1:
            raise ValueError(f"MAMLConfig: need num_inner_steps >= 0 and meta_batch_size >= 1, "
                             f"got {self.num_inner_steps}, {self.meta_batch_size}")
        if self.inner_lr_mode not in LR_MODES:
            raise ValueError(f"MAMLConfig.inner_lr_mode must be one of {LR_MODES}, "
                             f"got {self.inner_lr_mode!r}")
        if not float(self.outer_lr) > 0.0:
            raise ValueError(f"MAMLConfig.outer_lr must be > 0, got {self.outer_lr}")
        return self


@struct.dataclass
class MetaParams:
    """What the outer loop learns: ``params`` (the initialization theta) and ``inner_lr``
    (``()`` when fixed, a [] array for ``"scalar"``, a pytree like ``params`` for
    ``"per_param"``)."""

    params: Any
    inner_lr: Any = ()


def init_meta_params(params: Any, config: MAMLConfig) -> MetaParams:
    lr = jnp.asarray(config.inner_lr, jnp.float32)
    if config.inner_lr_mode == "scalar":
        return MetaParams(params, lr)
    if config.inner_lr_mode == "per_param":
        return MetaParams(params, jax.tree.map(lambda p: jnp.full_like(p, lr), params))
    return MetaParams(params, ())


def inner_rates(meta: MetaParams, config: MAMLConfig) -> Any:
    """The inner rate as a scalar or a pytree like ``meta.params`` (what ``sgd_step`` takes)."""
    return config.inner_lr if config.inner_lr_mode == "fixed" else meta.inner_lr


def mean_rate(inner_lr: Any) -> jax.Array:
    """The mean over every entry of learned inner rates (``MetaParams.inner_lr``: a [] array or a
    pytree like the params): what a run logs of a Meta-SGD step. ``[]``."""
    rates = jax.tree.leaves(inner_lr)
    return sum(jnp.sum(r) for r in rates) / sum(jnp.size(r) for r in rates)


def sgd_step(loss: Loss, params: Any, lr: Any, data: Any, first_order: bool = False) -> Any:
    """One inner step ``params - lr * grad loss(params, data)``; ``lr`` is a scalar or a pytree
    like ``params``. ``first_order`` treats the gradient as a constant for the outer gradient."""
    grads = jax.grad(loss)(params, data)
    if first_order:
        grads = jax.lax.stop_gradient(grads)
    if jax.tree.structure(lr) != jax.tree.structure(params):  # one scalar for every leaf
        lr = jax.tree.map(lambda _: lr, params)
    return jax.tree.map(lambda p, r, g: p - r * g, params, lr, grads)


def _inner_step(loss: Loss, first_order: bool, remat: bool) -> Callable:
    def step(p, r, d):
        return sgd_step(loss, p, r, d, first_order)

    return jax.checkpoint(step) if remat else step


def adapt(loss: Loss, params: Any, lr: Any, data: Any, num_steps: int,
          first_order: bool = False, remat: bool = True) -> Any:
    """``num_steps`` (static) inner SGD steps on the same ``data``; differentiable in ``params``
    and ``lr``. With ``remat`` each step is recomputed in the backward pass when there are two
    or more (see module doc)."""
    if num_steps == 0:
        return params
    if num_steps == 1:  # one step: no scan, and no remat (module doc)
        return sgd_step(loss, params, lr, data, first_order)
    step = _inner_step(loss, first_order, remat)
    params, _ = jax.lax.scan(lambda p, _: (step(p, lr, data), None), params, None,
                             length=num_steps)
    return params


def adapt_sequence(loss: Loss, params: Any, lr: Any, data_seq: Any, first_order: bool = False,
                   remat: bool = True) -> Any:
    """One inner step per entry of ``data_seq`` (leaves ``[k, ...]``; step ``i`` uses entry
    ``i``, e.g. RL samples drawn with ``theta_i``); ``k = 0`` returns ``params``."""
    if jax.tree.leaves(data_seq)[0].shape[0] == 0:
        return params
    step = _inner_step(loss, first_order, remat)
    params, _ = jax.lax.scan(lambda p, d: (step(p, lr, d), None), params, data_seq)
    return params


def adaptation_curve(loss: Loss, eval_loss: Loss, params: Any, lr: Any, support: Any,
                     query: Any, num_steps: int) -> jax.Array:
    """``eval_loss(theta_i, query)`` for ``i = 0..num_steps`` (no outer gradient): ``[k + 1]``."""

    def body(p, _):
        p = sgd_step(loss, p, lr, support)
        return p, eval_loss(p, query)

    _, after = jax.lax.scan(body, params, None, length=num_steps)
    return jnp.concatenate([eval_loss(params, query)[None], after])


def task_meta_loss(loss: Loss, meta: MetaParams, config: MAMLConfig, support: Any, query: Any,
                   outer_loss: Loss | None = None) -> jax.Array:
    """Post-adaptation loss of one task: ``outer_loss(adapt(theta, support), query)``."""
    adapted = adapt(loss, meta.params, inner_rates(meta, config), support,
                    config.num_inner_steps, config.first_order, config.remat)
    return (outer_loss or loss)(adapted, query)


def meta_batch_loss(loss: Loss, meta: MetaParams, config: MAMLConfig, support: Any, query: Any,
                    outer_loss: Loss | None = None) -> jax.Array:
    """Mean of ``task_meta_loss`` over the leading task axis of ``support`` and ``query``."""
    per_task = jax.vmap(lambda s, q: task_meta_loss(loss, meta, config, s, q, outer_loss))
    return jnp.mean(per_task(support, query))


@struct.dataclass
class MAMLState:
    """The whole supervised meta-training state (checkpointed whole)."""

    meta: MetaParams
    opt_state: Any
    key: jax.Array
    step: jax.Array  # [] int32, outer updates done


class SupervisedMAML(Learner):
    """Meta-training for supervised tasks with Adam in the outer loop.

    Args:
        loss: ``loss(params, points) -> []`` on one task's data.
        init_params: ``init_params(key) -> params``.
        sample_batch: ``sample_batch(key, meta_batch_size) -> (support, query)``, each with a
            leading task axis ``[B, ...]``.

    A ``Learner``: ``train_chunk(state, config, n, log_every=m)`` runs ``n * m`` outer updates and
    returns metrics ``[n]`` (means over blocks of ``m``); the guard watches the losses, the
    meta-gradient's norm and ``state.meta``.
    """

    def __init__(self, loss: Loss, init_params: Callable, sample_batch: Callable):
        self.loss, self.init_params, self.sample_batch = loss, init_params, sample_batch
        super().__init__()

    def trainable(self, state: MAMLState) -> MetaParams:
        return state.meta

    def _init(self, key: jax.Array, config: MAMLConfig) -> MAMLState:
        net_key, key = jax.random.split(key)
        meta = init_meta_params(self.init_params(net_key), config)
        return MAMLState(meta, optax.scale_by_adam().init(meta), key, jnp.int32(0))

    def _update(self, state: MAMLState, config: MAMLConfig) -> Tuple[MAMLState, Dict]:
        key, batch_key = jax.random.split(state.key)
        support, query = self.sample_batch(batch_key, config.meta_batch_size)

        def objective(meta):
            return meta_batch_loss(self.loss, meta, config, support, query)

        post_loss, grads = jax.value_and_grad(objective)(state.meta)
        pre_loss = jnp.mean(jax.vmap(self.loss, in_axes=(None, 0))(state.meta.params, query))
        updates, opt_state = optax.scale_by_adam().update(grads, state.opt_state)
        meta = optax.apply_updates(state.meta, jax.tree.map(lambda u: -config.outer_lr * u,
                                                            updates))
        metrics = {"pre_loss": pre_loss, "post_loss": post_loss,
                   "grad_norm": optax.tree.norm(grads)}
        return MAMLState(meta, opt_state, key, state.step + 1), metrics
