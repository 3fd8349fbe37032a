"""System identification from "real" trajectories: fit a simulator's physics ``Params``.

    world = PhysicsWorld("HalfCheetah-v5", hidden={"body_mass_scale": m, ...}, action_delay=1)
    obs, actions = world.record(scripted_actions(0, K, T, 6), seed=0)      # [K,T+1,17], [K,T,6]
    scale = LogScale(env.default_params(), ("body_mass_scale", "gear_scale", ...))
    windows = make_windows(obs, actions, horizon=8, stride=4, delay=d)       # one delay candidate
    loss = prediction_loss(env, cheetah_state_from_obs(env), scale, obs_scale(windows))
    residuals = prediction_residuals(env, cheetah_state_from_obs(env), scale, obs_scale(windows))
    theta, history = least_squares_fit(residuals, 15, mask=scale.mask(),
                                       jacobian="central")(scale.init(), windows)
    theta, history = gradient_fit(loss, 200, learning_rate=0.05)(scale.init(), windows)
    theta, history = cem_fit(loss, num_iterations=30, population=32)(key, scale.init(), windows)

**Loss.** A *multi-step prediction loss* over truncated windows: each window starts from a real
observation (the simulator state is re-synced from the real trajectory at every window start),
applies the ``H`` recorded actions in the simulator and compares the ``H`` predicted observations
with the real ones, each dimension divided by its spread in the data (``obs_scale``):

    L(theta) = mean_{w, h, i} ((obs_sim[w, h, i] - obs_real[w, h, i]) / scale[i])^2

Short windows keep the gradient informative: HalfCheetah's dynamics are chaotic (float32 MJX and
float64 MuJoCo C drift apart to O(1) after ~15 steps at identical physics), so long rollouts
measure chaos, not physics. Already at 8 steps a window's late residuals are rough in theta at
every scale (their local slopes are many times their slope over a fit's step), which misleads a
Jacobian; when the observation is the full state, 1-step windows hold the information and are
smooth (``calibrate_cheetah``: LM converges in 6 iterations on them, crawls on 8-step ones).
The step is wrapped in ``jax.checkpoint`` so the backward pass stores one state per step, not
every intermediate of MJX's solver.

**Parameterisation.** ``theta`` holds ``log(value / nominal)`` per fitted field (``LogScale``):
scale factors stay positive, and a relative error is a distance in theta. Elements that have no
effect on the dynamics are frozen at nominal (``LogScale.mask``): those whose nominal value is 0,
and, for scale fields (nominal 1 everywhere), those named by ``active`` -- for MuJoCo models
``acting_elements``: the world body's mass and the root joints' damping are 0 in the model.

**Latency** is discrete: it shifts which recorded action is applied (``delayed_actions``); a
calibration enumerates the candidate delays, fits the continuous fields for each (the windows
have the same shapes, so the same compiled program) and keeps the delay of the lowest loss.

**Second order.** The loss is a mean of squared residuals in a few dozen parameters, so
``least_squares_fit`` (Levenberg-Marquardt) is the fit to use: one Jacobian of the residuals per
iteration (forward mode, or central differences -- on MJX on CPU the batched jvps cost ~30x a
batched forward pass), quadratic convergence near a zero-residual optimum, and the
Jacobian at the estimate says which combinations the data leave undetermined
(``identifiability``). ``gradient_fit`` (Adam) stays for losses that are not least squares.

**Gradient-free baseline.** ``cem_fit``: the cross-entropy method over theta (a diagonal Gaussian
refitted to the elite fraction each iteration), same loss, every candidate evaluated in one
``vmap``.

The cheetah's observation ``[qpos[1:], qvel]`` is the full MuJoCo state except the root's x, on
which nothing in the dynamics depends (a flat floor): ``cheetah_state_from_obs`` re-syncs the MJX
state from the observation alone (x = 0, solver warm start 0), so the recorded data are what a
robot's state estimator would give, not MuJoCo's internal arrays.
"""

from __future__ import annotations

import contextlib
import dataclasses
import types
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from metarl_jax.sim2real.deploy import Perturbation, RealWorld
from metarl_jax.sim2real.fitting import (  # noqa: F401  (re-exported: calibrate's public API)
    FitHistory,
    cem_fit,
    central_jacobian,
    gradient_fit,
    identifiability,
    least_squares_fit,
)

Params = Any
Theta = Dict[str, jax.Array]  # {field: log(value / nominal)}, shaped like the field


# --------------------------------------------------------------------------------- data windows
@struct.dataclass
class Windows:
    """Truncated prediction windows cut from recorded trajectories.

    Attributes:
        start_obs: [W, obs_dim] the real observation at each window's start.
        actions: [W, H, act_dim] the actions applied in the window (after the latency shift).
        targets: [W, H, obs_dim] the real observations after each of the H steps.
    """

    start_obs: jax.Array
    actions: jax.Array
    targets: jax.Array


def delayed_actions(actions: np.ndarray, delay: int) -> np.ndarray:
    """The actions the plant applied when it lags ``delay`` steps: ``out[:, t] = actions[:, t -
    delay]`` and zeros before (``ActionDelay``'s and ``RealWorld``'s convention).
    ``actions: [K, T, act_dim]``."""
    if int(delay) != delay or delay < 0:
        raise ValueError(f"delay must be an integer >= 0, got {delay}")
    actions = np.asarray(actions, np.float32)
    out = np.zeros_like(actions)
    if delay < actions.shape[1]:
        out[:, delay:] = actions[:, :actions.shape[1] - delay]
    return out


def make_windows(obs: np.ndarray, actions: np.ndarray, horizon: int, stride: int,
                 delay: int = 0) -> Windows:
    """Windows of ``horizon`` steps starting every ``stride`` steps of every trajectory.

    ``obs: [K, T + 1, obs_dim]`` (reset observation first), ``actions: [K, T, act_dim]`` (the
    actions *chosen*; ``delay`` shifts them to the ones applied). ``W = K * n`` windows with
    ``n = (T - horizon) // stride + 1``, trajectory-major."""
    obs, actions = np.asarray(obs, np.float32), delayed_actions(actions, delay)
    if obs.ndim != 3 or actions.ndim != 3 or obs.shape[:2] != (actions.shape[0],
                                                               actions.shape[1] + 1):
        raise ValueError(f"need obs [K, T+1, d] and actions [K, T, a], got {obs.shape}, "
                         f"{actions.shape}")
    steps = actions.shape[1]
    if not 1 <= horizon <= steps or stride < 1:
        raise ValueError(f"need 1 <= horizon <= T={steps} and stride >= 1, got {horizon}, "
                         f"{stride}")
    starts = np.arange(0, steps - horizon + 1, stride)
    idx = starts[:, None] + np.arange(horizon)[None]  # [n, H]
    return Windows(start_obs=jnp.asarray(obs[:, starts].reshape(-1, obs.shape[-1])),
                   actions=jnp.asarray(actions[:, idx].reshape(-1, horizon, actions.shape[-1])),
                   targets=jnp.asarray(obs[:, idx + 1].reshape(-1, horizon, obs.shape[-1])))


def cut_windows(obs: jax.Array, actions: jax.Array, horizon: int) -> Windows:
    """``make_windows`` with ``stride = horizon`` and no delay, in ``jax.numpy`` (jit-able, for
    data recorded inside a compiled program): ``obs [K, T + 1, obs_dim]``, ``actions [K, T,
    act_dim]``, ``T`` a multiple of ``horizon``; ``W = K * T / horizon`` windows,
    trajectory-major (the same windows as ``make_windows(obs, actions, horizon, horizon)``)."""
    episodes, steps = actions.shape[:2]
    if obs.shape[:2] != (episodes, steps + 1) or steps % horizon:
        raise ValueError(f"need obs [K, T+1, d], actions [K, T, a] and T a multiple of "
                         f"horizon={horizon}, got {obs.shape}, {actions.shape}")
    n = steps // horizon
    return Windows(start_obs=obs[:, :steps:horizon].reshape(episodes * n, -1),
                   actions=actions.reshape(episodes * n, horizon, actions.shape[-1]),
                   targets=obs[:, 1:].reshape(episodes * n, horizon, obs.shape[-1]))


def obs_scale(windows: Windows, floor: float = 1e-3) -> jax.Array:
    """``[obs_dim]`` spread of each observation dimension over the targets (std, floored)."""
    flat = windows.targets.reshape(-1, windows.targets.shape[-1])
    return jnp.maximum(flat.std(0), floor)


# --------------------------------------------------------------------------------- parameters
@dataclasses.dataclass(frozen=True, eq=False)
class LogScale:
    """``theta = log(value / nominal)`` for ``fields`` of ``nominal`` (an env's ``Params``).

    ``active``: ``{field: 0/1 per element}``, the elements that act on the dynamics, where the
    nominal value cannot tell (a *scale* field is 1 everywhere, also on a model quantity that is
    0: ``acting_elements``); fields not named use ``nominal != 0``."""

    nominal: Any
    fields: Tuple[str, ...]
    active: Optional[Mapping[str, Any]] = None

    def __post_init__(self):
        names = [f.name for f in dataclasses.fields(self.nominal)]
        unknown = [f for f in self.fields if f not in names]
        if unknown or not self.fields:
            raise ValueError(f"fields must be a non-empty subset of {names}, got {self.fields}")

    def init(self) -> Theta:
        """theta at the nominal: zeros shaped like each field."""
        return {f: jnp.zeros(jnp.shape(getattr(self.nominal, f)), jnp.float32)
                for f in self.fields}

    def mask(self) -> Theta:
        """1 where the element moves the dynamics (``active``, else nominal != 0), else 0
        (frozen)."""
        active = dict(self.active or {})
        return {f: jnp.broadcast_to(jnp.asarray(active[f], jnp.float32) if f in active else (
                    jnp.asarray(getattr(self.nominal, f)) != 0).astype(jnp.float32),
                    jnp.shape(getattr(self.nominal, f))) for f in self.fields}

    def to_params(self, theta: Theta) -> Params:
        """``nominal`` with ``field = nominal * exp(theta * mask)`` for the fitted fields."""
        mask = self.mask()
        return self.nominal.replace(**{
            f: jnp.asarray(getattr(self.nominal, f)) * jnp.exp(theta[f] * mask[f])
            for f in self.fields})

    def of_params(self, params: Params) -> Theta:
        """theta of ``params`` (0 where the nominal is 0)."""
        mask = self.mask()
        out = {}
        for f in self.fields:
            nominal = jnp.asarray(getattr(self.nominal, f))
            ratio = jnp.where(mask[f] > 0, jnp.asarray(getattr(params, f)) /
                              jnp.where(nominal == 0, 1.0, nominal), 1.0)
            out[f] = jnp.log(ratio).astype(jnp.float32)
        return out


def acting_elements(mj_model) -> Dict[str, np.ndarray]:
    """``{field: 0/1}`` for ``PhysicsParams``' scale fields: which elements change a MuJoCo
    model's dynamics. A scale on a quantity the model sets to 0 -- the world body's mass, the
    root (free) joints' damping -- does nothing in any engine, so no data can identify it."""
    return {"body_mass_scale": (np.asarray(mj_model.body_mass) > 0).astype(np.float32),
            "damping_scale": (np.asarray(mj_model.dof_damping) > 0).astype(np.float32),
            "gear_scale": (np.asarray(mj_model.actuator_gear)[:, 0] != 0).astype(np.float32),
            "friction_scale": np.float32(1.0)}


def relative_error(scale: LogScale, theta: Theta, true_theta: Theta) -> Dict[str, dict]:
    """Per field: ``{"mean", "max", "per_element"}`` of ``|estimate / truth - 1|`` over the
    elements that move the dynamics (``scale.mask()``)."""
    out = {}
    for f in scale.fields:
        mask = np.asarray(scale.mask()[f], bool).reshape(-1)
        err = np.abs(np.exp(np.asarray(theta[f], np.float64) -
                            np.asarray(true_theta[f], np.float64)) - 1).reshape(-1)[mask]
        out[f] = {"mean": float(err.mean()), "max": float(err.max()),
                  "per_element": err.tolist()}
    return out


# --------------------------------------------------------------------------------- the loss
@contextlib.contextmanager
def differentiable_mjx_solver(iterations: int):
    """While tracing inside this context, MJX's constraint solver runs exactly ``iterations``
    iterations as a ``lax.scan`` (no-ops after convergence) instead of its ``lax.while_loop``,
    which has no reverse-mode derivative. MJX's own line search already works this way; only
    the outer loop is swapped, in MJX's solver module alone, and restored on exit. (One
    iteration, the documented differentiable setting, is far from converged on HalfCheetah's
    contacts: its prediction error at the true physics exceeded the nominal's.)"""
    from mujoco.mjx._src import solver

    def while_loop(cond, body, init):
        return solver._while_loop_scan(cond, body, init, iterations)

    lax = types.SimpleNamespace(**{k: getattr(jax.lax, k) for k in dir(jax.lax)
                                   if not k.startswith("__")})
    lax.while_loop = while_loop
    original = solver.jax
    solver.jax = types.SimpleNamespace(**{k: getattr(jax, k) for k in dir(jax)
                                          if not k.startswith("__")})
    solver.jax.lax = lax
    try:
        yield
    finally:
        solver.jax = original


def cheetah_state_from_obs(env) -> Callable[[jax.Array], Any]:
    """``obs [nq - 1 + nv] -> MjxState`` for an ``MjxLocomotion`` whose observation is
    ``[qpos[1:], qvel]`` (HalfCheetah): root x = 0, zero solver warm start (module doc)."""
    nq = env.mj_model.nq

    def to_state(obs):
        qpos = jnp.concatenate([jnp.zeros((1,), obs.dtype), obs[:nq - 1]])
        return env.make_state(qpos, obs[nq - 1:])

    return to_state


def prediction_residuals(env, state_from_obs: Callable[[jax.Array], Any], scale: LogScale,
                         obs_std: jax.Array, reverse: bool = True
                         ) -> Callable[[Theta, Windows], jax.Array]:
    """``residuals(theta, windows) -> [W, H, obs_dim]``: ``(obs_sim - obs_real) / obs_std`` of
    ``env`` (pure ``step(key, state, action, params)``) at ``scale.to_params(theta)``, each
    window re-synced from its real start (module doc). ``prediction_loss`` is their mean square;
    ``least_squares_fit`` works on them directly. For an MJX env (``env.mj_model``) the solver
    runs its ``opt.iterations`` as a scan, so they are reverse-differentiable
    (``differentiable_mjx_solver``); ``reverse=False`` keeps MJX's early-stopping
    ``lax.while_loop``, which forward mode (``least_squares_fit``) differentiates as it is."""
    key = jax.random.PRNGKey(0)  # the dynamics are deterministic; the key is unused
    mj_model = getattr(env, "mj_model", None)
    solver = ((lambda: differentiable_mjx_solver(int(mj_model.opt.iterations)))
              if mj_model is not None and reverse else contextlib.nullcontext)

    def window_residuals(params, start_obs, actions, targets):
        @jax.checkpoint
        def step(state, action):
            state, obs, _, _, _ = env.step(key, state, action, params)
            return state, obs

        with solver():
            _, predicted = jax.lax.scan(step, state_from_obs(start_obs), actions)
        return (predicted - targets) / obs_std

    def residuals(theta, windows):
        return jax.vmap(window_residuals, in_axes=(None, 0, 0, 0))(
            scale.to_params(theta), windows.start_obs, windows.actions, windows.targets)

    return residuals


def prediction_loss(env, state_from_obs: Callable[[jax.Array], Any], scale: LogScale,
                    obs_std: jax.Array) -> Callable[[Theta, Windows], jax.Array]:
    """``loss(theta, windows) -> []``: the normalized multi-step prediction error (module doc),
    the mean square of ``prediction_residuals``."""
    residuals = prediction_residuals(env, state_from_obs, scale, obs_std)
    return lambda theta, windows: jnp.mean(jnp.square(residuals(theta, windows)))


def active_names(scale: LogScale) -> list:
    """``"field[i]"`` for the active elements of ``scale``, in ``least_squares_fit``'s order
    (``ravel_pytree``: fields sorted by name, elements in C order)."""
    names = []
    for f in sorted(scale.fields):
        mask = scale.mask()[f]
        names += [f if np.ndim(mask) == 0 else f"{f}[{i}]"
                  for i in np.flatnonzero(np.asarray(mask).reshape(-1))]
    return names


# --------------------------------------------------------------------------------- the real side
def scripted_actions(seed: int, episodes: int, steps: int, action_size: int) -> np.ndarray:
    """``[episodes, steps, action_size]`` exciting open-loop actions in [-1, 1]: per episode and
    actuator a sine of random frequency (0.5-3 cycles per 20 steps), amplitude and phase, plus
    uniform noise (+-0.3), clipped. Rich enough to excite every joint and the contacts."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)[None, :, None]
    freq = rng.uniform(0.5, 3.0, (episodes, 1, action_size)) * 2 * np.pi / 20
    amp = rng.uniform(0.4, 1.0, (episodes, 1, action_size))
    phase = rng.uniform(0, 2 * np.pi, (episodes, 1, action_size))
    noise = rng.uniform(-0.3, 0.3, (episodes, steps, action_size))
    return np.clip(amp * np.sin(freq * t + phase) + noise, -1, 1).astype(np.float32)


class PhysicsWorld(RealWorld):
    """A ``RealWorld`` with hidden per-element physics in ``PhysicsParams``' layout.

    ``hidden``: ``{field: scale}`` with fields ``body_mass_scale [nbody]`` (mass and inertia),
    ``friction_scale []``, ``damping_scale [nv]``, ``gear_scale [nu]`` (missing = 1). Every
    episode's ``Perturbation`` scales come on top (1 = the hidden physics)."""

    FIELDS = ("body_mass_scale", "friction_scale", "damping_scale", "gear_scale")

    def __init__(self, env_id: str, hidden: Mapping[str, Any], action_delay: int = 0,
                 **make_kwargs):
        super().__init__(env_id, **make_kwargs)
        unknown = sorted(set(hidden) - set(self.FIELDS))
        if unknown:
            raise ValueError(f"unknown hidden fields {unknown}; known: {', '.join(self.FIELDS)}")
        model = self.env.unwrapped.model
        self._nominal["dof_damping"] = model.dof_damping.copy()
        self.hidden = {f: np.asarray(hidden.get(f, 1.0), np.float64) for f in self.FIELDS}
        self.action_delay = int(action_delay)

    def apply(self, p: Perturbation) -> None:
        super().apply(p)
        model, h = self.env.unwrapped.model, self.hidden
        model.body_mass[:] *= h["body_mass_scale"]
        model.body_inertia[:] *= np.reshape(h["body_mass_scale"], (-1, 1)) \
            if h["body_mass_scale"].ndim else h["body_mass_scale"]
        model.geom_friction[:] *= h["friction_scale"]
        model.dof_damping[:] = self._nominal["dof_damping"] * h["damping_scale"]
        model.actuator_gear[:, 0] *= h["gear_scale"]

    def real(self) -> Perturbation:
        """The cell of the hidden world itself (its latency, no extra perturbation)."""
        return Perturbation(action_delay=self.action_delay)

    def record(self, actions: np.ndarray, seed: int) -> Tuple[np.ndarray, np.ndarray]:
        """Play open-loop ``actions [K, T, act_dim]`` (the actions *chosen*; the plant applies
        them ``action_delay`` steps late) from ``reset(seed=seed + k)``: returns ``obs [K, T + 1,
        obs_dim]`` (float32) and the chosen actions. Episodes must not end before ``T``."""
        self.apply(self.real())
        out = []
        space = self.env.action_space
        for k, episode in enumerate(np.asarray(actions, np.float32)):
            obs, _ = self.env.reset(seed=seed + k)
            applied = delayed_actions(episode[None], self.action_delay)[0]
            trajectory = [obs]
            for a in applied:
                obs, _, terminated, truncated, _ = self.env.step(np.clip(a, space.low, space.high))
                if terminated or truncated:
                    raise ValueError("the episode ended before the recorded actions did; record "
                                     "fewer steps than the env's time limit")
                trajectory.append(obs)
            out.append(trajectory)
        self.apply(Perturbation())
        return np.asarray(out, np.float32), np.asarray(actions, np.float32)


def select_delay(losses: Sequence[float]) -> int:
    """The delay candidate (index) of the lowest final prediction loss."""
    return int(np.argmin(np.asarray(losses, np.float64)))
