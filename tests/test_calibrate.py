"""System identification (``sim2real/calibrate.py``) and EPOpt's posterior update
(``randomization/posterior.py``): finite-difference gradients through MJX, exact recovery on the
pure-JAX Pendulum, and posterior concentration against a closed form."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envs
from envs.pendulum import Pendulum, PendulumState
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.randomization.posterior import (
    abc_weights,
    effective_sample_size,
    posterior_rounds,
    posterior_update,
    tempered_weights,
)
from metarl_jax.sim2real.calibrate import (
    LogScale,
    cem_fit,
    cheetah_state_from_obs,
    cut_windows,
    delayed_actions,
    gradient_fit,
    least_squares_fit,
    make_windows,
    obs_scale,
    prediction_loss,
    prediction_residuals,
    relative_error,
)

TRUE_PENDULUM = {"m": 1.3, "l": 0.8}


def pendulum_state(obs):
    return PendulumState(theta=jnp.arctan2(obs[1], obs[0]), theta_dot=obs[2],
                         time=jnp.int32(0))


def pendulum_data(params, episodes=4, steps=40, seed=0):
    """Own trajectories of the pendulum under random torques: obs [K, T+1, 3], actions [K, T, 1]."""
    env = Pendulum()
    keys = jax.random.split(jax.random.PRNGKey(seed), episodes)
    actions = jax.random.uniform(jax.random.PRNGKey(seed + 1), (episodes, steps, 1),
                                 minval=-2.0, maxval=2.0)

    def episode(key, acts):
        state, obs = env.reset(key, params)

        def step(state, a):
            state, obs, _, _, _ = env.step(key, state, a, params)
            return state, obs

        _, trajectory = jax.lax.scan(step, state, acts)
        return jnp.concatenate([obs[None], trajectory])

    return np.asarray(jax.vmap(episode)(keys, actions)), np.asarray(actions)


@pytest.fixture(scope="module")
def pendulum_problem():
    env = Pendulum()
    nominal = env.default_params()
    truth = nominal.replace(**{k: jnp.float32(v) for k, v in TRUE_PENDULUM.items()})
    obs, actions = pendulum_data(truth)
    windows = make_windows(obs, actions, horizon=5, stride=5)
    scale = LogScale(nominal, ("m", "l"))
    loss = prediction_loss(env, pendulum_state, scale, obs_scale(windows))
    return env, scale, truth, windows, loss


def test_windows_cut_the_trajectories_and_shift_actions_by_the_delay():
    obs = np.arange(2 * 7 * 1, dtype=np.float32).reshape(2, 7, 1)
    actions = np.arange(2 * 6 * 1, dtype=np.float32).reshape(2, 6, 1) + 100
    w = make_windows(obs, actions, horizon=3, stride=2, delay=1)
    assert w.start_obs.shape == (4, 1) and w.actions.shape == (4, 3, 1)
    np.testing.assert_array_equal(np.asarray(w.start_obs[:, 0]), [0, 2, 7, 9])
    np.testing.assert_array_equal(np.asarray(w.targets[1, :, 0]), [3, 4, 5])
    np.testing.assert_array_equal(np.asarray(w.actions[0, :, 0]), [0, 100, 101])  # delayed
    np.testing.assert_array_equal(delayed_actions(actions, 0), actions)
    # The jnp cutter (data recorded inside jit) gives make_windows' windows at stride = horizon.
    whole = make_windows(obs, actions, horizon=3, stride=3)
    cut = cut_windows(jnp.asarray(obs), jnp.asarray(actions), 3)
    for name in ("start_obs", "actions", "targets"):
        np.testing.assert_array_equal(np.asarray(getattr(cut, name)),
                                      np.asarray(getattr(whole, name)))
    with pytest.raises(ValueError, match="multiple of horizon"):
        cut_windows(jnp.asarray(obs), jnp.asarray(actions), 4)
    with pytest.raises(ValueError, match="horizon"):
        make_windows(obs, actions, horizon=7, stride=1)
    with pytest.raises(ValueError, match="delay"):
        delayed_actions(actions, -1)
    with pytest.raises(ValueError, match="fields"):
        LogScale(Pendulum().default_params(), ("mass",))


def test_gradient_fit_recovers_the_pendulum_from_its_own_trajectories(pendulum_problem):
    env, scale, truth, windows, loss = pendulum_problem
    true_theta = scale.of_params(truth)
    assert float(loss(true_theta, windows)) < 1e-10  # same simulator: zero at the truth
    theta, history = gradient_fit(loss, num_iterations=300, learning_rate=0.05)(scale.init(),
                                                                                windows)
    errors = relative_error(scale, theta, true_theta)
    assert max(e["max"] for e in errors.values()) < 1e-3, errors
    assert history.loss.shape == (300,) and float(history.loss[-1]) < 1e-3 * float(
        history.loss[0])


def test_levenberg_marquardt_recovers_the_pendulum_in_a_few_iterations(pendulum_problem):
    """Gauss-Newton's quadratic convergence on a zero-residual problem: 5 LM iterations reach
    1e-5 relative (3 did here, from 30% off), where Adam after 50 iterations is still > 1e-3 off
    (it needs ~300, the test above)."""
    env, scale, truth, windows, loss = pendulum_problem
    true_theta = scale.of_params(truth)
    residuals = prediction_residuals(env, pendulum_state, scale, obs_scale(windows))
    np.testing.assert_allclose(float(jnp.mean(jnp.square(residuals(true_theta, windows)))),
                               float(loss(true_theta, windows)), atol=1e-12)
    fit = least_squares_fit(residuals, num_iterations=5)
    theta, history = fit(scale.init(), windows)
    errors = relative_error(scale, theta, true_theta)
    assert max(e["max"] for e in errors.values()) < 1e-5, errors
    assert history.loss.shape == (5,) and np.all(np.diff(np.asarray(history.loss)) <= 0)
    assert float(loss(theta, windows)) < 1e-8 * float(history.loss[0])
    # Central differences instead of jvps (the MJX setting): the same recovery.
    theta, _ = least_squares_fit(residuals, 5, jacobian="central", batch_size=2)(scale.init(),
                                                                               windows)
    assert max(e["max"] for e in relative_error(scale, theta, true_theta).values()) < 1e-4
    adam, _ = gradient_fit(loss, num_iterations=50)(scale.init(), windows)
    assert max(e["max"] for e in relative_error(scale, adam, true_theta).values()) > 1e-3
    # A frozen element stays at theta0; the others are still recovered; one compile per shape.
    start = {"m": jnp.float32(0.2), "l": jnp.float32(0.0)}
    frozen = least_squares_fit(residuals, 5, mask={"m": jnp.float32(0), "l": jnp.float32(1)})
    theta, _ = frozen(start, windows)
    assert float(theta["m"]) == pytest.approx(0.2) and float(theta["l"]) != 0.0
    frozen(scale.init(), windows)
    assert frozen._cache_size() == 1
    with pytest.raises(ValueError, match="nothing to fit"):
        least_squares_fit(residuals, 5, mask={"m": jnp.float32(0), "l": jnp.float32(0)})(
            scale.init(), windows)
    with pytest.raises(ValueError, match="num_iterations"):
        least_squares_fit(residuals, 0)
    with pytest.raises(ValueError, match="jacobian"):
        least_squares_fit(residuals, 5, jacobian="reverse")


def test_levenberg_marquardt_converges_quadratically_through_jumps():
    """Piecewise-smooth residuals (400 "windows", each jumping by 0.1 where ``a_k . z`` crosses
    an event threshold, zero at the truth): with the jump-robust Jacobian LM converges
    quadratically (loss 4e-2 -> 2e-4 -> 3e-7 -> 4e-15 here); plain central differences, whose
    Jacobian picks up the jumps near the solution, only linearly (~3x per iteration)."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(400, 3)) / np.sqrt(3), jnp.float32)
    threshold = jnp.asarray(rng.uniform(-1.5, 1.5, 400), jnp.float32)
    truth = jnp.asarray([0.5, -0.4, 0.3])

    def residuals(theta, _):
        s, s_true = a @ theta["z"], a @ truth
        return (jnp.exp(0.5 * s) - jnp.exp(0.5 * s_true)
                + 0.1 * ((s > threshold).astype(jnp.float32) - (s_true > threshold)))

    start = {"z": jnp.zeros(3)}
    theta, history = least_squares_fit(residuals, 6, jacobian="central", jump_tolerance=0.5)(
        start, None)
    assert float(history.loss[4]) < 1e-12 and np.abs(theta["z"] - truth).max() < 1e-6
    assert np.all(np.asarray(history.accepted[:4]))
    np.testing.assert_allclose(np.asarray(history.ratio[:4]), 1.0, atol=0.5)  # model ~ exact
    _, plain = least_squares_fit(residuals, 6, jacobian="central")(start, None)
    assert float(plain.loss[4]) > 1e-8  # the plain Jacobian straddles jumps near the truth
    with pytest.raises(ValueError, match="jump_tolerance"):
        least_squares_fit(residuals, 5, jump_tolerance=0.0)


def test_cem_reduces_the_pendulum_loss_and_moves_towards_the_truth(pendulum_problem):
    env, scale, truth, windows, loss = pendulum_problem
    theta, history = cem_fit(loss, num_iterations=20, population=64)(
        jax.random.PRNGKey(0), scale.init(), windows)
    errors = relative_error(scale, theta, scale.of_params(truth))
    assert max(e["max"] for e in errors.values()) < 2e-2, errors
    assert float(history.loss[-1]) < 1e-2 * float(loss(scale.init(), windows))


def test_cem_in_lax_map_batches_matches_the_vmapped_population(pendulum_problem):
    """``batch_size`` only changes how the candidates are evaluated (a ``lax.map`` instead of one
    ``vmap``, what calibrate_cheetah uses on MJX): same draws, same fit up to rounding."""
    env, scale, truth, windows, loss = pendulum_problem
    key = jax.random.PRNGKey(0)
    vmapped, h_vmapped = cem_fit(loss, num_iterations=3, population=8)(key, scale.init(), windows)
    mapped, h_mapped = cem_fit(loss, num_iterations=3, population=8, batch_size=3)(
        key, scale.init(), windows)
    np.testing.assert_allclose(np.asarray(h_mapped.loss), np.asarray(h_vmapped.loss), rtol=1e-4)
    for field in vmapped:
        np.testing.assert_allclose(np.asarray(mapped[field]), np.asarray(vmapped[field]),
                                   rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="batch_size"):
        cem_fit(loss, num_iterations=3, population=8, batch_size=9)


@pytest.mark.slow
@pytest.mark.mjx_e2e
def test_mjx_prediction_loss_gradient_matches_finite_differences(request):
    """One window of 3 HalfCheetah steps with contacts (MJX, float32, 4 solver iterations as a
    scan, as the calibration runs): directional derivatives of the loss along each field and a
    random direction vs central differences with eps = 1e-3 in log-scale. Float32 roundoff in
    the loss (~1e-7 relative) divided by 2 eps gives ~1e-4 relative noise; the O(eps^2)
    truncation is smaller: 1% tolerance leaves room for both.

    Friction is the exception, measured and asserted as such: it acts only through the contact
    solver, whose 4 early-stopping iterations make the loss piecewise smooth in it; at this
    state its derivative is -0.0105 by autodiff against -0.0072 by differences (0.1% of the
    gradient's largest component). Asserted: same sign, within 5e-3. The compile takes minutes
    on 2 cores (336 s measured under load): selected with -m mjx_e2e, like the experiment."""
    if "mjx_e2e" not in (request.config.getoption("-m") or ""):
        pytest.skip("compiles a gradient through MJX for minutes: select with -m mjx_e2e")
    env = envs.make("HalfCheetah", solver_iterations=4, ls_iterations=8)
    nominal = env.default_params()
    scale = LogScale(nominal, ("body_mass_scale", "friction_scale", "damping_scale",
                               "gear_scale"))
    # A start in ground contact (feet down, falling) and actions from the real side's range.
    start = np.concatenate([np.asarray(env.init_qpos[1:]) + np.r_[-0.1, np.full(7, 0.2)],
                            np.r_[0.5, -0.5, 0.3, np.full(6, 1.0)]]).astype(np.float32)
    obs = np.stack([start, start * 0.98, start * 0.95, start * 0.9])[None]
    actions = np.asarray([[[0.5, -0.3, 0.8, -0.6, 0.2, 0.9]] * 3], np.float32)
    windows = make_windows(obs, actions, horizon=3, stride=1)
    loss = prediction_loss(env, cheetah_state_from_obs(env), scale, jnp.ones(17))
    rng = np.random.default_rng(0)
    theta = {k: jnp.asarray(rng.normal(0, 0.1, v.shape) * scale.mask()[k], jnp.float32)
             for k, v in scale.init().items()}
    directions = [{k: (scale.mask()[k] if k == f else jnp.zeros_like(v))
                   for k, v in theta.items()} for f in scale.fields]
    directions.append({k: jnp.asarray(rng.normal(size=v.shape), jnp.float32) * scale.mask()[k]
                       for k, v in theta.items()})
    eps = 1e-3
    stacked = jax.tree.map(lambda *d: jnp.stack(d), *directions)

    @jax.jit
    def check(theta, stacked):
        value, grad = jax.value_and_grad(loss)(theta, windows)
        shifted = lambda sign: jax.vmap(lambda d: loss(jax.tree.map(
            lambda t, v: t + sign * eps * v, theta, d), windows))(stacked)
        analytic = jax.vmap(lambda d: sum(jnp.vdot(grad[k], d[k]) for k in d))(stacked)
        return value, analytic, (shifted(1.0) - shifted(-1.0)) / (2 * eps)

    value, analytic, numeric = map(np.asarray, check(theta, stacked))
    assert np.isfinite(value) and value > 1e-3
    assert np.all(np.abs(analytic) > 1e-4), analytic  # every field moves the prediction
    smooth = [i for i, f in enumerate(scale.fields) if f != "friction_scale"]
    smooth.append(len(directions) - 1)  # the random direction
    np.testing.assert_allclose(analytic[smooth], numeric[smooth], rtol=1e-2, atol=1e-6)
    friction = scale.fields.index("friction_scale")
    assert np.sign(analytic[friction]) == np.sign(numeric[friction])
    assert abs(analytic[friction] - numeric[friction]) < 5e-3


def test_tempered_weights_hit_the_target_ess_and_abc_keeps_the_best():
    tempered = jax.jit(tempered_weights, static_argnums=1)
    ll = -jnp.linspace(0.0, 1e4, 1000) ** 1.5
    weights, temperature = tempered(ll, 0.2)
    assert float(temperature) > 1.0
    np.testing.assert_allclose(float(effective_sample_size(weights)), 200.0, rtol=0.02)
    weights, temperature = tempered(jnp.zeros(10), 0.5)  # already equal: T = 1
    assert float(temperature) == 1.0 and np.allclose(np.asarray(weights), 0.1)
    kept = np.asarray(abc_weights(jnp.array([-3.0, -1.0, -2.0, -jnp.inf]), 0.5))
    np.testing.assert_allclose(kept, [0.0, 0.5, 0.5, 0.0])


def test_posterior_matches_the_closed_form_in_a_1d_gaussian_case():
    """Data y_i ~ N(m*, 1), i = 1..50, prior U[0.5, 2] x nominal m = 1 (Pendulum's ``m`` as
    the field), untempered importance weights: the posterior is N(mean(y), 1/50) truncated to the
    prior, so the new range is mean(y) +- sqrt(3 / 50) (to Monte-Carlo error of 20k particles)."""
    nominal = Pendulum().default_params()
    space = make_param_space(nominal, {"m": uniform(0.5, 2.0, relative=True)})
    y = 1.3 + jax.random.normal(jax.random.PRNGKey(1), (50,))
    log_likelihood = lambda p: -0.5 * jnp.sum(jnp.square(y[None] - p.m[:, None]), -1)
    new, info = jax.jit(lambda k, s: posterior_update(k, s, log_likelihood, 20_000,
                                                      ess_fraction=0.01))(
        jax.random.PRNGKey(0), space)
    assert float(info["temperature"]) == 1.0
    mean, half = float(y.mean()), float(np.sqrt(3 / 50))
    np.testing.assert_allclose(float(new.dists["m"].low), mean - half, atol=0.01)
    np.testing.assert_allclose(float(new.dists["m"].high), mean + half, atol=0.01)


def test_posterior_rounds_concentrate_on_the_true_pendulum_mass(pendulum_problem):
    """The EPOpt update with the trajectory likelihood of the pendulum's own data (1-D: m,
    length known): after 4 tempered rounds the range holds the true mass and is < 5% of the
    prior's width."""
    env, _, truth, windows, _ = pendulum_problem
    nominal = env.default_params().replace(l=truth.l)
    scale = LogScale(nominal, ("m",))
    loss = prediction_loss(env, pendulum_state, scale, obs_scale(windows))
    batched = jax.vmap(loss, in_axes=(0, None))
    n = windows.targets.size
    log_likelihood = lambda p: -0.5 * n * batched(jax.vmap(scale.of_params)(p), windows) / 1e-4
    space = make_param_space(nominal, {"m": uniform(0.5, 2.0, relative=True)})
    final, info = jax.jit(lambda k, s: posterior_rounds(k, s, log_likelihood, 256, rounds=4))(
        jax.random.PRNGKey(0), space)
    low, high = float(final.dists["m"].low), float(final.dists["m"].high)
    assert low <= TRUE_PENDULUM["m"] <= high and high - low < 0.05 * 1.5, (low, high)
    widths = np.asarray(info["high"]["m"] - info["low"]["m"])
    assert np.all(np.diff(widths) <= 1e-6) and info["ess"].shape == (4,)


def test_scale_elements_that_do_nothing_in_the_model_are_frozen_and_not_scored():
    """A scale field is 1 everywhere, also on a model quantity that is 0 (the world body's mass,
    the root joints' damping): ``acting_elements`` reads the model, the fit leaves those elements
    at nominal and ``relative_error`` leaves them out."""
    from types import SimpleNamespace

    from metarl_jax.sim2real.calibrate import acting_elements

    model = SimpleNamespace(body_mass=np.array([0.0, 2.0, 1.0]),
                            dof_damping=np.array([0.0, 3.0]),
                            actuator_gear=np.array([[50.0, 0, 0, 0, 0, 0]]))
    active = acting_elements(model)
    np.testing.assert_array_equal(active["body_mass_scale"], [0, 1, 1])
    np.testing.assert_array_equal(active["damping_scale"], [0, 1])
    Params = dataclasses.make_dataclass("Params", [("body_mass_scale", object)])
    Params.replace = lambda self, **kw: dataclasses.replace(self, **kw)  # as flax's Params
    params = Params(body_mass_scale=jnp.ones(3))
    scale = LogScale(params, ("body_mass_scale",), active=active)
    theta = {"body_mass_scale": jnp.log(jnp.array([5.0, 2.0, 1.0]))}
    np.testing.assert_allclose(np.asarray(scale.to_params(theta).body_mass_scale), [1, 2, 1],
                               rtol=1e-6)
    truth = {"body_mass_scale": jnp.log(jnp.array([1.0, 1.0, 1.0]))}
    error = relative_error(scale, theta, truth)["body_mass_scale"]
    assert error["per_element"] == pytest.approx([1.0, 0.0]) and error["max"] == pytest.approx(1.0)
    # Without ``active`` the nominal decides (all 1 here): every element is scored.
    assert len(relative_error(LogScale(params, ("body_mass_scale",)), theta,
                              truth)["body_mass_scale"]["per_element"]) == 3


def test_identifiability_names_the_combination_the_data_cannot_separate():
    """Two elements with the same effect (a mass and a gear that only act as their ratio) give a
    zero singular value whose direction is those two, with opposite signs; a third, distinct
    element is not in it. ``active_names`` follows ``least_squares_fit``'s element order."""
    from metarl_jax.sim2real.calibrate import active_names, identifiability

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 50))
    jac = np.stack([a, -2 * a, b], axis=1)  # element 1 = -2 x element 0: not separable
    out = identifiability(jac, ["mass", "gear", "friction"], top=2)
    assert out["singular_values"][-1] < 1e-6 * out["singular_values"][0]
    weakest = out["weakest"][0]["direction"]
    assert set(weakest) == {"mass", "gear"} and abs(weakest["mass"]) == pytest.approx(
        abs(weakest["gear"]), rel=1e-6)
    assert np.sign(weakest["mass"]) == np.sign(weakest["gear"])  # opposite effects: same sign
    assert out["column_norm"]["gear"] == pytest.approx(2 * out["column_norm"]["mass"])
    with pytest.raises(ValueError, match="jacobian"):
        identifiability(jac, ["mass", "gear"])
    Params = dataclasses.make_dataclass("Params", [("gear", object), ("mass", object)])
    scale = LogScale(Params(gear=jnp.ones(()), mass=jnp.ones(3)), ("mass", "gear"),
                     active={"mass": np.array([0, 1, 1])})
    assert active_names(scale) == ["gear", "mass[1]", "mass[2]"]
