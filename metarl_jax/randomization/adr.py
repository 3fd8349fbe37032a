"""Automatic domain randomization (ADR): per-parameter ranges that grow while the policy copes.

OpenAI et al., "Solving Rubik's Cube with a Robot Hand", 2019 (Section 5 and Algorithm 1). Each
randomized scalar parameter ``d`` is drawn uniformly from ``[low_d, high_d]``. With probability
``p_b`` an episode is a *boundary* episode: one parameter ``d`` (uniform over the D parameters)
and one side (low or high, 50/50) are chosen and ``d`` is pinned to that boundary value, the others
drawn as usual. The return of a boundary episode goes into that boundary's buffer; once the buffer
holds ``buffer_size`` episodes their mean is compared with two thresholds: above ``t_high`` the
boundary moves outward by ``delta_d`` (the range widens), below ``t_low`` it moves inward (the range
shrinks), in between it stays; the buffer is then emptied. Ranges are clipped to hard limits and
never cross the initial value (``low_d <= initial_d <= high_d``).

``ADRSpace`` is the distribution *and* its state: a pytree with ``sample(key, shape=())`` like a
``ParamSpace``, so ``AutoReset`` draws episodes from it inside ``jit``; it lives in
``PPOState.space`` (checkpointed with the run) and ``ADR`` (the PPO hook) updates it after each
rollout with ``adr_update``. Values are absolute (field units), not scales of the nominal.

Bookkeeping, stated: (a) boundary episodes are recognized after the rollout by their value --
parameter ``d`` equal (bitwise) to the boundary it was drawn from (``drawn_low``/``drawn_high``:
the ranges in force when the rollout's episodes were drawn, one update behind the current ones).
A uniform draw lands exactly on a boundary with probability ~0, except while a range is a single
point, where *every* episode has ``d`` at its boundary: then every episode counts for that
boundary, which measures exactly the quantity ADR wants (performance with ``d`` at the boundary,
the rest randomized), only with more samples. (b) A buffer is evaluated as soon as it holds at
least ``buffer_size`` episodes; all of them are averaged (one rollout can add several). (c) As in
the paper's training workers, the boundary episodes are also used for training.
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl_jax.randomization.distributions import SpecError
from metarl_jax.randomization.param_space import ParamDistribution, ParamSpace, fixed_space
from metarl_jax.randomization.robust import EpisodeBatch, param_matrix

static = dict(pytree_node=False)


@struct.dataclass
class ADRSpace(ParamDistribution):
    """ADR's distribution over ``Params`` and its state (implements ``ParamDistribution``).
    Arrays are ``[D]`` unless stated.

    Attributes:
        nominal: the env's ``Params`` (unbatched); un-randomized fields keep these values.
        fields: the D randomized scalar float fields (static).
        low, high: current range of each field (value units).
        initial: the initial value of each field; ``low <= initial <= high`` always.
        hard_low, hard_high: limits the ranges are clipped to.
        delta: step by which a boundary moves.
        drawn_low, drawn_high: the ranges the episodes now being played were drawn from.
        buffer_sum, buffer_count: [D, 2] sum and number of boundary returns (side 0 low, 1 high).
        p_boundary, t_low, t_high: [] boundary probability and the two return thresholds.
        buffer_size: [] int32 episodes per evaluation of a boundary.
    """

    nominal: Any
    fields: Tuple[str, ...] = struct.field(**static)
    low: jax.Array
    high: jax.Array
    initial: jax.Array
    hard_low: jax.Array
    hard_high: jax.Array
    delta: jax.Array
    drawn_low: jax.Array
    drawn_high: jax.Array
    buffer_sum: jax.Array
    buffer_count: jax.Array
    p_boundary: jax.Array
    t_low: jax.Array
    t_high: jax.Array
    buffer_size: jax.Array

    def sample(self, key: jax.Array, shape: Tuple[int, ...] = ()) -> Any:
        """Draw ``Params`` with every leaf ``[*shape, ...]`` (boundary episodes included)."""
        shape = tuple(shape)
        num = len(self.fields)
        u_key, b_key, d_key, s_key = jax.random.split(key, 4)
        values = jax.random.uniform(u_key, shape + (num,), minval=self.low, maxval=self.high)
        boundary = jax.random.bernoulli(b_key, self.p_boundary, shape)
        dim = jax.random.randint(d_key, shape, 0, num)
        high_side = jax.random.bernoulli(s_key, 0.5, shape)
        pinned = jnp.where(high_side[..., None], self.high, self.low)  # [*shape, D]
        pin = boundary[..., None] & (jnp.arange(num) == dim[..., None])
        values = jnp.where(pin, pinned, values)
        nominal = jax.tree.map(lambda x: jnp.broadcast_to(x, shape + jnp.shape(x)), self.nominal)
        updates = {f: values[..., i].astype(jnp.asarray(getattr(self.nominal, f)).dtype)
                   for i, f in enumerate(self.fields)}
        return nominal.replace(**updates)

    def collapse_to_nominal(self) -> ParamSpace:
        """The nominal physics only (a ``ParamSpace`` with no randomized field)."""
        return fixed_space(self.nominal)

    def support(self) -> Dict[str, Tuple[jax.Array, jax.Array]]:
        """``{field: (low, high)}``: the current ranges."""
        return {f: (self.low[i], self.high[i]) for i, f in enumerate(self.fields)}


def make_adr_space(nominal: Any, hard_limits: Dict[str, Tuple[float, float]], *,
                   delta: Dict[str, float], initial: Dict[str, Tuple[float, float]] | None = None,
                   p_boundary: float = 0.5, t_low: float, t_high: float,
                   buffer_size: int = 16) -> ADRSpace:
    """Build a validated ``ADRSpace``.

    Args:
        nominal: the env's ``Params``.
        hard_limits: ``{field: (min, max)}`` (value units) for each randomized scalar float field.
        delta: ``{field: step}`` by which a boundary moves (value units, > 0).
        initial: ``{field: (low, high)}`` starting ranges; default: the nominal value (a point).
        p_boundary: probability that an episode is a boundary episode, in [0, 1].
        t_low, t_high: return thresholds, ``t_low < t_high``.
        buffer_size: boundary episodes averaged per decision (>= 1).
    """
    fields = tuple(hard_limits)
    if not fields:
        raise SpecError("ADR needs at least one randomized field")
    if set(delta) != set(fields):
        raise SpecError(f"ADR delta must name exactly the fields {list(fields)}, got {list(delta)}")
    initial = dict(initial or {})
    lows, highs, inits, hard_lo, hard_hi, deltas = [], [], [], [], [], []
    for f in fields:
        if not hasattr(nominal, f):
            raise SpecError(f"unknown field {f!r} for {type(nominal).__name__}")
        value = np.asarray(getattr(nominal, f))
        if value.shape != () or not np.issubdtype(value.dtype, np.floating):
            raise SpecError(f"ADR randomizes scalar float fields; {f!r} is "
                            f"{value.dtype}{value.shape}")
        lo, hi = (float(v) for v in hard_limits[f])
        start = tuple(float(v) for v in initial.get(f, (value, value)))
        mid = float(np.clip(value, start[0], start[1]))
        if not lo <= start[0] <= start[1] <= hi:
            raise SpecError(f"ADR field {f!r}: need hard_low <= low <= high <= hard_high, got "
                            f"hard=({lo}, {hi}), initial={start}")
        if not float(delta[f]) > 0:
            raise SpecError(f"ADR delta for {f!r} must be > 0, got {delta[f]}")
        lows.append(start[0])
        highs.append(start[1])
        inits.append(mid)
        hard_lo.append(lo)
        hard_hi.append(hi)
        deltas.append(float(delta[f]))
    if not 0.0 <= p_boundary <= 1.0:
        raise SpecError(f"ADR p_boundary must be in [0, 1], got {p_boundary}")
    if not t_low < t_high:
        raise SpecError(f"ADR needs t_low < t_high, got t_low={t_low}, t_high={t_high}")
    if int(buffer_size) < 1:
        raise SpecError(f"ADR buffer_size must be >= 1, got {buffer_size}")
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    num = len(fields)
    return ADRSpace(
        nominal=nominal, fields=fields, low=f32(lows), high=f32(highs), initial=f32(inits),
        hard_low=f32(hard_lo), hard_high=f32(hard_hi), delta=f32(deltas),
        drawn_low=f32(lows), drawn_high=f32(highs),
        buffer_sum=jnp.zeros((num, 2), jnp.float32), buffer_count=jnp.zeros((num, 2), jnp.int32),
        p_boundary=f32(p_boundary), t_low=f32(t_low), t_high=f32(t_high),
        buffer_size=jnp.int32(buffer_size))


def adr_update(space: ADRSpace, returns: jax.Array, values: jax.Array) -> ADRSpace:
    """One ADR step from the episodes of a rollout.

    Args:
        space: the current ``ADRSpace``.
        returns: [N] episode returns; values: [N, D] the episodes' values of ``space.fields``.

    Returns:
        The next ``ADRSpace``: buffers filled, full buffers evaluated (widen above ``t_high``,
        shrink below ``t_low``) and emptied, ranges clipped, ``drawn_*`` set to the ranges the
        next rollout's episodes were drawn from (the current, pre-update ones).
    """
    at = jnp.stack([values == space.drawn_low, values == space.drawn_high], -1)  # [N, D, 2]
    total = space.buffer_sum + jnp.einsum("n,nds->ds", returns, at.astype(jnp.float32))
    count = space.buffer_count + at.sum(0).astype(jnp.int32)
    full = count >= space.buffer_size
    mean = total / jnp.maximum(count, 1).astype(jnp.float32)
    step = jnp.where(full & (mean >= space.t_high), 1.0,
                     jnp.where(full & (mean <= space.t_low), -1.0, 0.0))  # +1: widen
    low = jnp.clip(space.low - space.delta * step[:, 0], space.hard_low, space.initial)
    high = jnp.clip(space.high + space.delta * step[:, 1], space.initial, space.hard_high)
    return space.replace(
        low=low, high=high, drawn_low=space.low, drawn_high=space.high,
        buffer_sum=jnp.where(full, 0.0, total), buffer_count=jnp.where(full, 0, count))


@struct.dataclass
class ADR:
    """The ADR hook for ``PPO(env, robust=...)``: no loss weights; the space is an ``ADRSpace``
    (its state: ranges, thresholds and boundary buffers live there, in the train state)."""

    def weights(self, batch: EpisodeBatch, space, update_step):
        return None, {}

    def update_space(self, space: ADRSpace, batch: EpisodeBatch, update_step):
        new = adr_update(space, batch.returns, param_matrix(batch.params, space.fields))
        metrics = {}
        for i, f in enumerate(space.fields):
            metrics[f"adr_low_{f}"] = new.low[i]
            metrics[f"adr_high_{f}"] = new.high[i]
        return new, metrics


def entropy_per_dim(space: ADRSpace) -> jax.Array:
    """ADR's progress measure: mean over fields of ``log(high - low)`` (nats; -inf for a point)."""
    return jnp.mean(jnp.log(space.high - space.low))
