"""Gymnasium front-ends for our envs: numpy in, numpy out, physics redrawn at every reset.

``GymnasiumEnv(env, space)`` is a ``gymnasium.Env`` and ``GymnasiumVectorEnv(env, space, n)`` a
``gymnasium.vector.VectorEnv`` (gymnasium 1.x API) around any ``metarl_jax`` env -- pure-JAX or
MJX -- and a randomization distribution over its ``Params`` (a ``ParamSpace``, ``ADRSpace``, or
any ``ParamDistribution``; ``None`` = the nominal physics). Each episode's ``Params`` are drawn
from the space at its reset, inside the same jitted call as the env's own reset::

    env = GymnasiumEnv(make("Pendulum"), make_param_space(make("Pendulum"), {
        "m": uniform(0.5, 2.0, relative=True)}))
    obs, info = env.reset(seed=0)          # info["params"]: this episode's physics (numpy)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

``terminated`` is a terminal state (no bootstrap); ``truncated`` is the time limit
(``env.max_steps`` steps), read from the env's ``info["truncated"]``. Both can be true on the
same step, as with gymnasium's ``TimeLimit``. The space is an ordinary attribute (``.space``)
passed to the compiled functions as an argument, so assigning a new one (e.g. a widened ADR
space) takes effect at the next reset without recompiling.

Randomness: each reset draws a JAX key from the gymnasium ``np_random`` (seeded by ``seed=`` of
the constructor, re-seeded by ``reset(seed=...)``); the episode's params, initial state and every
step's key derive from it, so a seeded reset followed by the same actions reproduces an episode.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional, Sequence, Union

import gymnasium
import jax
import jax.numpy as jnp
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from metarl_jax.core.env import Box, Discrete, Env
from metarl_jax.core.wrappers import AutoReset, EpisodeStats, validate_space
from metarl_jax.randomization.param_space import ParamDistribution, fixed_space

_MAX_SEED = 2**31 - 1


def to_gymnasium_space(space) -> spaces.Space:
    """Our ``Box`` / ``Discrete`` as gymnasium's (``Box`` bounds broadcast, float32)."""
    if isinstance(space, Discrete):
        return spaces.Discrete(int(space.n))
    if isinstance(space, Box):
        shape = tuple(int(s) for s in space.shape)
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape).copy()
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape).copy()
        return spaces.Box(low=low, high=high, shape=shape, dtype=np.float32)
    raise TypeError(f"unsupported space {type(space).__name__}; expected Box or Discrete")


def params_to_numpy(params: Any) -> Any:
    """A ``Params`` dataclass as a plain ``{field: np.ndarray}`` dict (nested dataclasses become
    nested dicts): fresh arrays, comparable with ``==`` field by field."""
    if dataclasses.is_dataclass(params):
        return {f.name: params_to_numpy(getattr(params, f.name))
                for f in dataclasses.fields(params)}
    if isinstance(params, dict):
        return {k: params_to_numpy(v) for k, v in params.items()}
    return np.array(params)


def _terminated(done, info):
    """The env's own ``terminated`` flag (terminal state), else ``done`` minus the time limit."""
    return info.get("terminated", done & ~info["truncated"])


def _space_or_nominal(env: Env, space: Optional[ParamDistribution]) -> ParamDistribution:
    space = fixed_space(env.default_params()) if space is None else space
    validate_space(env, space)
    return space


def _action_converter(env: Env):
    if isinstance(env.action_space, Discrete):
        return lambda a, batch=(): np.asarray(a, np.int32).reshape(batch)
    shape = tuple(env.action_space.shape)
    return lambda a, batch=(): np.asarray(a, np.float32).reshape(tuple(batch) + shape)


class GymnasiumEnv(gymnasium.Env):
    """One env as a ``gymnasium.Env``; physics drawn fresh from ``space`` at every reset.

    Args:
        env: any ``metarl_jax.core.env.Env`` (wrappers such as ``ActionDelay`` included).
        space: distribution over ``env``'s ``Params`` (``None``: ``env.default_params()``).
        seed: seeds ``np_random`` for resets called without ``seed=``.
        params_in_info: put the episode's ``Params`` (``params_to_numpy``) in ``info["params"]``.

    After ``terminated`` or ``truncated``, call ``reset()``: stepping on continues the finished
    episode's dynamics past its end. ``.state`` / ``.params`` are the current JAX state and
    ``Params``.
    """

    metadata = {"render_modes": []}

    def __init__(self, env: Env, space: Optional[ParamDistribution] = None, seed: int = 0,
                 params_in_info: bool = True):
        self.env = env
        self.space = _space_or_nominal(env, space)
        self.params_in_info = params_in_info
        self.observation_space = to_gymnasium_space(env.observation_space)
        self.action_space = to_gymnasium_space(env.action_space)
        self.max_steps = int(env.max_steps)
        self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._to_action = _action_converter(env)
        self._key = self.state = self.params = None

        def reset(key, space):
            key, param_key, reset_key = jax.random.split(key, 3)
            params = space.sample(param_key)
            state, obs = env.reset(reset_key, params)
            return key, state, obs, params

        def step(key, state, action, params):
            key, step_key = jax.random.split(key)
            state, obs, reward, done, info = env.step(step_key, state, action, params)
            return key, state, obs, reward, _terminated(done, info), info["truncated"]

        self._reset_fn = jax.jit(reset)
        self._step_fn = jax.jit(step)

    def _info(self) -> Dict[str, Any]:
        return {"params": params_to_numpy(self.params)} if self.params_in_info else {}

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        key = jax.random.PRNGKey(int(self.np_random.integers(0, _MAX_SEED)))
        self._key, self.state, obs, self.params = self._reset_fn(key, self.space)
        return np.array(obs, np.float32), self._info()

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        self._key, self.state, obs, reward, terminated, truncated = self._step_fn(
            self._key, self.state, self._to_action(action), self.params)
        return (np.array(obs, np.float32), float(reward), bool(terminated), bool(truncated),
                self._info())


class GymnasiumVectorEnv(VectorEnv):
    """``num_envs`` copies of an env as a gymnasium 1.x ``VectorEnv``, stepped by one jitted,
    vmapped call; every sub-env draws its own physics from ``space`` at each of its resets.

    Autoreset mode: ``AutoresetMode.SAME_STEP`` (``metadata["autoreset_mode"]``), as our
    ``AutoReset`` wrapper does: on the step where a sub-env terminates or truncates, its reward,
    ``terminations`` and ``truncations`` are the finished episode's, while the returned
    observation is already the first one of its next episode (with freshly drawn physics).
    The finished episode's last observation is in ``infos["final_obs"]`` -- a dense
    ``[num_envs, *obs_shape]`` float32 array, valid where ``infos["_final_obs"]`` (= done) is
    true; bootstrap from it on truncation. ``infos["episode_return"]`` / ``["episode_length"]``
    (masks ``_episode_return`` / ``_episode_length``) hold finished episodes' totals.

    ``reset(seed=int)`` reseeds everything (sub-env i from ``PRNGKey(seed)`` split ``num_envs``
    ways); ``seed=[s_0, ..., s_{n-1}]`` gives sub-env i ``PRNGKey(s_i)``; ``seed=None`` draws
    from ``np_random`` (seeded by the constructor's ``seed``). ``.params``: the current episodes'
    ``Params``, batched ``[num_envs, ...]`` (numpy dict).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, env: Env, space: Optional[ParamDistribution], num_envs: int,
                 seed: int = 0):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        self.env = env
        self.space = _space_or_nominal(env, space)
        self.num_envs = int(num_envs)
        self.max_steps = int(env.max_steps)
        self.single_observation_space = to_gymnasium_space(env.observation_space)
        self.single_action_space = to_gymnasium_space(env.action_space)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._np_random, self._np_random_seed = seeding.np_random(seed)
        self._to_action = _action_converter(env)
        self._key = self.state = None
        wrapped = EpisodeStats(AutoReset(env))
        self._wrapped = wrapped

        def reset(keys, space):
            keys = jax.vmap(lambda k: jax.random.split(k))(keys)  # [n, 2]: carry, reset
            state, obs = jax.vmap(wrapped.reset, in_axes=(0, None))(keys[:, 1], space)
            return keys[:, 0], state, obs

        def step(keys, state, actions, space):
            keys = jax.vmap(lambda k: jax.random.split(k))(keys)
            state, obs, reward, done, info = jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))(
                keys[:, 1], state, actions, space)
            infos = {
                "final_obs": info["final_obs"], "_final_obs": done,
                "episode_return": info["episode_return"], "_episode_return": done,
                "episode_length": info["episode_length"], "_episode_length": done,
            }
            return (keys[:, 0], state, obs, reward.astype(jnp.float32), _terminated(done, info),
                    info["truncated"], infos)

        self._reset_fn = jax.jit(reset)
        self._step_fn = jax.jit(step)

    def _reset_keys(self, seed: Union[None, int, Sequence[int]]) -> jax.Array:
        if seed is None:
            return jax.random.split(
                jax.random.PRNGKey(int(self.np_random.integers(0, _MAX_SEED))), self.num_envs)
        if isinstance(seed, (int, np.integer)):
            self._np_random, self._np_random_seed = seeding.np_random(int(seed))
            return jax.random.split(jax.random.PRNGKey(int(seed)), self.num_envs)
        seeds = [int(s) for s in seed]
        if len(seeds) != self.num_envs:
            raise ValueError(f"got {len(seeds)} seeds for {self.num_envs} envs")
        self._np_random, self._np_random_seed = seeding.np_random(seeds[0])
        return jnp.stack([jax.random.PRNGKey(s) for s in seeds])

    def reset(self, *, seed: Union[None, int, Sequence[int]] = None,
              options: Optional[dict] = None):
        keys = self._reset_keys(seed)
        self._key, self.state, obs = self._reset_fn(keys, self.space)
        return np.array(obs, np.float32), {}

    def step(self, actions):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        self._key, self.state, obs, reward, terminated, truncated, infos = self._step_fn(
            self._key, self.state, self._to_action(actions, (self.num_envs,)), self.space)
        infos = {k: np.array(v) for k, v in infos.items()}
        return (np.array(obs, np.float32), np.array(reward), np.array(terminated, bool),
                np.array(truncated, bool), infos)

    @property
    def params(self) -> Dict[str, Any]:
        """The current episodes' ``Params``, every leaf ``[num_envs, ...]``."""
        if self.state is None:
            raise RuntimeError("call reset() first")
        return params_to_numpy(self.state.inner.params)
