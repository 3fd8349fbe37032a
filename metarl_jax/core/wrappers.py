"""Env wrappers: thin classes over the pure ``(key, state, action, params)`` functions.

Each wrapper's state is a small dataclass around the inner state. The order that training uses::

    env = ObservationNoise(ActionDelay(Pendulum(), max_delay=3))   # read params fields
    env = EpisodeStats(AutoReset(env))                               # params = a ParamSpace

``ActionDelay`` and ``ObservationNoise`` read ``params.action_delay`` / ``params.obs_noise_std``
(fields every env's ``Params`` inherits from ``EnvParams``), so latency and sensor noise are
randomized by the same ``ParamSpace`` as the physics. ``AutoReset`` changes the meaning of the
``params`` argument: it takes a ``ParamSpace`` and draws fresh env params at every reset (per
episode) or every ``resample_every`` steps -- inside ``jit``, per env, from the key it is given.
"""

from __future__ import annotations

import functools
from typing import Any, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import custom_batching

from metarl_jax.core.env import Env, is_discrete
from metarl_jax.randomization.distributions import SpecError
from metarl_jax.randomization.keys import (
    EnvKeys,
    batch_draw_keys,
    batch_normal,
    env_keys,
    unrolled,
)
from metarl_jax.randomization.param_space import ParamDistribution, ParamSpace, fixed_space


def select_tree(pred: jax.Array, on_true, on_false):
    """Elementwise ``where`` over two pytrees of the same structure (``pred``: [] bool, or
    broadcastable against every leaf)."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def step_batch_of(env: Env, keys, state, action, params, params_axis=None):
    """``env.step_batch(...)`` where ``env`` has one (wrappers), else ``vmap(env.step)`` with
    env ``i`` stepping with key ``i`` of ``keys`` (``[N]``, one key ``[]`` for the batch, or
    ``EnvKeys``)."""
    if hasattr(env, "step_batch"):
        return env.step_batch(keys, state, action, params, params_axis)
    keys = env_keys(keys, jax.tree.leaves(action)[0].shape[0]).all()
    return jax.vmap(env.step, in_axes=(0, 0, 0, params_axis))(keys, state, action, params)


class Wrapper(Env):
    """Forwards everything to ``env``; subclasses override what they change."""

    def __init__(self, env: Env):
        self.env = env
        self.max_steps = env.max_steps

    def default_params(self):
        return self.env.default_params()

    def reset(self, key, params):
        return self.env.reset(key, params)

    def step(self, key, state, action, params):
        return self.env.step(key, state, action, params)

    def step_batch(self, keys, state, action, params, params_axis=None):
        """``step`` over ``N`` envs: ``keys`` one per env (``[N]``) or one for the batch (``[]``:
        env ``i`` steps with ``jax.random.split(keys, N)[i]``; ``randomization.keys.EnvKeys``),
        batched state and action, ``params`` shared (``params_axis=None``) or batched on axis 0.
        Wrappers that can do better than ``vmap(step)`` at the batch level (``AutoReset``,
        ``EpisodeStats`` over it) override it with a bit-identical version; ``rollout`` calls it
        with one key for the batch."""
        keys = env_keys(keys, jax.tree.leaves(action)[0].shape[0]).all()
        return jax.vmap(self.step, in_axes=(0, 0, 0, params_axis))(keys, state, action, params)

    @property
    def observation_space(self):
        return self.env.observation_space

    @property
    def action_space(self):
        return self.env.action_space

    @property
    def unwrapped(self) -> Env:
        return self.env.unwrapped

    @property
    def name(self) -> str:
        return self.env.name


@struct.dataclass
class ActionDelayState:
    inner: Any
    buffer: jax.Array  # [max_delay + 1, *action_shape]; buffer[d] = the action chosen d steps ago


class ActionDelay(Wrapper):
    """Applies the action chosen ``params.action_delay`` steps ago (actuation latency).

    The buffer holds the last ``max_delay + 1`` actions and starts filled with zeros (a zero
    torque/force for continuous envs; action 0 for discrete ones). Delays are clipped to
    ``[0, max_delay]``; ``max_delay`` is static because it sizes the buffer.
    """

    def __init__(self, env: Env, max_delay: int):
        if max_delay < 0:
            raise ValueError(f"max_delay must be >= 0, got {max_delay}")
        super().__init__(env)
        self.max_delay = int(max_delay)

    def _empty_buffer(self):
        space = self.env.action_space
        if is_discrete(space):
            return jnp.zeros((self.max_delay + 1,), jnp.int32)
        return jnp.zeros((self.max_delay + 1,) + tuple(space.shape), jnp.float32)

    def reset(self, key, params):
        inner, obs = self.env.reset(key, params)
        return ActionDelayState(inner, self._empty_buffer()), obs

    def step(self, key, state, action, params):
        buffer, applied = self._push(state.buffer, action, params)
        inner, obs, reward, done, info = self.env.step(key, state.inner, applied, params)
        return ActionDelayState(inner, buffer), obs, reward, done, info

    def step_batch(self, keys, state, action, params, params_axis=None):
        """``vmap(step)`` over ``N`` envs, bit for bit, with the keys handed to the inner env's
        batch step as they came (``step`` passes its key through unchanged): one key for the
        batch stays one key, so a wrapper or ``AutoReset`` inside hashes only what it uses."""
        buffer, applied = jax.vmap(self._push, in_axes=(0, 0, params_axis))(state.buffer, action,
                                                                          params)
        inner, obs, reward, done, info = step_batch_of(self.env, keys, state.inner, applied,
                                                       params, params_axis)
        return ActionDelayState(inner, buffer), obs, reward, done, info

    def _push(self, buffer, action, params):
        """``(buffer with action in front, the action applied now)`` for one env."""
        buffer = jnp.concatenate([action[None].astype(buffer.dtype), buffer[:-1]])
        return buffer, buffer[jnp.clip(params.action_delay, 0, self.max_delay)]


class ObservationNoise(Wrapper):
    """Adds ``N(0, params.obs_noise_std^2)`` to every observation entry (sensor noise).

    ``batched_draws=True`` (opt-in; other random streams than the default, so seeds give other
    numbers): ``step_batch`` draws the noise of the whole batch from one key per step
    (``randomization.keys.batch_normal``: one ``normal`` of ``[N, *obs_shape]`` instead of a
    split and a draw per env) and hands the inner env the batch's keys unhashed. The noise is
    the same distribution, independent across envs and steps. ``step``/``reset`` are unchanged.
    """

    NOISE_TAG = 0x9E3779B9  # batch_draw_keys tag of the noise (>= 2**31)

    def __init__(self, env: Env, batched_draws: bool = False):
        super().__init__(env)
        self.batched_draws = bool(batched_draws)

    def step_batch(self, keys, state, action, params, params_axis=None):
        """``vmap(step)`` (default), or with ``batched_draws`` one noise draw for the batch."""
        if not self.batched_draws:
            return super().step_batch(keys, state, action, params, params_axis)
        keys = env_keys(keys, jax.tree.leaves(action)[0].shape[0])
        state, obs, reward, done, info = step_batch_of(self.env, keys, state, action, params,
                                                       params_axis)
        noise = batch_normal(keys, self.NOISE_TAG, obs.shape[1:], obs.dtype)  # [N, *obs]
        std = jnp.asarray(params.obs_noise_std, obs.dtype)
        if params_axis is not None:  # [N] -> [N, 1, ...]
            std = jnp.moveaxis(std, params_axis, 0).reshape((-1,) + (1,) * (obs.ndim - 1))
        return state, obs + std * noise, reward, done, info

    def reset(self, key, params):
        key, noise_key = jax.random.split(key)
        state, obs = self.env.reset(key, params)
        return state, self._noisy(noise_key, obs, params)

    def step(self, key, state, action, params):
        key, noise_key = jax.random.split(key)
        state, obs, reward, done, info = self.env.step(key, state, action, params)
        return state, self._noisy(noise_key, obs, params), reward, done, info

    @staticmethod
    def _noisy(key, obs, params):
        return obs + params.obs_noise_std * jax.random.normal(key, obs.shape, obs.dtype)


@struct.dataclass
class AutoResetState:
    inner: Any
    params: Any  # the env Params of the current episode (drawn from the space)
    steps_since_resample: jax.Array  # [] int32


class AutoReset(Wrapper):
    """Resets finished episodes in place and draws their physics from a ``ParamSpace``.

    ``reset(key, space)`` / ``step(key, state, action, space)``: the ``params`` argument is a
    ``ParamSpace`` (use ``fixed_space(params)`` for no randomization). A fresh ``Params`` is drawn
    at every episode start, or -- with ``resample_every=N`` -- every N steps even mid-episode
    (and still at every reset). On the step that ends an episode, ``obs`` is already the first
    observation of the next one; the last observation of the finished episode is in
    ``info["final_obs"]`` (learners bootstrap from it when ``info["truncated"]``).

    ``batched_draws=True`` (opt-in; changes the random streams, so seeds give other numbers than
    the default) makes ``step_batch`` draw the params and reset keys of all envs due on a step
    from one key for the batch (``space.sample(key, (n,))``: one draw per field for the batch
    instead of a ``fold_in`` and a draw per env and field), and steps the inner env through its
    own ``step_batch`` with keys derived from the batch's (``randomization.keys.batch_draw_keys``),
    so inner wrappers with batched draws (``ObservationNoise(batched_draws=True)``) and
    ``ActionDelay`` hash no per-env key. Same semantics: every episode of every env gets fresh
    params, independent across envs. ``step`` (one env) is unchanged.
    """

    STEP_TAG = 0xA5A5A5A5  # batch_draw_keys tag of the inner env's keys (batched_draws)

    def __init__(self, env: Env, resample_every: Optional[int] = None,
                 batched_draws: bool = False):
        if resample_every is not None and resample_every < 1:
            raise ValueError(f"resample_every must be >= 1 or None, got {resample_every}")
        super().__init__(env)
        self.resample_every = resample_every
        self.batched_draws = bool(batched_draws)

    def default_params(self) -> ParamSpace:
        return fixed_space(self.env.default_params())

    def reset(self, key, space: ParamDistribution):
        validate_space(self.env, space)  # once per trace: no cost in the compiled program
        param_key, reset_key = jax.random.split(unrolled(key))
        params = space.sample(param_key)
        inner, obs = self.env.reset(reset_key, params)
        return AutoResetState(inner, params, jnp.int32(0)), obs

    def step(self, key, state, action, space: ParamDistribution):
        key = unrolled(key)  # the same draws, hashed in straight-line code (randomization.keys)
        inner, obs, reward, done, info, since, resample = self._advance(key, state, action)
        info = dict(info, final_obs=obs)
        inner, obs, params, since = self._redraw(key, inner, obs, state.params, since, done,
                                                 resample, space)
        return AutoResetState(inner, params, since), obs, reward, done, info

    def step_batch(self, keys, state, action, space: ParamDistribution, space_axis=None):
        """``vmap(step, in_axes=(0, 0, 0, space_axis))`` over ``N`` envs, bit-identical to it
        (the same keys, the same draws), but drawing params and resetting only the envs whose
        episode ended (or that are due a resample).

        ``keys``: ``[N]``, or one key ``[]`` for the batch (env ``i``'s is
        ``split(keys, N)[i]``: then only the keys of the envs redrawn are hashed, see
        ``EnvKeys``); ``state`` and ``action``: batched ``[N, ...]``; ``space``: shared
        (``space_axis=None``) or batched on axis 0. A batch-level ``lax.switch`` picks one of:
        nothing to redraw (most steps of equal-length episodes), a gathered subset of the envs
        due (staggered episodes; sizes ``redraw_capacities(N)``), or all envs. Every env's draw
        depends only on its own key, so computing it for a subset yields the same bits. Under an
        outer ``vmap`` (seeds), the seed and env axes are merged into one batch first (a
        ``custom_vmap`` rule), so the switch stays a branch instead of becoming a select that
        would run every branch.
        """
        return batched_over_seeds(self._step_batch, keys, state, action, space, space_axis)

    def _advance(self, key, state, action):
        """The inner step (``key``'s first subkey) and which envs need a fresh draw."""
        step_key = jax.random.split(key, 3)[0]
        inner, obs, reward, done, info = self.env.step(step_key, state.inner, action, state.params)
        since = state.steps_since_resample + 1
        resample = done
        if self.resample_every is not None:
            resample = resample | (since >= self.resample_every)
        return inner, obs, reward, done, info, since, resample

    def _redraw(self, key, inner, obs, params, since, done, resample, space):
        """Where ``resample``: fresh params (``key``'s second subkey); where ``done``: a reset with
        them (third subkey). Elsewhere everything passes through unchanged."""
        _, param_key, reset_key = jax.random.split(key, 3)
        fresh = space.sample(param_key)
        params = select_tree(resample, fresh, params)
        reset_inner, reset_obs = self.env.reset(reset_key, params)
        inner = select_tree(done, reset_inner, inner)
        obs = jnp.where(done, reset_obs, obs)
        since = jnp.where(resample, 0, since).astype(jnp.int32)
        return inner, obs, params, since

    def _redraw_shared_key(self, key, inner, obs, params, since, done, resample, space,
                           space_axis):
        """``_redraw`` for ``n`` envs (batched ``[n, ...]``) from one ``key`` for all of them
        (``batched_draws``): one ``space.sample(key, (n,))`` (per-env draws when the space is
        itself batched), reset keys split from one key."""
        n = done.shape[0]
        param_key, reset_key = jax.random.split(key)
        if space_axis is None:
            fresh = space.sample(param_key, (n,))
        else:
            fresh = jax.vmap(lambda k, sp: sp.sample(k), in_axes=(0, space_axis))(
                jax.random.split(param_key, n), space)
        params = jax.vmap(select_tree)(resample, fresh, params)
        reset_inner, reset_obs = jax.vmap(self.env.reset)(jax.random.split(reset_key, n), params)
        inner = jax.vmap(select_tree)(done, reset_inner, inner)
        obs = jax.vmap(jnp.where)(done, reset_obs, obs)
        since = jnp.where(resample, 0, since).astype(jnp.int32)
        return inner, obs, params, since

    def _step_batch(self, keys: EnvKeys, state, action, space, space_axis):
        # unrolled: the same draws, hashed in straight-line code (randomization.keys). Every
        # env's key feeds the inner step (XLA drops it when the env ignores its key); the
        # redraw branches hash their own envs' keys.
        if self.batched_draws:  # the inner env's batch step, from keys derived unhashed
            step_keys = EnvKeys(batch_draw_keys(keys, self.STEP_TAG), keys.per)
            inner, obs, reward, done, info = step_batch_of(self.env, step_keys, state.inner,
                                                           action, state.params, 0)
            since = state.steps_since_resample + 1
            resample = done
            if self.resample_every is not None:
                resample = resample | (since >= self.resample_every)
        else:
            inner, obs, reward, done, info, since, resample = jax.vmap(self._advance)(
                unrolled(keys.all()), state, action)
        info = dict(info, final_obs=obs)
        if self.batched_draws:  # one key for the batch's draws on this step
            shared = jax.random.fold_in(unrolled(keys.take(jnp.zeros((1,), jnp.int32)))[0],
                                        0x5EED)
            redraw = lambda k, *rest: self._redraw_shared_key(shared, *rest, space_axis)
        else:
            redraw = jax.vmap(self._redraw, in_axes=(0, 0, 0, 0, 0, 0, 0, space_axis))
        carry = (inner, obs, state.params, since)
        num_envs = keys.size

        def redraw_none():
            return carry

        def redraw_all():
            return redraw(unrolled(keys.all()), *carry, done, resample, space)

        def redraw_some(capacity):
            # Indices of the envs to redraw, padded with num_envs: gathers clip the padding to a
            # real env (computed, then dropped by the scatter).
            idx = first_true_indices(resample, capacity, num_envs)
            take = functools.partial(jax.tree.map, lambda x: jnp.take(x, idx, axis=0,
                                                                      mode="clip"))
            sub_space = space if space_axis is None else take(space)
            sub = redraw(unrolled(keys.take(idx)), *take(carry), take(done), take(resample),
                         sub_space)
            return jax.tree.map(lambda full, part: full.at[idx].set(part, mode="drop"),
                                carry, sub)

        capacities = redraw_capacities(num_envs)
        count = jnp.sum(resample.astype(jnp.int32))
        # 0: none; i + 1: the smallest subset that holds them all; last: every env.
        branch = jnp.where(count == 0, 0,
                           1 + jnp.searchsorted(jnp.asarray(capacities, jnp.int32), count))
        branches = ([redraw_none] + [functools.partial(redraw_some, c) for c in capacities]
                    + [redraw_all])
        inner, obs, params, since = jax.lax.switch(branch, branches)
        return AutoResetState(inner, params, since), obs, reward, done, info


def _prefix_count(mask: jax.Array, block: int = 32) -> jax.Array:
    """Inclusive running count of ``mask`` [n] (bool) -> [n] int32, as two small triangular
    matmuls over blocks of ``block`` entries: exact (0/1 products, sums < 2**24 in float32) and
    ~3x faster than ``jnp.cumsum`` on a CPU, whose lowering is a ``reduce_window``."""
    n = mask.shape[0]
    nb = -(-n // block)
    x = jnp.pad(mask.astype(jnp.float32), (0, nb * block - n)).reshape(nb, block)
    hi = jax.lax.Precision.HIGHEST
    within = jnp.matmul(x, jnp.triu(jnp.ones((block, block), jnp.float32)), precision=hi)
    offsets = jnp.matmul(within[:, -1], jnp.triu(jnp.ones((nb, nb), jnp.float32), 1),
                         precision=hi)
    return (within + offsets[:, None]).reshape(-1)[:n].astype(jnp.int32)


def first_true_indices(mask: jax.Array, size: int, fill_value: int) -> jax.Array:
    """``jnp.nonzero(mask, size=size, fill_value=fill_value)[0]`` for a bool ``mask`` [n]: the
    first ``size`` indices where it is true, ascending, padded with ``fill_value`` -> [size]
    int32. The same result for a fraction of the cost on a CPU (``_prefix_count`` and one
    scatter instead of two cumsums and a bincount)."""
    n = mask.shape[0]
    if n >= 2**24:  # beyond float32's exact integers
        return jnp.nonzero(mask, size=size, fill_value=fill_value)[0].astype(jnp.int32)
    slot = jnp.where(mask, _prefix_count(mask) - 1, size)
    return jnp.full((size,), fill_value, jnp.int32).at[slot].set(
        jnp.arange(n, dtype=jnp.int32), mode="drop")


def redraw_capacities(num_envs: int) -> Tuple[int, ...]:
    """Subset sizes ``AutoReset.step_batch`` can redraw through (``N/64``, ``N/16``, ``N/4``,
    deduplicated, at least 1); more envs than the largest go through the all-envs branch. A
    step redraws through the smallest that holds every env due, so it computes at most ~4x the
    draws it needs."""
    return tuple(sorted({max(1, num_envs // d) for d in (64, 16, 4) if num_envs // d < num_envs}
                        or {1}))


def batched_over_seeds(fn, keys, state, action, space, space_axis):
    """``fn(keys: EnvKeys of N envs, state[N], action[N], space, space_axis)`` with a
    ``custom_vmap`` rule: under an outer ``vmap`` of size ``S`` the ``[S, N]`` axes are merged
    into one batch of ``S * N`` envs (a space batched over ``S`` is repeated per env), ``fn``
    runs once on it, and the outputs are split back to ``[S, N, ...]``. Per-env results are
    unchanged (each env's computation reads only its own key, state, action and space).
    ``keys``: ``[N]`` or one key ``[]`` for the batch (``env_keys``)."""
    num_envs = jax.tree.leaves(action)[0].shape[0]
    return _batched_env_keys(fn, env_keys(keys, num_envs), state, action, space, space_axis)


def _batched_env_keys(fn, keys: EnvKeys, state, action, space, space_axis):
    @custom_batching.custom_vmap
    def call(keys, state, action, space):
        return fn(keys, state, action, space, space_axis)

    @call.def_vmap
    def rule(axis_size, in_batched, keys, state, action, space):
        keys_b, state_b, action_b, space_b = in_batched
        num_envs = keys.base.shape[1 if keys_b.base else 0] * (keys.per or 1)

        def merge(x, batched):  # [S, N, ...] (or [N, ...] shared over S) -> [S * N, ...]
            if not batched:
                x = jnp.broadcast_to(x, (axis_size,) + x.shape)
            return x.reshape((axis_size * x.shape[1],) + x.shape[2:])

        merged = [jax.tree.map(merge, tree, flags)
                  for tree, flags in ((keys, keys_b), (state, state_b), (action, action_b))]
        if space_axis is None and not any(jax.tree.leaves(space_b)):  # one shared space
            inner_space, inner_axis = space, None
        elif space_axis is None:  # [S, ...] -> one copy per env: [S * N, ...]
            inner_space = jax.tree.map(
                lambda x, b: jnp.repeat(x if b else jnp.broadcast_to(x, (axis_size,) + x.shape),
                                        num_envs, axis=0), space, space_b)
            inner_axis = 0
        else:  # a space per env [N] (or [S, N]): one per merged env, [S * N]
            inner_space, inner_axis = jax.tree.map(merge, space, space_b), 0
        out = _batched_env_keys(fn, *merged, inner_space, inner_axis)
        out = jax.tree.map(lambda x: x.reshape((axis_size, num_envs) + x.shape[1:]), out)
        return out, jax.tree.map(lambda _: True, out)

    return call(keys, state, action, space)


@struct.dataclass
class EpisodeStatsState:
    inner: Any
    episode_return: jax.Array  # [] float32, running return of the current episode
    episode_length: jax.Array  # [] int32
    last_return: jax.Array  # [] float32, return of the most recently finished episode
    last_length: jax.Array  # [] int32


class EpisodeStats(Wrapper):
    """Tracks undiscounted episode returns and lengths across auto-resets.

    Adds to ``info``: ``episode_return`` / ``episode_length`` (of the episode that ended on this
    step; valid where ``done``), and ``last_return`` (of the latest finished episode).
    """

    def reset(self, key, params):
        inner, obs = self.env.reset(key, params)
        zero_f, zero_i = jnp.float32(0.0), jnp.int32(0)
        return EpisodeStatsState(inner, zero_f, zero_i, zero_f, zero_i), obs

    def step(self, key, state, action, params):
        inner, obs, reward, done, info = self.env.step(key, state.inner, action, params)
        return self._track(state, inner, obs, reward, done, info)

    def step_batch(self, keys, state, action, params, params_axis=None):
        """The inner env's ``step_batch`` (e.g. ``AutoReset``'s) plus the elementwise stats."""
        if not isinstance(self.env, Wrapper):
            return super().step_batch(keys, state, action, params, params_axis)
        inner, obs, reward, done, info = self.env.step_batch(keys, state.inner, action, params,
                                                             params_axis)
        return jax.vmap(self._track)(state, inner, obs, reward, done, info)

    @staticmethod
    def _track(state, inner, obs, reward, done, info):
        ret = state.episode_return + reward
        length = state.episode_length + 1
        new_state = EpisodeStatsState(
            inner,
            jnp.where(done, 0.0, ret).astype(jnp.float32),
            jnp.where(done, 0, length).astype(jnp.int32),
            jnp.where(done, ret, state.last_return).astype(jnp.float32),
            jnp.where(done, length, state.last_length).astype(jnp.int32),
        )
        info = dict(info, episode_return=ret, episode_length=length,
                    last_return=new_state.last_return)
        return new_state, obs, reward, done, info


# Params fields that only a wrapper reads (the envs ignore them), with the wrapper that does.
_WRAPPER_FIELDS = {"action_delay": ActionDelay, "obs_noise_std": ObservationNoise}


def _concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in jax.tree.leaves(values))


def validate_space(env: Env, space: ParamDistribution) -> None:
    """Check that ``env`` can use what ``space`` draws; raise ``SpecError`` if not.

    ``action_delay`` and ``obs_noise_std`` are read only by the ``ActionDelay`` and
    ``ObservationNoise`` wrappers: randomizing one (or setting its nominal value) on an env
    without that wrapper would have no effect. Delays must lie in ``[0, max_delay]`` (the wrapper
    would clip them) and noise stds must be >= 0. ``AutoReset`` calls this at every trace;
    under ``jit`` the space's numbers are traced, so only which fields are randomized is checked
    there: ``make_param_space(env, ...)`` checks the numbers too.
    """
    wrappers, inner = [], env
    while isinstance(inner, Wrapper):
        wrappers.append(inner)
        inner = inner.env
    support = space.support() if hasattr(space, "support") else {}
    nominal = getattr(space, "nominal", None)
    for field, wrapper_cls in _WRAPPER_FIELDS.items():
        readers = [w for w in wrappers if isinstance(w, wrapper_cls)]
        value = getattr(nominal, field, None)
        used = field in support or (value is not None and _concrete(value)
                                    and bool(np.any(np.asarray(value) != 0)))
        if used and not readers:
            raise SpecError(
                f"{field!r} is randomized or set, but {env.name} is not wrapped in "
                f"{wrapper_cls.__name__}, which is what reads it: it would have no effect. "
                f"Wrap the env, e.g. {wrapper_cls.__name__}(env"
                f"{', max_delay=...' if wrapper_cls is ActionDelay else ''})."
            )
        if not used:
            continue
        low, high = support.get(field, (value, value))
        if not _concrete(low, high):
            continue
        low, high = float(np.min(np.asarray(low))), float(np.max(np.asarray(high)))
        if wrapper_cls is ActionDelay:
            max_delay = min(w.max_delay for w in readers)
            if low < 0 or high > max_delay:
                raise SpecError(
                    f"'action_delay' draws delays in [{low:g}, {high:g}], outside the "
                    f"ActionDelay wrapper's [0, max_delay={max_delay}]: they would be clipped. "
                    f"Use a range inside it or a larger max_delay."
                )
        elif low < 0:
            raise SpecError(f"'obs_noise_std' draws negative stds (down to {low:g}); "
                            "noise stds must be >= 0.")
