"""Fitters for system identification: a parameter pytree ``theta`` fitted to data ``windows``.

    theta, history = least_squares_fit(residuals, 15, mask=mask)(theta0, windows)  # LM
    theta, history = gradient_fit(loss, 200, learning_rate=0.05)(theta0, windows)    # Adam
    theta, history = cem_fit(loss, num_iterations=30, population=32)(key, theta0, windows)

``residuals(theta, windows) -> [M]`` / ``loss(theta, windows) -> []`` are pure and traceable;
``windows`` is any pytree the function reads (``calibrate.Windows`` for the MJX prediction
loss). Each fitter returns a jitted function whose iterations are one ``lax.scan``;
``identifiability`` reads the Levenberg-Marquardt Jacobian at the estimate. The physics side
(windows, ``LogScale``, the MJX prediction loss, the real engine) is ``sim2real.calibrate``.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

Theta = Dict[str, jax.Array]  # e.g. {field: log(value / nominal)}, shaped like the field
Windows = Any  # the data every residual / loss evaluation reads


@struct.dataclass
class FitHistory:
    """Per iteration: ``theta`` (leaves ``[N, *field]``, the estimate after the iteration) and
    ``loss [N]`` (at the estimate before the iteration; CEM: at the mean). ``least_squares_fit``
    also returns ``jacobian [M, n]``: the residuals' Jacobian at the returned estimate with
    respect to its ``n`` active elements (``identifiability``), and per iteration ``[N]``:
    ``damping`` (the lambda the step was solved with), ``ratio`` (rho: the loss's actual over
    its predicted decrease; 1 where the local linear model is exact), ``step_norm`` (|delta|
    in theta) and ``accepted`` (the step lowered the loss and was taken)."""

    theta: Theta
    loss: jax.Array
    jacobian: Optional[jax.Array] = None
    damping: Optional[jax.Array] = None
    ratio: Optional[jax.Array] = None
    step_norm: Optional[jax.Array] = None
    accepted: Optional[jax.Array] = None


def gradient_fit(loss: Callable[[Theta, Windows], jax.Array], num_iterations: int,
                 learning_rate: float = 0.05, clip_norm: float = 1.0
                 ) -> Callable[[Theta, Windows], Tuple[Theta, FitHistory]]:
    """A jitted ``fit(theta0, windows) -> (theta, FitHistory)``: Adam on ``loss`` (gradients
    clipped to ``clip_norm``, learning rate cosine-decayed to 1% over the run; a non-finite
    gradient element, from a contact's kink, is zeroed), one ``lax.scan`` over
    ``num_iterations``. Returns the iterate of lowest loss seen."""
    schedule = optax.cosine_decay_schedule(learning_rate, num_iterations, alpha=0.01)
    optimizer = optax.chain(optax.zero_nans(), optax.clip_by_global_norm(clip_norm),
                            optax.adam(schedule))
    value_and_grad = jax.value_and_grad(loss)

    def fit(theta0, windows):
        def iteration(carry, _):
            theta, opt_state, best, best_loss = carry
            value, grads = value_and_grad(theta, windows)
            better = value < best_loss
            best = jax.tree.map(lambda b, t: jnp.where(better, t, b), best, theta)
            best_loss = jnp.minimum(best_loss, value)
            updates, opt_state = optimizer.update(grads, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            return (theta, opt_state, best, best_loss), (theta, value)

        init = (theta0, optimizer.init(theta0), theta0, jnp.float32(jnp.inf))
        (theta, _, best, best_loss), (thetas, values) = jax.lax.scan(
            iteration, init, None, length=num_iterations)
        final = loss(theta, windows)
        best = jax.tree.map(lambda b, t: jnp.where(final < best_loss, t, b), best, theta)
        return best, FitHistory(theta=thetas, loss=values)

    return jax.jit(fit)


def cem_fit(loss: Callable[[Theta, Windows], jax.Array], num_iterations: int,
            population: int = 32, elite_fraction: float = 0.25, init_std: float = 0.3,
            min_std: float = 1e-3, mask: Theta | None = None, batch_size: Optional[int] = None
            ) -> Callable[[jax.Array, Theta, Windows], Tuple[Theta, FitHistory]]:
    """A jitted ``fit(key, theta0, windows) -> (theta, FitHistory)``: the cross-entropy method
    (Rubinstein 1999) on ``loss``: draw ``population`` thetas from ``N(mu, sigma^2)`` per element,
    refit ``mu, sigma`` to the ``ceil(elite_fraction * population)`` lowest losses; ``mask`` (0 =
    frozen element) keeps uninformative elements at theta0. Returns the final mean.
    ``batch_size``: candidates evaluated at once in a ``lax.map`` (None: the whole population
    in one ``vmap``; on XLA:CPU the vmapped MJX population has wedged, see docs/sysid.md)."""
    if batch_size is not None and not 1 <= batch_size <= population:
        raise ValueError(f"batch_size must be in [1, population={population}], got {batch_size}")
    num_elites = max(1, int(np.ceil(elite_fraction * population)))
    if not 1 <= num_elites <= population:
        raise ValueError(f"need 0 < elite_fraction <= 1, got {elite_fraction}")
    def batched_loss(samples, windows):
        if batch_size is None:
            return jax.vmap(loss, in_axes=(0, None))(samples, windows)
        return jax.lax.map(lambda theta: loss(theta, windows), samples, batch_size=batch_size)

    def fit(key, theta0, windows):
        keep = mask if mask is not None else jax.tree.map(jnp.ones_like, theta0)
        std0 = jax.tree.map(lambda t, m: jnp.full_like(t, init_std) * m, theta0, keep)

        def iteration(carry, key):
            mu, std = carry
            leaves, treedef = jax.tree.flatten(mu)
            keys = jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))
            samples = jax.tree.map(
                lambda m, s, k: m + s * jax.random.normal(k, (population,) + m.shape),
                mu, std, keys)
            values = batched_loss(samples, windows)
            values = jnp.where(jnp.isfinite(values), values, jnp.inf)
            elite = jnp.argsort(values)[:num_elites]
            mu = jax.tree.map(lambda x: x[elite].mean(0), samples)
            std = jax.tree.map(lambda x, m: jnp.maximum(x[elite].std(0), min_std) * m,
                               samples, keep)
            return (mu, std), (mu, values[elite[0]])

        (mu, _), (thetas, values) = jax.lax.scan(
            iteration, (theta0, std0), jax.random.split(key, num_iterations))
        return mu, FitHistory(theta=thetas, loss=values)

    return jax.jit(fit)


def least_squares_fit(residuals: Callable[[Theta, Windows], jax.Array], num_iterations: int,
                      mask: Theta | None = None, init_damping: float = 1e-3,
                      step_tolerance: float = 1e-6, jacobian: str = "forward",
                      fd_step: float = 1e-2, batch_size: Optional[int] = None,
                      jump_tolerance: Optional[float] = None
                      ) -> Callable[[Theta, Windows], Tuple[Theta, FitHistory]]:
    """A jitted ``fit(theta0, windows) -> (theta, FitHistory)``: Levenberg-Marquardt (Marquardt
    1963; Nielsen's damping update, Madsen, Nielsen & Tingleff 2004, sec. 3.2) on
    ``loss = mean(residuals(theta, windows) ** 2)``, one ``lax.scan`` over ``num_iterations``.

    The fit is a nonlinear least-squares problem in a few dozen parameters and thousands of
    residuals, so each iteration takes the Jacobian ``J [M, n]`` of the residuals with respect
    to the ``n`` active elements (``mask``: 1 = fitted, 0 = frozen at theta0; default all), by
    forward mode (``jacobian="forward"``: ``n`` jvps in one ``vmap``, cheaper than ``M`` backward
    passes) or by central differences (``"central"``: the residuals at ``theta +- fd_step`` along
    each element, ``2 n + 1`` evaluations, ``batch_size`` of them vmapped at a time (``None``:
    all), the rest in a ``lax.map``; no derivative through the simulator, which on MJX is ~30x
    cheaper than its batched jvps on CPU), and the step
    ``(J^T J + lambda diag(J^T J)) delta = -J^T r``, solved through the SVD of the
    column-normalized ``J`` (no squared condition number in float32).

    **Jumps.** Residuals of a time-stepped simulation with contacts are piecewise smooth in
    theta: a parameter change that moves a contact's onset across a time step changes the
    rollout after it by O(1) however small the change (MuJoCo's contact damping acts from the
    first penetrating step), so a central difference straddling such an event is the jump over
    ``2 fd_step`` -- wrong by O(1 / fd_step), and the larger the smaller the step. With
    ``jump_tolerance`` (central differences only; None, the default: plain central
    differences), an entry
    whose one-sided differences ``f = r(z + h e_i) - r(z)`` and ``b = r(z) - r(z - h e_i)``
    disagree, ``|f - b| > jump_tolerance (|f| + |b|)`` (0 for a smooth residual as h -> 0, 1 for
    a jump on one side), takes the one of smaller magnitude (the side without the event: the
    derivative of the smooth piece the estimate is on) instead of ``(f + b) / 2``; same
    evaluations. (On calibrate_cheetah's 8-step windows it did not help: there the Jacobian is
    wrong because chaos makes late steps rough at every scale, not because of a few jumps; the
    cure was 1-step windows, docs/sysid.md.) A step that lowers the
    loss is taken and ``lambda`` shrinks by ``max(1/3, 1 - (2 rho - 1)^3)`` (``rho``: actual over
    predicted decrease); otherwise it is rejected and ``lambda`` grows by ``nu`` (doubling on each
    consecutive rejection). Non-finite Jacobian entries (a contact's kink) are zeroed; a
    non-finite loss rejects the step. Iterations after convergence (a step below
    ``step_tolerance`` in theta, or ``lambda > 1e10``) leave the estimate as it is (they are
    computed and discarded: no ``lax.cond`` around MJX). Every iteration evaluates the
    residuals and the Jacobian once, at the candidate; the returned theta is the last accepted
    one (every accepted step lowers the loss). History: ``loss`` at the estimate before each
    iteration, ``theta`` after it."""
    if jump_tolerance is not None and not jump_tolerance > 0:
        raise ValueError(f"jump_tolerance must be > 0 or None, got {jump_tolerance}")
    if num_iterations < 1 or not init_damping > 0 or not step_tolerance >= 0 or not fd_step > 0:
        raise ValueError(f"need num_iterations >= 1, init_damping > 0, step_tolerance >= 0, "
                         f"fd_step > 0, got {num_iterations}, {init_damping}, {step_tolerance}, "
                         f"{fd_step}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 or None, got {batch_size}")
    if jacobian not in ("forward", "central"):
        raise ValueError(f"jacobian must be 'forward' or 'central', got {jacobian!r}")

    def fit(theta0, windows):
        flat0, unravel = ravel_pytree(theta0)
        if mask is None:
            active = np.arange(flat0.size)
        else:
            if jax.tree.structure(mask) != jax.tree.structure(theta0) or any(
                    np.shape(m) != np.shape(t) for m, t in zip(jax.tree.leaves(mask),
                                                               jax.tree.leaves(theta0))):
                raise ValueError("mask must have theta0's structure and shapes")
            active = np.flatnonzero(np.concatenate(  # ravel_pytree's order, concrete
                [np.asarray(m).reshape(-1) for m in jax.tree.leaves(mask)]) != 0)
            if active.size == 0:
                raise ValueError("mask freezes every element: nothing to fit")
        to_theta = lambda z: unravel(flat0.at[active].set(z))

        def linearize(z):
            r_of = lambda z: residuals(to_theta(z), windows).reshape(-1)
            if jacobian == "forward":
                # jacfwd's own form, keeping the (unbatched) primal: residuals once, not twice.
                r, jac = jax.vmap(lambda v: jax.jvp(r_of, (z,), (v,)), out_axes=(None, 1))(
                    jnp.eye(z.size, dtype=z.dtype))
            else:
                r, jac = central_jacobian(r_of, z, fd_step, batch_size, jump_tolerance)
            jac = jnp.where(jnp.isfinite(jac), jac, 0.0)
            cost = jnp.mean(jnp.square(r))
            return r, jac, jnp.where(jnp.isfinite(cost), cost, jnp.inf)

        def step(carry):
            z, r, jac, cost, lam, nu, _ = carry
            norms = jnp.linalg.norm(jac, axis=0)
            d = jnp.where(norms > 1e-12 * jnp.max(norms), norms, 1.0)
            u, s, vt = jnp.linalg.svd(jac / d, full_matrices=False)
            delta = -(vt.T @ (s / (jnp.square(s) + lam) * (u.T @ r))) / d
            r_new, jac_new, cost_new = linearize(z + delta)
            predicted = cost - jnp.mean(jnp.square(r + jac @ delta))
            rho = (cost - cost_new) / jnp.maximum(predicted, 1e-30)
            accept = cost_new < cost
            pick = lambda new, old: jnp.where(accept, new, old)
            lam = jnp.where(accept, lam * jnp.maximum(1 / 3, 1 - (2 * rho - 1) ** 3), lam * nu)
            nu = jnp.where(accept, 2.0, 2.0 * nu)
            small = jnp.linalg.norm(delta) <= step_tolerance * (jnp.linalg.norm(z) +
                                                               step_tolerance)
            done = (accept & small) | (lam > 1e10) | (cost_new == 0)
            diagnostics = (carry[4], rho, jnp.linalg.norm(delta), accept)
            return (pick(z + delta, z), pick(r_new, r), pick(jac_new, jac),
                    pick(cost_new, cost), lam, nu, done), diagnostics

        def iteration(carry, _):
            cost, done = carry[3], carry[-1]
            new, (lam, rho, norm, accept) = step(carry)
            carry = jax.tree.map(lambda old, new: jnp.where(done, old, new), carry, new)
            nan = jnp.float32(jnp.nan)  # after convergence: nothing was solved
            return carry, (to_theta(carry[0]), cost, jnp.where(done, nan, lam),
                           jnp.where(done, nan, rho), jnp.where(done, 0.0, norm),
                           accept & ~done)

        z0 = flat0[active]
        r, jac, cost = linearize(z0)
        init = (z0, r, jac, cost, jnp.float32(init_damping), jnp.float32(2.0),
                jnp.asarray(False))
        final, (thetas, values, lams, rhos, norms, accepted) = jax.lax.scan(
            iteration, init, None, length=num_iterations)
        return to_theta(final[0]), FitHistory(theta=thetas, loss=values, jacobian=final[2],
                                              damping=lams, ratio=rhos, step_norm=norms,
                                              accepted=accepted)

    return jax.jit(fit)


def central_jacobian(fun: Callable[[jax.Array], jax.Array], z: jax.Array, step: float,
                     batch_size: Optional[int] = None, jump_tolerance: Optional[float] = None
                     ) -> Tuple[jax.Array, jax.Array]:
    """``(fun(z) [M], J [M, n])``: central differences of ``fun: [n] -> [M]`` at ``z [n]``,
    ``2 n + 1`` evaluations in a ``lax.map`` (``batch_size`` vmapped at a time; None: all).
    ``jump_tolerance``: an entry whose one-sided differences ``f = fun(z + step e_i) - fun(z)``
    and ``b = fun(z) - fun(z - step e_i)`` disagree, ``|f - b| > jump_tolerance (|f| + |b|)``,
    takes the smaller of the two over ``step`` (a jump on the other side; None: always
    ``(f + b) / (2 step)``; ``least_squares_fit``'s docstring)."""
    n = z.size
    basis = jnp.eye(n, dtype=z.dtype)
    out = jax.lax.map(fun, jnp.concatenate([z[None], z + step * basis, z - step * basis]),
                      batch_size=batch_size or 2 * n + 1)
    r = out[0]
    ahead, behind = out[1:n + 1] - r, r - out[n + 1:]  # [n, M] one-sided differences
    diff = 0.5 * (ahead + behind)
    if jump_tolerance is not None:
        jump = jnp.abs(ahead - behind) > jump_tolerance * (jnp.abs(ahead) + jnp.abs(behind))
        smaller = jnp.where(jnp.abs(ahead) <= jnp.abs(behind), ahead, behind)
        diff = jnp.where(jump, smaller, diff)
    return r, diff.T / step


def identifiability(jacobian: np.ndarray, names: Sequence[str], top: int = 4) -> dict:
    """How well the data pin each direction of theta down, from the residuals' Jacobian ``[M, n]``
    at the estimate (``FitHistory.jacobian``; ``names``: the ``n`` active elements). Columns are
    normalized first (each element's own sensitivity is reported separately), so the singular
    values of the result measure only how *distinct* the elements' effects are: 1 for orthogonal
    effects, near 0 for a combination the data cannot tell from no change. Returns
    ``{"column_norm": {name: |J_i| / sqrt(M)}, "singular_values": [n] (descending),
    "condition": s_max / s_min, "weakest": [{"singular_value", "direction": {name: weight}}]}``
    for the ``top`` smallest singular values, each direction's ``top`` largest weights."""
    jacobian = np.asarray(jacobian, np.float64)
    if jacobian.ndim != 2 or jacobian.shape[1] != len(names):
        raise ValueError(f"need jacobian [M, {len(names)}], got {jacobian.shape}")
    norms = np.linalg.norm(jacobian, axis=0)
    _, s, vt = np.linalg.svd(jacobian / np.where(norms > 0, norms, 1.0), full_matrices=False)
    weakest = []
    for k in range(len(s) - 1, max(len(s) - 1 - top, -1), -1):
        order = np.argsort(-np.abs(vt[k]))[:top]
        weakest.append({"singular_value": float(s[k]),
                        "direction": {names[i]: round(float(vt[k, i]), 3) for i in order}})
    return {"column_norm": {n: float(v) for n, v in zip(names, norms / np.sqrt(len(jacobian)))},
            "singular_values": s.tolist(), "condition": float(s[0] / max(s[-1], 1e-30)),
            "weakest": weakest}
