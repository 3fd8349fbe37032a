"""EPOpt's CVaR selection, MRPO's selection, ADR's range updates, and the PPO hook."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.pendulum import Pendulum
from metarl_jax.algos.epopt import EPOpt, cvar_count, cvar_mask
from metarl_jax.algos.mrpo import MRPO, mrpo_mask
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.algos.ppo_loss import normalize_advantages, weighted_mean
from metarl_jax.randomization.adr import ADR, adr_update, make_adr_space
from metarl_jax.randomization.distributions import SpecError, uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.randomization.robust import EpisodeBatch, PlainDR

# ----------------------------------------------------------------------------- EPOpt


def test_cvar_mask_selects_exactly_the_worst_fraction():
    rng = np.random.default_rng(0)
    returns = rng.normal(size=50).astype(np.float32)
    for eps, k in [(0.1, 5), (0.25, 13), (1.0, 50), (0.001, 1)]:
        mask = np.asarray(cvar_mask(jnp.asarray(returns), eps))
        assert mask.sum() == k
        np.testing.assert_array_equal(np.flatnonzero(mask), np.sort(np.argsort(returns)[:k]))
    # ceil(eps * N) without float fuzz: 0.1 * 30 is exactly 3 episodes, 0.7 * 10 is 7.
    assert int(cvar_count(0.1, 30)) == 3 and int(cvar_count(0.7, 10)) == 7
    assert int(cvar_count(0.11, 30)) == 4


def test_cvar_mask_ties_go_to_the_lower_env_index():
    returns = jnp.array([3.0, 1.0, 1.0, 1.0, 5.0, 1.0])
    # k = ceil(0.5 * 6) = 3 of the four tied 1.0s: envs 1, 2, 3 (not 5).
    np.testing.assert_array_equal(np.asarray(cvar_mask(returns, 0.5)), [0, 1, 1, 1, 0, 0])
    # Under jit with a traced epsilon the same rule holds.
    jitted = jax.jit(cvar_mask)
    np.testing.assert_array_equal(np.asarray(jitted(returns, jnp.float32(0.34))),
                                  [0, 1, 1, 1, 0, 0])


def test_epopt_uses_every_trajectory_during_the_warm_start():
    hook = EPOpt(epsilon=0.2, warmup_updates=3)
    batch = _batch(jnp.arange(10.0))
    w_warm, m_warm = hook.weights(batch, None, jnp.int32(2))
    w_after, m_after = hook.weights(batch, None, jnp.int32(3))
    assert np.asarray(w_warm).sum() == 10 and float(m_warm["epopt_epsilon"]) == 1.0
    np.testing.assert_array_equal(np.asarray(w_after), [1, 1] + [0] * 8)
    assert float(m_after["epopt_cutoff"]) == 1.0
    with pytest.raises(ValueError, match="epsilon"):
        EPOpt(epsilon=0.0)


# ----------------------------------------------------------------------------- MRPO


def _mrpo_reference(returns, theta, kappa, k):
    worst = np.argsort(returns, kind="stable")[:k]
    keep = np.zeros(len(returns))
    for i in range(len(returns)):
        ok = all(returns[i] - kappa * np.abs(theta[i] - theta[w]).sum() > returns[w]
                 for w in worst)
        keep[i] = 1.0 if (i in worst or ok) else 0.0
    return keep


def test_mrpo_mask_matches_a_reference_loop():
    rng = np.random.default_rng(1)
    returns = rng.normal(-500, 200, size=40).astype(np.float32)
    theta = rng.uniform(-1, 1, size=(40, 2)).astype(np.float32)
    for kappa in (0.0, 100.0, 400.0):
        got = np.asarray(mrpo_mask(jnp.asarray(returns), jnp.asarray(theta), kappa, 0.1))
        np.testing.assert_array_equal(got, _mrpo_reference(returns, theta, kappa, 4))
    # kappa = 0 keeps everything; a large kappa keeps only W and episodes sitting on it.
    assert np.asarray(mrpo_mask(jnp.asarray(returns), jnp.asarray(theta), 0.0)).sum() == 40
    assert np.asarray(mrpo_mask(jnp.asarray(returns), jnp.asarray(theta), 1e9)).sum() == 4


def test_mrpo_kappa_grows_geometrically_and_is_capped():
    hook = MRPO(("m",), (1.0,), kappa0=2.0, growth=1.1, kappa_max=3.0)
    assert float(hook.kappa(jnp.int32(0))) == pytest.approx(2.0)
    assert float(hook.kappa(jnp.int32(2))) == pytest.approx(2.42, rel=1e-5)
    assert float(hook.kappa(jnp.int32(50))) == pytest.approx(3.0)


# ----------------------------------------------------------------------------- ADR


def _adr_space(**kw):
    nominal = Pendulum().default_params()
    args = dict(delta={"m": 0.1, "l": 0.05}, initial={"m": (0.8, 1.2), "l": (0.9, 1.1)},
                t_low=-800.0, t_high=-300.0, buffer_size=4, p_boundary=0.5)
    args.update(kw)
    return make_adr_space(nominal, {"m": (0.5, 2.0), "l": (0.85, 1.5)}, **args)


def _values(space, rows):
    """rows: list of (field index, side) -> [N, D] values with that field at that boundary."""
    out = np.tile(np.asarray((space.low + space.high) / 2), (len(rows), 1))
    for n, (d, side) in enumerate(rows):
        out[n, d] = np.asarray(space.drawn_high if side else space.drawn_low)[d]
    return jnp.asarray(out, jnp.float32)


def test_adr_widens_above_t_high_shrinks_below_t_low_and_holds_between():
    space = _adr_space()
    # m low boundary: 4 episodes at -100 (>= t_high) -> widen; m high: 4 at -900 -> shrink;
    # l low: 4 at -500 (between) -> unchanged; l high: 2 episodes only -> not yet evaluated.
    rows = [(0, 0)] * 4 + [(0, 1)] * 4 + [(1, 0)] * 4 + [(1, 1)] * 2
    returns = jnp.array([-100.0] * 4 + [-900.0] * 4 + [-500.0] * 4 + [-100.0] * 2)
    new = adr_update(space, returns, _values(space, rows))
    np.testing.assert_allclose(np.asarray(new.low), [0.7, 0.9], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(new.high), [1.1, 1.1], rtol=1e-6)
    # Evaluated buffers are emptied; the partial one keeps its two episodes.
    np.testing.assert_array_equal(np.asarray(new.buffer_count), [[0, 0], [0, 2]])
    assert float(new.buffer_sum[1, 1]) == -200.0
    # The next rollout's episodes were drawn from the pre-update ranges.
    np.testing.assert_array_equal(np.asarray(new.drawn_low), np.asarray(space.low))
    # Two more good episodes at the l high boundary complete its buffer -> it widens.
    newer = adr_update(new, jnp.array([-100.0, -100.0]), _values(new, [(1, 1), (1, 1)]))
    np.testing.assert_allclose(np.asarray(newer.high), [1.1, 1.15], rtol=1e-6)


def test_adr_ranges_are_clipped_to_hard_limits_and_never_cross_the_initial_value():
    space = _adr_space()
    good, bad = jnp.full((8,), -100.0), jnp.full((8,), -2000.0)
    rows = [(0, 0)] * 4 + [(1, 0)] * 4
    widened = space
    for _ in range(10):  # l's low moves 0.9 -> 0.85 (its hard limit) and stays there
        widened = adr_update(widened, good, _values(widened, rows))
    np.testing.assert_allclose(np.asarray(widened.low), [0.5, 0.85], rtol=1e-6)
    shrunk = widened
    for _ in range(30):
        shrunk = adr_update(shrunk, bad, _values(shrunk, rows))
    np.testing.assert_allclose(np.asarray(shrunk.low), np.asarray(space.initial), rtol=1e-6)
    assert np.all(np.asarray(shrunk.low) <= np.asarray(shrunk.high))


def test_adr_sample_pins_boundaries_with_probability_p_b():
    space = _adr_space(p_boundary=0.3)
    params = space.sample(jax.random.PRNGKey(0), (20000,))
    assert params.m.shape == (20000,) and params.g.shape == (20000,)
    m, length = np.asarray(params.m), np.asarray(params.l)
    assert m.min() >= 0.8 and m.max() <= 1.2 and length.min() >= 0.9 and length.max() <= 1.1
    at_boundary = np.isin(m, np.float32([0.8, 1.2])) | np.isin(length, np.float32([0.9, 1.1]))
    assert abs(at_boundary.mean() - 0.3) < 0.015
    assert np.all(np.asarray(params.g) == 10.0)


def test_adr_spec_errors():
    nominal = Pendulum().default_params()
    with pytest.raises(SpecError, match="t_low < t_high"):
        make_adr_space(nominal, {"m": (0.5, 2.0)}, delta={"m": 0.1}, t_low=0.0, t_high=-1.0)
    with pytest.raises(SpecError, match="unknown field"):
        make_adr_space(nominal, {"mass": (0.5, 2.0)}, delta={"mass": 0.1}, t_low=-1, t_high=0)
    with pytest.raises(SpecError, match="hard_low <= low"):
        make_adr_space(nominal, {"m": (1.5, 2.0)}, delta={"m": 0.1}, t_low=-1, t_high=0)


# ----------------------------------------------------------------------------- weighting


def test_weighted_mean_and_advantage_normalization_use_only_weighted_samples():
    x = jnp.array([1.0, 2.0, 3.0, 100.0])
    w = jnp.array([1.0, 1.0, 1.0, 0.0])
    assert float(weighted_mean(x, w)) == pytest.approx(2.0)
    adv = np.asarray(normalize_advantages(x, w))
    np.testing.assert_allclose(adv[:3], (np.array([1, 2, 3]) - 2) / np.std([1, 2, 3]), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(normalize_advantages(x, None)),
                               (x - x.mean()) / (x.std() + 1e-8), rtol=1e-6)


# ----------------------------------------------------------------------------- PPO + hooks

SMALL = PPOConfig(num_envs=16, num_steps=200, total_steps=16 * 200 * 4, num_epochs=2,
                  num_minibatches=4, hidden_sizes=(16, 16))


def _batch(returns):
    from metarl_jax.randomization.robust import EpisodeBatch
    return EpisodeBatch(returns=returns, params=None, aligned=jnp.bool_(True))


def _space(env):
    return make_param_space(env.default_params(), {"m": uniform(0.5, 2.0, relative=True)})


def test_hooks_need_one_episode_per_env():
    env = Pendulum()
    with pytest.raises(ValueError, match="resample_every"):
        PPO(env, resample_every=10, robust=PlainDR())
    ppo = PPO(env, robust=PlainDR())
    with pytest.raises(ValueError, match="num_steps"):
        ppo.init(jax.random.PRNGKey(0), SMALL.replace(num_steps=100), _space(env))


def test_epopt_with_epsilon_one_is_plain_dr_and_compiles_once():
    env = Pendulum()
    space = _space(env)
    runs = {}
    for name, hook in [("dr", PlainDR()), ("all", EPOpt(1.0)), ("worst", EPOpt(0.25))]:
        ppo = PPO(env, robust=hook)
        state = ppo.init(jax.random.PRNGKey(0), SMALL, space)
        state, _ = ppo.train_chunk(state, SMALL, num_updates=1)
        state, metrics = ppo.train_chunk(state, SMALL, num_updates=1)
        assert ppo.traces["train_chunk"] == 1
        assert float(metrics["episodes_aligned"][0]) == 1.0
        runs[name] = (state, metrics)
    flat = lambda name: np.concatenate([np.ravel(x) for x in jax.tree.leaves(runs[name][0].params)])
    np.testing.assert_allclose(flat("all"), flat("dr"), rtol=1e-4, atol=1e-5)
    assert float(runs["worst"][1]["selected_frac"][0]) == 0.25
    assert np.max(np.abs(flat("worst") - flat("dr"))) > 1e-3


def test_adr_space_lives_in_the_train_state_and_is_updated():
    env = Pendulum()
    # Thresholds every return clears: each full boundary buffer widens its range.
    space = make_adr_space(env.default_params(), {"m": (0.5, 2.0)}, delta={"m": 0.1},
                           t_low=-1e6, t_high=-1e5, buffer_size=4, p_boundary=0.5)
    ppo = PPO(env, robust=ADR())
    state = ppo.init(jax.random.PRNGKey(0), SMALL, space)
    state, metrics = ppo.train_chunk(state, SMALL, num_updates=3)
    assert float(state.space.low[0]) < 1.0 < float(state.space.high[0])
    assert float(metrics["adr_high_m"][-1]) == float(state.space.high[0])
    # The episodes of the next rollout are drawn from the updated space, in the compiled program.
    m = np.asarray(state.env_state.inner.params.m)
    assert m.min() >= float(state.space.low[0]) and m.max() <= float(state.space.high[0])


def test_a_hooks_coefficients_are_data_another_epsilon_reuses_the_compiled_program():
    env = Pendulum()
    space = make_param_space(env.default_params(), {"m": uniform(0.5, 2.0, relative=True)})
    config = PPOConfig(num_envs=8, num_steps=env.max_steps, total_steps=8 * env.max_steps * 4,
                       num_epochs=1, num_minibatches=2)
    ppo = PPO(env, robust=EPOpt(epsilon=0.25))
    key = jax.random.PRNGKey(0)
    _, quarter = ppo.update(ppo.init(key, config, space), config)
    _, half = ppo.update(ppo.init(key, config, space, EPOpt(epsilon=0.5)), config)
    assert float(quarter["selected_frac"]) == 0.25 and float(half["selected_frac"]) == 0.5
    assert ppo.traces["init"] == 2  # None (the constructor's hook) and an EPOpt pytree
    assert ppo.traces["update"] == 1
    with pytest.raises(ValueError, match="built with robust=EPOpt"):
        ppo.init(key, config, space, PlainDR())


# ----------------------------------------------------------------------------- robust_dr's arms


def test_arm_hook_and_space_reproduce_each_arms_own_rule():
    """robust_dr trains every arm through one program (``experiments/_robust_arms.py``): for
    each arm index the weights, the space update and the draws must be that arm's own hook's."""
    from experiments import _robust_arms as arms

    nominal = Pendulum().default_params()
    box = make_param_space(nominal, {"m": uniform(0.5, 2.0, relative=True),
                                     "l": uniform(0.6, 1.5, relative=True)})
    adr_space = make_adr_space(nominal, {"m": (0.5, 2.0), "l": (0.6, 1.5)},
                               delta={"m": 0.05, "l": 0.05}, t_low=-800.0, t_high=-400.0,
                               buffer_size=1)
    epopt, mrpo = EPOpt(0.25, 0), MRPO(("m", "l"), (1.5, 0.9), 100.0, 1.0)
    hook = arms.ArmHook(epopt=epopt, mrpo=mrpo)
    key = jax.random.PRNGKey(3)

    @jax.jit
    def both(arm):  # (the arm's results through ArmHook/ArmSpace, its own hook's), jitted once
        params = box.sample(key, (16,))
        returns = -jnp.abs(jax.random.normal(key, (16,))) * 500
        batch = EpisodeBatch(returns=returns, params=params, aligned=jnp.bool_(True))
        step = jnp.int32(5)
        space = arms.ArmSpace(arm=arm, box=box, adr=adr_space)
        moved, _ = hook.update_space(space, batch, step)
        drawn = space.sample(key, (8,))
        got = (hook.weights(batch, space, step)[0], moved.adr.low, moved.adr.high, drawn.m,
               drawn.l)
        ones = jnp.ones(16)
        own_weights = jnp.stack([ones, epopt.weights(batch, box, step)[0],
                                 mrpo.weights(batch, box, step)[0], ones,
                                 epopt.weights(batch, box, step)[0]])[arm]
        is_adr = arm == arms.ADR_ARM
        adr_new, _ = ADR().update_space(adr_space, batch, step)
        pick = lambda a, b: jnp.where(is_adr, a, b)
        reference = pick(adr_space.sample(key, (8,)).m, box.sample(key, (8,)).m), pick(
            adr_space.sample(key, (8,)).l, box.sample(key, (8,)).l)
        want = (own_weights, pick(adr_new.low, adr_space.low), pick(adr_new.high, adr_space.high),
                *reference)
        return got, want

    own = {}
    for i, name in enumerate(arms.ARMS):
        got, want = both(jnp.int32(i))
        for g, w in zip(got, want):
            np.testing.assert_array_equal(np.asarray(g), np.asarray(w), err_msg=name)
        own[name] = np.asarray(got[0])
    assert float(np.asarray(own["epopt"]).sum()) == 4  # the rules differ: the test can fail


def test_epopt_source_adaptation_rounds_concentrate_on_the_true_mass():
    """EPOpt's alternation (sec. 3.2) on a 1-D case: Pendulum mass unknown (prior U[0.5, 2] x
    nominal, length known), target mass 1.3; each round a policy plays 2 fresh target episodes
    and the space becomes the posterior given them. The range shrinks every round, holds the
    truth, and after 4 rounds is < 5% of the prior's width."""
    from experiments import _robust_arms as arms
    from metarl_jax.algos.epopt import SourceAdaptation

    env = Pendulum()
    nominal = env.default_params()
    target = nominal.replace(m=jnp.float32(1.3))
    space = make_param_space(nominal, {"m": uniform(0.5, 2.0, relative=True)})
    likelihood = arms.pendulum_log_likelihood(env, nominal, ("m",), 5, 0.01)
    adaptation = SourceAdaptation(num_episodes=2, num_steps=50, num_particles=256)
    act = lambda key, obs: jax.random.uniform(key, (obs.shape[0], 1), minval=-2.0, maxval=2.0)
    one_round = jax.jit(lambda key, space: adaptation(key, space, env, act, target, likelihood))
    widths = [1.5]
    for r in range(4):
        space, info = one_round(jax.random.PRNGKey(r), space)
        low, high = float(space.dists["m"].low), float(space.dists["m"].high)
        assert low <= 1.3 <= high, (r, low, high)
        widths.append(high - low)
    assert np.all(np.diff(widths) < 0), widths
    assert widths[-1] < 0.05 * 1.5, widths
