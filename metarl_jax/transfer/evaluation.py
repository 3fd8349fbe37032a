"""Evaluate a policy on a batch of fixed physics (a held-out grid), episodes ``vmap``-ed.

``evaluate_on_params(act, env, params[C], num_episodes, key) -> returns[C, E]``: for every cell
``c`` of a batch of env params, run ``E`` episodes from fresh resets until ``done`` (or the env's
horizon), and return each episode's undiscounted return. No auto-reset: each episode counts once.

``evaluate_seeds(policy_of, states[S], env, params[C], num_episodes, key) -> [S, C]``: the same
for every seed of a stacked train state at once (one compiled program), where ``policy_of(state)``
builds one seed's policy, e.g. ``lambda s: ppo.make_policy(s, config, deterministic=True)``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Mapping, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from metarl_jax import stats
from metarl_jax.randomization.distributions import SpecError

# act(key, obs[obs_size]) -> action  (one env; vmapped here)
ActFn = Callable[[jax.Array, jax.Array], jax.Array]


def episode_return(act: ActFn, env, key: jax.Array, params: Any) -> jax.Array:
    """Undiscounted return ``[]`` of one episode of ``env`` under ``params`` (unbatched)."""
    reset_key, key = jax.random.split(key)
    state, obs = env.reset(reset_key, params)

    def step(carry, _):
        key, state, obs, total, alive = carry
        key, act_key, step_key = jax.random.split(key, 3)
        action = act(act_key, obs)
        state, obs, reward, done, _ = env.step(step_key, state, action, params)
        total = total + jnp.where(alive, reward, 0.0)
        return (key, state, obs, total, alive & ~done), None

    init = (key, state, obs, jnp.float32(0.0), jnp.bool_(True))
    (_, _, _, total, _), _ = jax.lax.scan(step, init, None, length=env.max_steps)
    return total


def evaluate_on_params(act: ActFn, env, params: Any, num_episodes: int, key: jax.Array
                       ) -> jax.Array:
    """Returns ``[C, num_episodes]`` for ``params`` batched on a leading axis of size ``C``."""
    num_cells = jax.tree.leaves(params)[0].shape[0]
    keys = jax.random.split(key, num_cells * num_episodes).reshape(num_cells, num_episodes, -1)
    per_episode = jax.vmap(lambda k, p: episode_return(act, env, k, p), in_axes=(0, None))
    return jax.vmap(per_episode)(keys, params)


def seed_evaluator(policy_of: Callable[[Any], Union[ActFn, Mapping[str, ActFn]]], env,
                   params: Any, num_episodes: int, key: jax.Array) -> Callable[[Any], Any]:
    """A jitted ``evaluator(states)``: the mean return per seed and cell ``[S, C]`` of the policy
    ``policy_of(state)`` of every seed of ``states`` (stacked ``[S, ...]``; ``vmap``-ed), over
    ``num_episodes`` episodes per cell (``evaluate_on_params``; every seed sees the same ``key``).
    If ``policy_of`` returns ``{name: act}``, the evaluator returns ``{name: [S, C]}``. Build it
    once and call it on several states of one structure to compile once."""

    def one_seed(state):
        policy = policy_of(state)
        run = lambda act: evaluate_on_params(act, env, params, num_episodes, key).mean(-1)
        if isinstance(policy, Mapping):
            return {name: run(act) for name, act in policy.items()}
        return run(policy)

    return jax.jit(jax.vmap(one_seed))


def evaluate_seeds(policy_of: Callable[[Any], Union[ActFn, Mapping[str, ActFn]]], states: Any,
                   env, params: Any, num_episodes: int, key: jax.Array):
    """``seed_evaluator(...)(states)`` as numpy: ``[S, C]`` (or ``{name: [S, C]}``)."""
    return jax.device_get(seed_evaluator(policy_of, env, params, num_episodes, key)(states))


def check_grid_axis(name: str, values: Sequence[float], kind: str,
                    max_value: float | None = None) -> None:
    """Validate one axis of a held-out grid (an experiment config's ``eval_*`` values), so that
    every experiment refuses the same bad input before training.

    Args:
        name: the axis' name in messages (the config field, e.g. ``"eval_mass_scales"``).
        values: the axis' values; at least one, all finite.
        kind: ``"scale"`` (a factor on a physical quantity such as a mass: > 0), ``"delay"``
            (steps: whole numbers >= 0) or ``"nonnegative"`` (e.g. a noise std: >= 0).
        max_value: the largest value allowed (e.g. the ``ActionDelay`` buffer's ``max_delay``).

    Raises:
        SpecError: the message names the axis and the offending values.
    """
    values = tuple(values)
    if not values:
        raise SpecError(f"{name} must list at least one value, got none")
    array = np.asarray(values, np.float64)
    if not np.all(np.isfinite(array)):
        raise SpecError(f"{name} must be finite, got {list(values)}")
    if kind == "scale" and np.any(array <= 0):
        raise SpecError(f"{name} are scales of a physical quantity and must be > 0, "
                        f"got {list(values)}")
    if kind == "delay" and np.any((array < 0) | (array != np.round(array))):
        raise SpecError(f"{name} are delays in steps and must be whole numbers >= 0, "
                        f"got {list(values)}")
    if kind == "nonnegative" and np.any(array < 0):
        raise SpecError(f"{name} must be >= 0, got {list(values)}")
    if kind not in ("scale", "delay", "nonnegative"):
        raise ValueError(f"kind must be 'scale', 'delay' or 'nonnegative', got {kind!r}")
    if max_value is not None and np.any(array > max_value):
        raise SpecError(f"{name} must be <= {max_value:g}, got {list(values)}")


def grid_params(nominal: Any, axes: Dict[str, Sequence[float]], relative: Sequence[str] = ()):
    """The Cartesian product of ``axes`` (``{field: values}``) as ``Params`` batched ``[C]``.

    Fields named in ``relative`` scale the nominal value (``m = nominal_m * value``); the others
    are absolute values (cast to the field's dtype; an integer field needs integer values). The
    first axis varies slowest (``np.meshgrid(..., indexing="ij")`` order); returns
    ``(params[C], cell_values: {field: np.ndarray[C]})``.
    """
    names = list(axes)
    unknown = [n for n in names if not hasattr(nominal, n)]
    if unknown:
        raise ValueError(f"grid axes {unknown} are not fields of {type(nominal).__name__}")
    mesh = np.meshgrid(*[np.asarray(axes[n], np.float64) for n in names], indexing="ij")
    cells = {n: m.reshape(-1) for n, m in zip(names, mesh)}
    num_cells = mesh[0].size
    batched = jax.tree.map(lambda x: jnp.broadcast_to(x, (num_cells,) + jnp.shape(x)), nominal)
    updates = {}
    for name, values in cells.items():
        base = getattr(nominal, name)
        if name in relative:
            value = jnp.asarray(values) * base
        else:
            integer = jnp.issubdtype(jnp.asarray(base).dtype, jnp.integer)
            if integer and np.any(values != np.round(values)):
                raise ValueError(f"grid axis {name!r} is an integer field; "
                                 f"got values {values.tolist()}")
            value = jnp.asarray(values)
        updates[name] = value.astype(jnp.asarray(base).dtype)
    return batched.replace(**updates), cells


def summarize_grid(cell_returns: np.ndarray) -> Dict[str, float]:
    """``heldout_mean`` (mean over cells), ``heldout_worst`` (worst cell) and
    ``heldout_cvar10`` (``stats.cvar`` of the worst 10% of cells) of per-cell mean returns."""
    cell_returns = np.asarray(cell_returns, np.float64).reshape(-1)
    return {
        "heldout_mean": float(cell_returns.mean()),
        "heldout_worst": float(cell_returns.min()),
        "heldout_cvar10": stats.cvar(cell_returns, 0.1),
    }


def summarize_seeds(per_seed: np.ndarray) -> Dict[str, Any]:
    """``summarize_grid`` of the seed-mean per-cell returns of ``per_seed[S, C]``, with
    ``per_seed`` (each seed's ``summarize_grid``) and ``cell_returns`` (the seed mean, ``[C]``)."""
    per_seed = np.asarray(per_seed)
    cell_mean = per_seed.mean(0)
    return dict(summarize_grid(cell_mean), per_seed=[summarize_grid(r) for r in per_seed],
                cell_returns=cell_mean.tolist())
