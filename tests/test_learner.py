"""The learner contract (``metarl_jax.algos.learner``) and the PPO-family loss (``ppo_loss``).

* The non-finite guard is part of the contract: a NaN injected into each learner's loss flags the
  update and keeps the state; through a real command it ends the experiment with exit status 3.
* ``clipped_surrogate_loss`` against numbers derived by hand on a tiny batch.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from envs import make
from envs.bandits import BernoulliBandit, bernoulli_task_space
from envs.point_nav import PointNav2D
from experiments import maml_nav2d, maml_sinusoid, rl2_bandits, uposi
from metarl_jax.algos.learner import INJECT_NAN_ENV, Learner, block_mean, select_seed
from metarl_jax.algos.maml import MAMLConfig, SupervisedMAML
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.algos.ppo_loss import Batch, clipped_surrogate_loss
from metarl_jax.algos.rl2 import RL2, RL2Config
from metarl_jax.algos.uposi import OSIConfig, OSILearner
from metarl_jax.core.context_wrappers import ParamObservation, TransitionHistory
from metarl_jax.core.nonfinite import describe
from metarl_jax.nets.mlp import MLP
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from tests.experiment_contract import run_quick


# ----------------------------------------------------------------------------- PPO-family loss
def _tiny_batch(weight=None, extra=False):
    """Two samples (a third, extra one, when ``extra``): ratios 1.5 and 0.5, advantages 1, -1."""
    new_logp = jnp.log(jnp.array([1.5, 0.5] + ([1.0] if extra else [])))
    value = jnp.array([1.0, 2.0] + ([100.0] if extra else []))
    entropy = jnp.array([0.5, 1.5] + ([9.0] if extra else []))
    n = 3 if extra else 2
    batch = Batch(obs=jnp.zeros((n, 1)), action=jnp.zeros((n,)), log_prob=jnp.zeros((n,)),
                  advantage=jnp.array([1.0, -1.0] + ([5.0] if extra else [])),
                  target=jnp.zeros((n,)), weight=weight)
    return new_logp, value, entropy, batch


def test_clipped_surrogate_loss_matches_hand_derived_values():
    loss, stats = clipped_surrogate_loss(*_tiny_batch(), clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    # normalized advantages are (1, -1) (mean 0, std 1); clipped ratios (1.2, 0.8):
    # min(1.5 * 1, 1.2 * 1) = 1.2 and min(0.5 * -1, 0.8 * -1) = -0.8, mean 0.2
    assert float(stats["policy_loss"]) == pytest.approx(-0.2, abs=1e-6)
    assert float(stats["value_loss"]) == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    assert float(stats["entropy"]) == pytest.approx(1.0)
    assert float(loss) == pytest.approx(-0.2 + 0.5 * 1.25 - 0.01 * 1.0, abs=1e-6)
    kl = ((0.5 - math.log(1.5)) + (-0.5 - math.log(0.5))) / 2
    assert float(stats["approx_kl"]) == pytest.approx(kl, rel=1e-5)
    assert float(stats["clip_frac"]) == 1.0


def test_zero_weight_samples_do_not_enter_the_loss():
    plain, _ = clipped_surrogate_loss(*_tiny_batch(), clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    weighted, stats = clipped_surrogate_loss(*_tiny_batch(jnp.array([1.0, 1.0, 0.0]), extra=True),
                                             clip_eps=0.2, vf_coef=0.5, ent_coef=0.01)
    assert float(weighted) == pytest.approx(float(plain), abs=1e-6)
    assert float(stats["value_loss"]) == pytest.approx(1.25)


def test_clipping_removes_the_gradient_of_samples_outside_the_trust_region():
    new_logp, value, entropy, batch = _tiny_batch()
    grad = jax.grad(lambda lp: clipped_surrogate_loss(lp, value, entropy, batch, 0.2, 0.5,
                                                      0.0)[0])(new_logp)
    # both samples are clipped on the side where clipping binds: no policy gradient at all
    np.testing.assert_allclose(np.asarray(grad), 0.0, atol=1e-7)


# ----------------------------------------------------------------------------- the contract
class Counter(Learner):
    """A toy learner: params drift by ``rate``; its loss is ``params``."""

    def _init(self, key, config):
        return {"params": jnp.float32(0.0), "step": jnp.int32(0)}

    def trainable(self, state):
        return state["params"]

    def _update(self, state, config, scale=1.0):
        params = state["params"] + config["rate"] * scale
        return {"params": params, "step": state["step"] + 1}, {"loss": params}


@struct.dataclass
class DriftConfig:
    rate: jax.Array
    num_updates: int = struct.field(pytree_node=False, default=6)
    batch_size: int = struct.field(pytree_node=False, default=10)  # env steps per update


class Drift(Counter):
    """``Counter`` with a dataclass config, as ``train`` reads ``num_updates`` from it."""

    def _update(self, state, config, scale=1.0):
        return super()._update(state, {"rate": config.rate}, scale)


def test_train_with_progress_fn_reports_between_chunks_and_matches_the_one_program_run():
    learner, config, key = Drift(), DriftConfig(jnp.float32(0.5)), jax.random.PRNGKey(0)
    whole_state, whole = learner.train(key, config)
    calls = []
    state, metrics = learner.train(key, config, progress_every=2,
                                   progress_fn=lambda steps, m: calls.append((steps, m)))
    assert [steps for steps, _ in calls] == [20, 40, 60]  # batch_size env steps per update
    assert [m["loss"] for _, m in calls] == [1.0, 2.0, 3.0] and all(
        isinstance(m["loss"], float) for _, m in calls)
    assert learner.traces["train_chunk"] == 1  # three chunks, one compile
    np.testing.assert_array_equal(np.asarray(metrics["loss"]), np.asarray(whole["loss"]))
    assert float(state["params"]) == float(whole_state["params"]) == 3.0
    calls.clear()
    learner.train(key, config, progress_fn=lambda steps, m: calls.append(steps))
    assert calls == [10, 20, 30, 40, 50, 60]  # default: largest divisor <= num_updates / 10
    with pytest.raises(ValueError, match="progress_every"):
        learner.train(key, config, progress_fn=print, progress_every=7)


def test_train_chunk_blocks_and_context_and_seeds():
    learner = Counter()
    config = {"rate": jnp.float32(1.0)}
    state = learner.init(jax.random.PRNGKey(0), config)
    state, metrics = learner.train_chunk(state, config, 3, log_every=2)
    assert int(state["step"]) == 6
    np.testing.assert_allclose(np.asarray(metrics["loss"]), [1.5, 3.5, 5.5])
    assert np.asarray(metrics["nonfinite_flags"]).tolist() == [0, 0, 0]
    states = learner.init_seeds(jax.random.split(jax.random.PRNGKey(0), 2), config)
    scales = jnp.array([1.0, 10.0])
    states, metrics = learner.train_chunk_seeds(states, config, 2, scales)
    assert metrics["loss"].shape == (2, 2)
    assert float(select_seed(states, 1)["params"]) == 20.0


def test_block_mean_ors_the_guard_flags():
    out = block_mean({"loss": jnp.array([1.0, 3.0]), "nonfinite_flags": jnp.array([1, 4])})
    assert float(out["loss"]) == 2.0 and int(out["nonfinite_flags"]) == 5


def test_a_nan_rate_is_caught_and_the_last_good_state_kept():
    learner = Counter()
    state = learner.init(jax.random.PRNGKey(0), {"rate": jnp.float32(1.0)})
    state, _ = learner.update(state, {"rate": jnp.float32(1.0)})
    bad, metrics = learner.update(state, {"rate": jnp.float32(jnp.nan)})
    assert describe(int(metrics["nonfinite_flags"])) == ["loss", "params"]
    assert float(bad["params"]) == 1.0 and int(bad["step"]) == 1


def _nav_task_space():
    return make_param_space(PointNav2D().default_params(), {"goal": uniform(-0.5, 0.5)})


def _osi_learner():
    """A tiny OSI on Pendulum's (m, l) context env; a UP that always pushes 0 (the guard only
    needs the OSI's regression loss)."""
    base = make("Pendulum")
    space, low, high = uposi.prior(uposi.PRESETS["quick"], base.default_params())
    env = ParamObservation(TransitionHistory(base, 2), uposi.FIELDS, low, high)
    up_act = lambda up, key, obs, deterministic: jnp.zeros(obs.shape[:-1] + (1,)) * up
    config = OSIConfig(num_envs=4, num_steps=8, num_updates=1, buffer_collections=1,
                       fit_steps=2, batch_size=8, hidden_sizes=(8,))
    return OSILearner(env, up_act), config, (space,), (jnp.float32(1.0),)


def _sinusoid_learner():
    net = MLP((8,), 1)
    loss = lambda params, xy: jnp.mean((net.apply(params, xy[0]) - xy[1]) ** 2)
    sample = lambda key, b: ((jax.random.normal(key, (b, 4, 1)),) * 2,) * 2
    return SupervisedMAML(loss, lambda k: net.init(k, jnp.zeros((1, 1))), sample)


LEARNERS = {
    "PPO": lambda: (PPO(make("Pendulum")),
                    PPOConfig(num_envs=4, num_steps=8, total_steps=64, num_minibatches=2,
                              num_epochs=1),
                    (make_param_space(make("Pendulum").default_params()),), ()),
    "RL2": lambda: (RL2(BernoulliBandit(num_arms=3, max_steps=2), 2),
                    RL2Config(num_envs=4, num_steps=8, total_steps=64, num_epochs=1,
                              num_minibatches=2, hidden_size=8, seq_len=4),
                    (bernoulli_task_space(3),), ()),
    "SupervisedMAML": lambda: (_sinusoid_learner(), MAMLConfig(meta_batch_size=2), (), ()),
    "OSILearner": _osi_learner,
    "MAMLRL": lambda: (MAMLRL(PointNav2D()),
                       MAMLRLConfig(meta_batch_size=2, episodes_per_task=2, hidden_sizes=(8,)),
                       (_nav_task_space(),), ()),
}


@pytest.mark.parametrize("name", sorted(LEARNERS))
def test_every_learner_is_guarded_against_a_nan_loss(name, monkeypatch):
    monkeypatch.setenv(INJECT_NAN_ENV, name)
    learner, config, init_args, context = LEARNERS[name]()
    state = learner.init(jax.random.PRNGKey(0), config, *init_args)
    new_state, metrics = learner.update(state, config, *context)
    assert "loss" in describe(int(metrics["nonfinite_flags"]))
    same = jax.tree.map(lambda a, b: bool(np.array_equal(a, b, equal_nan=True)), new_state, state)
    assert all(jax.tree.leaves(same)), f"{name} moved past a non-finite update"
    monkeypatch.setenv(INJECT_NAN_ENV, "SomeOtherLearner")  # targets one class only
    learner = LEARNERS[name]()[0]
    _, metrics = learner.update(state, config, *context)
    assert int(metrics["nonfinite_flags"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("module, learner", [
    (rl2_bandits, "RL2"), (maml_sinusoid, "SupervisedMAML"), (maml_nav2d, "MAMLRL"),
])
def test_a_nan_in_each_learners_loss_ends_its_experiment_with_status_3(
        module, learner, tmp_path, monkeypatch, capsys):
    """Through a real command (the loop's reaction is shared by every learner; the OSI's guard is
    checked above without running uposi's UP phase first)."""
    monkeypatch.setenv(INJECT_NAN_ENV, learner)
    assert run_quick(module, tmp_path / "run") == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at update 1 of phase" in err, err
    assert not (tmp_path / "run" / "summary.json").exists()


def test_init_log_std_is_data_another_value_reuses_the_compiled_init():
    env = make("Pendulum")
    ppo, space = PPO(env), make_param_space(env.default_params())
    config = PPOConfig(num_envs=4, num_steps=8, total_steps=64, num_minibatches=2)
    for value in (-0.5, -1.0):
        state = ppo.init(jax.random.PRNGKey(0), config.replace(init_log_std=value), space)
        np.testing.assert_array_equal(np.asarray(state.params["params"]["log_std"]), [value])
    assert ppo.traces["init"] == 1
    maml_rl = MAMLRL(PointNav2D())
    mconfig = MAMLRLConfig(meta_batch_size=2, episodes_per_task=2, hidden_sizes=(8,),
                           init_log_std=-2.0)
    meta = maml_rl.init(jax.random.PRNGKey(0), mconfig, _nav_task_space()).meta
    np.testing.assert_array_equal(np.asarray(meta.params["params"]["log_std"]), [-2.0, -2.0])
