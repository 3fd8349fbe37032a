"""Actor-Mimic distillation: the KL losses against closed forms and quadrature, their gradients
against hand-computed ones, a zero loss when student = teacher, and the experiment (quick)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from envs.cartpole import CartPole
from experiments import distill as distill_exp
from metarl_jax.algos.distill import (
    Distill,
    DistillConfig,
    Teachers,
    actor_features,
    categorical_kl,
    feature_regression_loss,
    gaussian_kl,
)
from metarl_jax.algos.ppo import PPO, PPOConfig
from tests.experiment_contract import check_run_folder, run_quick

pytestmark = pytest.mark.slow


def test_categorical_kl_value_and_gradient_match_the_closed_form():
    zt, zs = jnp.array([0.3, -1.0, 2.0]), jnp.array([1.0, 0.5, -0.2])
    pt, ps = np.exp(zt) / np.exp(zt).sum(), np.exp(zs) / np.exp(zs).sum()
    assert float(categorical_kl(zt, zs)) == pytest.approx(float(np.sum(pt * np.log(pt / ps))),
                                                          abs=1e-6)
    assert float(categorical_kl(zt, zt)) == pytest.approx(0.0, abs=1e-7)
    # d/dz_s KL(p_t || softmax(z_s)) = softmax(z_s) - p_t
    np.testing.assert_allclose(jax.grad(categorical_kl, argnums=1)(zt, zs), ps - pt, atol=1e-6)
    np.testing.assert_allclose(jax.grad(categorical_kl, argnums=1)(zt, zt), 0.0, atol=1e-7)


def test_gaussian_kl_value_matches_quadrature_and_gradient_the_closed_form():
    mt, lst = jnp.array([0.4, -1.0]), jnp.array([-0.3, 0.2])
    ms, lss = jnp.array([-0.1, -0.5]), jnp.array([0.1, -0.4])
    x = np.linspace(-12, 12, 200_001)
    total = 0.0
    for d in range(2):  # independent dimensions: the KL is the sum of 1-D KLs
        def logpdf(m, ls):
            return -0.5 * ((x - m) / np.exp(ls)) ** 2 - ls - 0.5 * np.log(2 * np.pi)
        lp, lq = logpdf(float(mt[d]), float(lst[d])), logpdf(float(ms[d]), float(lss[d]))
        total += np.trapezoid(np.exp(lp) * (lp - lq), x)
    assert float(gaussian_kl((mt, lst), (ms, lss))) == pytest.approx(total, abs=1e-5)
    assert float(gaussian_kl((mt, lst), (mt, lst))) == pytest.approx(0.0, abs=1e-7)
    g_m, g_ls = jax.grad(lambda m, ls: gaussian_kl((mt, lst), (m, ls)), argnums=(0, 1))(ms, lss)
    st2, ss2 = np.exp(2 * lst), np.exp(2 * lss)
    np.testing.assert_allclose(g_m, (ms - mt) / ss2, rtol=1e-5)  # (m_s - m_t) / s_s^2
    np.testing.assert_allclose(g_ls, 1 - (st2 + (mt - ms) ** 2) / ss2, rtol=1e-5)


def test_distillation_loss_is_zero_when_the_student_is_the_teacher():
    env = CartPole(max_steps=20)
    ppo = PPO(env)
    teacher_cfg = PPOConfig(num_envs=2, num_steps=8, total_steps=16, hidden_sizes=(16,))
    cfg = DistillConfig(num_envs_per_task=2, num_steps=8, num_minibatches=2, num_epochs=2,
                        hidden_sizes=(16,), feature_coef=0.01).validate()
    distill = Distill(env, 2, ppo, teacher_cfg)
    tasks = jax.tree.map(lambda x: jnp.stack([x, x]), env.default_params())
    state = distill.init(jax.random.PRNGKey(0), cfg, tasks)
    state = state.replace(obs_stats=state.obs_stats.replace(
        mean=jnp.full(4, 0.1), var=jnp.full(4, 2.0), count=jnp.float32(10.0)))
    twice = lambda x: jnp.stack([x, x])  # noqa: E731
    same = Teachers(jax.tree.map(twice, state.params), jax.tree.map(twice, state.obs_stats))
    _, m = distill.update(state, cfg, same)
    assert float(m["kl"]) < 1e-7 and float(m["value_loss"]) < 1e-10
    # Same hidden sizes and identity regressors at init: the teacher's features are predicted.
    assert float(m["feature_loss"]) < 1e-10
    same_grad = float(m["grad_norm"])  # zero loss at its minimum: zero gradient up to rounding
    leaves, treedef = jax.tree.flatten(state.params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    moved = [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    other = Teachers(jax.tree.map(twice, jax.tree.unflatten(treedef, moved)), same.obs_stats)
    _, m = distill.update(state, cfg, other)
    assert float(m["kl"]) > 1e-4 and float(m["grad_norm"]) > 1e-3
    assert float(m["feature_loss"]) > 1e-3
    assert same_grad < 1e-3 * float(m["grad_norm"]), same_grad


def test_feature_regression_loss_and_gradient_match_the_hand_computed_ones():
    rng = np.random.default_rng(0)
    T, N, Hs, Ht = 3, 5, 4, 2
    w, b = rng.normal(size=(T, Hs, Ht)), rng.normal(size=(T, Ht))
    hs, ht, task = rng.normal(size=(N, Hs)), rng.normal(size=(N, Ht)), np.array([0, 2, 1, 2, 0])
    residual = np.stack([hs[n] @ w[task[n]] + b[task[n]] - ht[n] for n in range(N)])  # [N, Ht]
    f = lambda reg, h: feature_regression_loss(reg, h, jnp.asarray(ht), jnp.asarray(task))  # noqa
    reg = (jnp.asarray(w), jnp.asarray(b))
    assert float(f(reg, jnp.asarray(hs))) == pytest.approx(np.mean(np.sum(residual ** 2, -1)),
                                                           rel=1e-5)
    (g_w, g_b), g_h = jax.grad(f, argnums=(0, 1))(reg, jnp.asarray(hs))
    # d/dW_t = (2/N) sum_{n: task n = t} h_n r_n^T; d/db_t = (2/N) sum r_n; d/dh_n = (2/N) W r_n
    for t in range(T):
        rows = task == t
        np.testing.assert_allclose(g_w[t], 2 / N * hs[rows].T @ residual[rows], rtol=1e-4,
                                   atol=1e-6)
        np.testing.assert_allclose(g_b[t], 2 / N * residual[rows].sum(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(g_h, 2 / N * np.einsum("nhk,nk->nh", w[task], residual),
                               rtol=1e-4, atol=1e-6)


def test_actor_features_are_the_actor_mlps_last_hidden_layer():
    from metarl_jax.nets.actor_critic import ActorCritic

    net = ActorCritic(2, False, (8, 6))
    obs = jax.random.normal(jax.random.PRNGKey(1), (3, 5))
    params = net.init(jax.random.PRNGKey(0), obs)
    h = actor_features(params, obs, 2)
    out = params["params"]["actor"]["Dense_2"]
    (mean, _), _ = net.apply(params, obs)
    assert h.shape == (3, 6)
    np.testing.assert_allclose(h @ out["kernel"] + out["bias"], mean, rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "run"
    assert run_quick(distill_exp, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    config = distill_exp.PRESETS["quick"]
    L = config.log_every
    T = len(config.tasks)
    check_run_folder(quick_run, {
        "teachers": config.teacher.num_updates // L,
        "student": config.student.total_steps // config.student.steps_per_update(T) // L,
    }, ("finetune.png",))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    for t in range(T):
        r = results["student_over_teacher"][f"task{t}"]
        s, te = (results[k][f"task{t}"]["per_seed"] for k in ("student_return",
                                                               "teacher_return"))
        np.testing.assert_allclose(r["per_seed"], np.divide(s, te), rtol=1e-6)
    finetune, auc = results["finetune"], {}
    for method in distill_exp.INITS:
        by_budget = finetune[method]["return_by_budget"]
        assert list(by_budget) == ["0", *map(str, config.budgets)]
        assert all(len(v["per_seed"]) == config.num_seeds for v in by_budget.values())
        curve = np.array([v["per_seed"] for v in by_budget.values()]).T  # [S, 1 + K]
        auc[method] = distill_exp.area_under_curve(curve, (0, *config.budgets), config.max_steps)
        np.testing.assert_allclose(finetune[method]["auc"]["per_seed"], auc[method], rtol=1e-6)
    np.testing.assert_allclose(finetune["student_minus_scratch_auc"]["per_seed"],
                               auc["student_init"] - auc["scratch"], rtol=1e-6, atol=1e-9)
    assert finetune["auc_verdict"] in ("better", "worse", "tie")


def test_area_under_curve_is_the_normalized_trapezoid():
    returns = np.array([[0.0, 200.0, 200.0], [100.0, 100.0, 0.0]])
    # seed 0: (0.5 * 10 + 1.0 * 30) / 40; seed 1: (0.5 * 10 + 0.25 * 30) / 40
    np.testing.assert_allclose(distill_exp.area_under_curve(returns, (0, 10, 40), 200),
                               [35 / 40, 12.5 / 40])
    with pytest.raises(ValueError, match="budgets"):
        distill_exp.area_under_curve(returns, (10, 20, 40), 200)


@pytest.mark.parametrize("override, message", [
    ("held_out=-20.0,1.0", "outside"),
    ("student.hidden_sizes=32", "hidden_sizes"),
])
def test_bad_config_exits_2(tmp_path, override, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(distill_exp, tmp_path / "bad", override)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
