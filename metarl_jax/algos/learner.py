"""The learner contract: one place that turns ``_init`` / ``_update`` into a compiled trainer.

A learner subclasses ``Learner`` and supplies two pure functions::

    _init(key, config, *init_args) -> State          # e.g. PPO: init_args = (space,)
    _update(state, config, *context) -> (State, {name: [] array})

``context`` holds inputs that stay constant over a run but are not part of the state (UP-OSI's
universal policy); most learners have none. The base gives, once for every learner:

* ``init`` (jit, after the learner's ``check_init_args`` on concrete values),
  ``init_seeds(keys[S], config, *init_args)`` (seed by seed, stacked ``[S, ...]``; see
  ``metarl_jax.core.seeding`` for why not ``vmap``);
* ``update(state, config, *context)`` -- ``_update`` behind the **non-finite guard**: the update's
  losses, gradient norm and trainable parameters are checked in-graph, the metric
  ``"nonfinite_flags"`` is the bitmask of ``metarl_jax.core.nonfinite``, and on a NaN/inf the state
  stays the last good one (the training loop stops with ``NonFiniteError``, exit status 3). No
  learner can skip it: ``train_chunk`` only ever calls ``update``;
* ``train_chunk(state, config, num_updates, *context, log_every=1)``: ``num_updates * log_every``
  updates in one ``lax.scan``; metrics ``[num_updates]`` per key, each the mean over a block of
  ``log_every`` updates (``nonfinite_flags``: bitwise OR over the block);
* ``train_chunk_seeds``: the same over a leading seed axis of the state (and of the context);
  metrics ``[S, num_updates]``;
* ``train(key, config, *init_args, progress_fn=None)``: the whole run (``config.num_updates``
  updates) as one program, or in chunks with ``progress_fn(env_steps, metrics)`` between them;
* ``traces``: ``{entry point: times traced}``, e.g. ``traces["train_chunk"] == 1`` after any number
  of chunks with the same sizes (the public check that a run compiles once).

What the guard looks at is ``nonfinite_quantities(state, metrics)``: by default every metric whose
name ends in ``loss`` (``loss``), the metric ``grad_norm`` (``grad``) and ``trainable(state)``
(``params``, default ``state.params``). Learners with other names override either method.

Inference: ``make_policy(state, config, deterministic=False) -> act(key, obs) -> action`` for one
seed's state (``select_seed(states, i)`` takes seed ``i`` out of a stacked state). The returned
function is pure (jit it, vmap it, hand it to ``metarl_jax.sim2real.export``).

Fault injection (for tests of the guard through a real command): with the environment variable
``METARL_JAX_INJECT_NAN`` set when a learner is constructed -- to ``1`` for every learner, or to
a class name (``OSILearner``) for that one only -- every update's loss is reported as NaN, so the
guard trips on the first update.
"""

from __future__ import annotations

import functools
import os
from typing import Any, Callable, Dict, Optional, Tuple

import jax
import jax.numpy as jnp

from metarl_jax.core.nonfinite import keep_if_finite, nonfinite_code
from metarl_jax.core.seeding import init_each_seed

Metrics = Dict[str, jax.Array]
Policy = Callable[[jax.Array, jax.Array], jax.Array]  # act(key, obs[..., obs_size]) -> action
INJECT_NAN_ENV = "METARL_JAX_INJECT_NAN"
FLAGS = "nonfinite_flags"
_STATIC = ("num_updates", "log_every")


def _default_chunk(num_updates: int) -> int:
    """The largest divisor of ``num_updates`` that is at most ``num_updates // 10`` (>= 1)."""
    cap = max(1, num_updates // 10)
    return max(d for d in range(1, cap + 1) if num_updates % d == 0)


def select_seed(states: Any, index: int) -> Any:
    """Seed ``index`` of a state stacked over a leading seed axis (``init_seeds``)."""
    return jax.tree.map(lambda x: x[index], states)


def _or_reduce(flags: jax.Array) -> jax.Array:
    """Bitwise OR of ``flags[n]`` (int32) over its axis: ``[]``."""
    return jax.lax.reduce(flags, jnp.int32(0), jax.lax.bitwise_or, (0,))


def block_mean(metrics: Metrics) -> Metrics:
    """Metrics ``[n]`` of a block of updates -> ``[]``: the mean, the OR for the guard's flags."""
    return {k: _or_reduce(v) if k == FLAGS else jnp.mean(v) for k, v in metrics.items()}


class Learner:
    """Base of every learner; subclasses implement ``_init`` and ``_update`` (module doc).

    Subclasses call ``super().__init__()`` after setting the attributes their ``_init`` /
    ``_update`` read (the jitted entry points are built here).
    """

    def __init__(self):
        inject = os.environ.get(INJECT_NAN_ENV, "")
        self._inject_nan = inject == "1" or inject == type(self).__name__
        self.traces: Dict[str, int] = {}  # entry point -> times traced (= compiled) so far
        self._init_program = jax.jit(self._traced("init", self._init))
        self.update = jax.jit(self._traced("update", self.guarded_update))
        self.train_chunk = jax.jit(self._traced("train_chunk", self._train_chunk),
                                   static_argnames=_STATIC)
        self.train_chunk_seeds = jax.jit(
            self._traced("train_chunk_seeds", self._train_chunk_seeds), static_argnames=_STATIC)
        self._train_program = jax.jit(self._traced("train", self._train))

    def _traced(self, name: str, fn: Callable) -> Callable:
        """``fn`` counting its traces in ``self.traces[name]`` (a Python side effect, so it runs
        once per trace: per compilation of the jitted entry point, never per call)."""

        @functools.wraps(fn)
        def counted(*args, **kwargs):
            self.traces[name] = self.traces.get(name, 0) + 1
            return fn(*args, **kwargs)

        return counted

    # ------------------------------------------------------------------ what a learner supplies
    def _init(self, key: jax.Array, config: Any, *init_args: Any) -> Any:
        raise NotImplementedError

    def _update(self, state: Any, config: Any, *context: Any) -> Tuple[Any, Metrics]:
        raise NotImplementedError

    def check_init_args(self, config: Any, *init_args: Any) -> None:
        """Validate ``init``'s arguments before they are traced (raise ``SpecError`` /
        ``ValueError``). Checks that need concrete values (a delay range against a wrapper's
        buffer) belong here: inside ``jit`` they would see tracers. Default: nothing."""

    def trainable(self, state: Any) -> Any:
        """The parameters the guard checks for NaN/inf (default ``state.params``)."""
        return state.params

    def nonfinite_quantities(self, state: Any, metrics: Metrics) -> Dict[str, Any]:
        """``loss`` / ``grad`` / ``params`` pytrees for ``nonfinite_code`` (module doc)."""
        quantities = {"params": self.trainable(state)}
        losses = [v for k, v in metrics.items() if k.endswith("loss")]
        if losses:
            quantities["loss"] = losses
        if "grad_norm" in metrics:
            quantities["grad"] = metrics["grad_norm"]
        return quantities

    def make_policy(self, state: Any, config: Any, deterministic: bool = False) -> Policy:
        """``act(key, obs) -> action`` of one seed's trained ``state``."""
        raise NotImplementedError(f"{type(self).__name__} has no stateless policy to export")

    # ------------------------------------------------------------------ what the base gives
    def init(self, key: jax.Array, config: Any, *init_args: Any) -> Any:
        """The initial train state (jitted; ``check_init_args`` runs first, on concrete
        values)."""
        self.check_init_args(config, *init_args)
        return self._init_program(key, config, *init_args)

    def init_seeds(self, keys: jax.Array, config: Any, *init_args: Any) -> Any:
        """``init`` for each of ``keys[S]``, stacked ``[S, ...]`` (one seed at a time, see
        ``metarl_jax.core.seeding``; training stays ``vmap``-ed over seeds)."""
        return init_each_seed(self.init, keys, config, *init_args)

    def guarded_update(self, state: Any, config: Any, *context: Any) -> Tuple[Any, Metrics]:
        """``_update`` behind the non-finite guard (module doc)."""
        new_state, metrics = self._update(state, config, *context)
        metrics = dict(metrics)
        quantities = self.nonfinite_quantities(new_state, metrics)
        if self._inject_nan:
            quantities["loss"] = [quantities.get("loss", []), jnp.float32(jnp.nan)]
        code = nonfinite_code(**quantities)
        metrics[FLAGS] = code
        return keep_if_finite(code, new_state, state), metrics

    def _train_chunk(self, state: Any, config: Any, num_updates: int, *context: Any,
                     log_every: int = 1) -> Tuple[Any, Metrics]:
        def one(s, _):
            return self.guarded_update(s, config, *context)

        if log_every == 1:
            return jax.lax.scan(one, state, None, length=num_updates)

        def block(s, _):
            s, metrics = jax.lax.scan(one, s, None, length=log_every)
            return s, block_mean(metrics)

        return jax.lax.scan(block, state, None, length=num_updates)

    def _train_chunk_seeds(self, states: Any, config: Any, num_updates: int, *context: Any,
                           log_every: int = 1) -> Tuple[Any, Metrics]:
        return jax.vmap(lambda s, c: self._train_chunk(s, config, num_updates, *c,
                                                       log_every=log_every))(states, context)

    def _train(self, key: jax.Array, config: Any, *init_args: Any) -> Tuple[Any, Metrics]:
        return self._train_chunk(self._init(key, config, *init_args), config, config.num_updates)

    def train(self, key: jax.Array, config: Any, *init_args: Any,
              progress_fn: Optional[Callable[[int, Dict[str, float]], None]] = None,
              progress_every: Optional[int] = None) -> Tuple[Any, Metrics]:
        """The whole run: ``config.num_updates`` updates from ``init(key, config, *init_args)``.

        Without ``progress_fn`` it is one compiled program. With it (brax.training's convention)
        the run is cut into chunks of ``progress_every`` updates (default: the largest divisor
        of ``num_updates`` that is at most a tenth of it, so every chunk compiles once) and
        ``progress_fn(env_steps, metrics)`` is called after each with the env steps done so far
        (``config.batch_size`` or ``config.steps_per_update`` per update; updates if neither)
        and the chunk's last metrics as floats. The state and the metrics ``[num_updates]``
        are the same as the one-program run's.
        """
        if progress_fn is None:
            return self._train_program(key, config, *init_args)
        total = int(config.num_updates)
        every = _default_chunk(total) if progress_every is None else int(progress_every)
        if not 1 <= every <= total:
            raise ValueError(f"progress_every must be in [1, num_updates={total}], got {every}")
        steps_per_update = getattr(config, "batch_size", None) or getattr(
            config, "steps_per_update", None) or 1
        state, chunks, done = self.init(key, config, *init_args), [], 0
        while done < total:
            n = min(every, total - done)
            state, metrics = self.train_chunk(state, config, n)
            chunks.append(metrics)
            done += n
            progress_fn(done * int(steps_per_update),
                        {k: float(v[-1]) for k, v in jax.device_get(metrics).items()})
        return state, jax.tree.map(lambda *parts: jnp.concatenate(parts), *chunks)
