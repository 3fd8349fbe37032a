"""Trust-region policy step (Schulman et al. 2015): conjugate gradient on a KL Hessian-vector
product, then a backtracking line search, over any pytree of parameters.

    maximize  L(x)   subject to   KL(x) <= max_kl          (L, KL: pytree -> [])

    g  = grad L(x0);   F v = Hessian(KL)(x0) v  (+ damping * v)     [forward-over-reverse]
    s  = F^-1 g by ``cg_iters`` conjugate-gradient iterations (F is never formed)
    step = sqrt(2 max_kl / s^T F s) * s;  try x0 + 0.5^i step, i = 0..max_backtracks-1, keep the
    first that improves L and satisfies the KL bound; none -> stay at x0.

The functions are pure and jit-able; ``KL`` may itself differentiate through an inner update
(MAML-TRPO), so its Hessian-vector product is a third-order derivative, which JAX computes.
Pytrees are flattened once with ``ravel_pytree``; every vector below is ``[D]``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree


def conjugate_gradient(matvec: Callable[[jax.Array], jax.Array], b: jax.Array, iters: int,
                       residual_tol: float = 1e-10) -> jax.Array:
    """Approximately solve ``A x = b`` for symmetric positive-definite ``A`` given as
    ``matvec``; ``iters`` (static) iterations, frozen once ``|r|^2 < residual_tol``: ``[D]``."""

    class Carry(NamedTuple):
        x: jax.Array
        r: jax.Array
        p: jax.Array
        rr: jax.Array

    def body(c: Carry, _):
        active = c.rr >= residual_tol
        ap = matvec(c.p)
        alpha = c.rr / jnp.maximum(jnp.vdot(c.p, ap), 1e-30)
        x, r = c.x + alpha * c.p, c.r - alpha * ap
        rr = jnp.vdot(r, r)
        p = r + rr / jnp.maximum(c.rr, 1e-30) * c.p
        new = Carry(x, r, p, rr)
        return jax.tree.map(lambda n, o: jnp.where(active, n, o), new, c), None

    init = Carry(jnp.zeros_like(b), b, b, jnp.vdot(b, b))
    return jax.lax.scan(body, init, None, length=iters)[0].x


def hvp(f: Callable[[jax.Array], jax.Array], x: jax.Array, v: jax.Array) -> jax.Array:
    """Hessian-vector product ``(d^2 f / dx^2)(x) v`` by forward-over-reverse: ``[D]``."""
    return jax.jvp(jax.grad(f), (x,), (v,))[1]


def gauss_newton_fvp(outputs: Callable[[jax.Array], Any], x0: jax.Array,
                     metric: Callable[[Any], Any]) -> Callable[[jax.Array], jax.Array]:
    """``v -> J^T M J v`` with ``J`` the Jacobian of ``outputs`` at ``x0`` and ``M`` the diagonal
    ``metric(outputs(x0))`` (a pytree like the outputs). For ``KL(p_old || p(outputs(x)))`` with
    ``M`` the Fisher of ``p`` in output space, this equals ``hvp(KL, x0, v)`` at ``x0 = x_old``
    (the term with the outputs' own curvature is multiplied by a zero gradient there), at about
    half the cost: ``outputs`` is linearized once and each product is one JVP and one VJP of
    the linear map, not a third-order pass through ``KL``."""
    y, jvp_fn = jax.linearize(outputs, x0)
    vjp_fn = jax.linear_transpose(jvp_fn, x0)
    weights = metric(y)
    return lambda v: vjp_fn(jax.tree.map(jnp.multiply, weights, jvp_fn(v)))[0]


def backtracking_line_search(objective: Callable, constraint: Callable, x0: jax.Array,
                             full_step: jax.Array, max_constraint: float, max_backtracks: int,
                             shrink: float = 0.5) -> Tuple[jax.Array, jax.Array]:
    """First ``x0 + shrink^i full_step`` (``i < max_backtracks``) with ``objective`` above
    ``objective(x0)`` and ``constraint <= max_constraint``. Returns ``(x, accepted_i)``; ``x0``
    and ``accepted_i = -1`` when no candidate qualifies. A ``lax.while_loop``: evaluation stops
    at the first accepted candidate."""
    f0 = objective(x0)

    def accept(i):
        x = x0 + shrink ** i.astype(x0.dtype) * full_step
        return (objective(x) > f0) & (constraint(x) <= max_constraint)

    def cond(state):
        i, found = state
        return (i < max_backtracks) & ~found

    def body(state):
        i, _ = state
        found = accept(i)
        return jnp.where(found, i, i + 1), found

    i, found = jax.lax.while_loop(cond, body, (jnp.int32(0), jnp.bool_(False)))
    x = jnp.where(found, x0 + shrink ** i.astype(x0.dtype) * full_step, x0)
    return x, jnp.where(found, i, -1)


def trpo_step(objective: Callable[[Any], jax.Array], kl: Callable[[Any], jax.Array], params: Any,
              max_kl: float, cg_iters: int = 10, damping: float = 1e-5,
              max_backtracks: int = 15, curvature: Callable | None = None
              ) -> Tuple[Any, Dict[str, jax.Array]]:
    """One trust-region step that maximizes ``objective`` (see module doc).

    Args:
        objective, kl: pytree -> ``[]``; ``kl(params)`` must be 0 with zero gradient at
            ``params`` (a divergence from the sampling policy).
        params: the current parameters (any pytree).
        curvature: optional ``curvature(unravel, x0) -> (v -> F v)`` on flat vectors, e.g. a
            ``gauss_newton_fvp``; default: ``hvp`` of ``kl``.
    Returns:
        ``(new_params, stats)`` with ``stats``: ``surrogate_before/after``, ``kl_after``,
        ``backtracks`` (-1: step rejected), ``step_norm``.
    """
    x0, unravel = ravel_pytree(params)
    obj = lambda x: objective(unravel(x))
    div = lambda x: kl(unravel(x))
    g = jax.grad(obj)(x0)
    product = (curvature(unravel, x0) if curvature is not None
               else lambda v: hvp(div, x0, v))
    fvp = lambda v: product(v) + damping * v
    s = conjugate_gradient(fvp, g, cg_iters)
    shs = jnp.maximum(jnp.vdot(s, fvp(s)), 1e-12)
    full_step = jnp.sqrt(2.0 * max_kl / shs) * s
    x, backtracks = backtracking_line_search(obj, div, x0, full_step, max_kl, max_backtracks)
    stats = {"surrogate_before": obj(x0), "surrogate_after": obj(x), "kl_after": div(x),
             "backtracks": backtracks, "step_norm": jnp.linalg.norm(x - x0)}
    return unravel(x), stats
