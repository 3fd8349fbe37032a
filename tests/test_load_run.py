"""From a run folder to policies (#12 item 5): load_run, exported policies, per-seed curves,
progress_fn, TensorBoard files of a real run."""

from __future__ import annotations

import shutil
import stat

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metarl_jax
from experiments import dr_pendulum
from metarl_jax.io.cli import cli
from metarl_jax.io.load import RunLoadError
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import CHECKPOINT_DIR, METRICS_FILE, write_json
from metarl_jax.io.training_loop import train_phase
from metarl_jax.sim2real import load_policy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dr") / "run"
    assert cli(dr_pendulum.NAME, dr_pendulum.main, dr_pendulum.Config, dr_pendulum.PRESETS,
               argv=["--preset", "quick", "--seed", "3", "--out", str(out)]) == 0
    return out


def _observations(run, n=6):
    size = run["dr"].learner.env.observation_size
    return np.random.default_rng(0).normal(size=(n, size)).astype(np.float32) * 2


def test_load_run_acts_like_the_exported_policy_files(quick_run):
    run = metarl_jax.load_run(quick_run)
    assert (run.name, run.preset, run.seed, run.finished) == ("dr_pendulum", "quick", 3, True)
    assert set(run.policies) == {"nominal", "dr"} and run.missing == ()
    assert run.config == dr_pendulum.PRESETS["quick"]
    obs = _observations(run)
    for phase, trained in run.policies.items():
        assert trained.complete and trained.num_seeds == 1
        assert trained.update == dr_pendulum.PRESETS["quick"].ppo.num_updates
        exported = load_policy(quick_run / "policies" / phase)
        assert exported.spec["metadata"]["phase"] == phase
        actions = trained.act(obs)
        assert actions.shape == (len(obs), 1) and isinstance(actions, np.ndarray)
        np.testing.assert_allclose(actions, exported.act(obs), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(trained(obs[0]), exported(obs[0]), rtol=1e-5, atol=1e-5)
        # The same function the experiment evaluated: the learner's deterministic policy. Two
        # compiled float32 programs: equal up to rounding (~1e-7 absolute on outputs of ~0.1-1;
        # rtol alone failed on an action of 0.04 off by 4.5e-8).
        jax_act = trained.policy(seed=0)(jax.random.PRNGKey(1), jnp.asarray(obs))
        np.testing.assert_allclose(actions, np.asarray(jax_act), rtol=1e-6, atol=1e-7)
    assert not np.allclose(run["dr"].act(obs), run["nominal"].act(obs))
    with pytest.raises(KeyError, match="no trained phase 'epopt'"):
        run["epopt"]
    with pytest.raises(IndexError):
        run["dr"].act(obs, seed=1)


def test_load_run_of_an_unfinished_run_uses_its_last_checkpoint(quick_run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(quick_run, copy)
    (copy / "summary.json").unlink()
    steps = sorted(int(p.name) for p in (copy / CHECKPOINT_DIR / "dr").iterdir()
                   if p.name.isdigit())
    shutil.rmtree(copy / CHECKPOINT_DIR / "dr" / str(steps[-1]))  # "killed" before the end
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    run = metarl_jax.load_run(copy)
    assert not run.finished and run["dr"].update == steps[-2] and not run["dr"].complete
    assert run["nominal"].complete
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before  # read only
    shutil.rmtree(copy / CHECKPOINT_DIR / "dr")
    run = metarl_jax.load_run(copy)
    assert set(run.policies) == {"nominal"} and run.missing == ("dr",)


@pytest.mark.parametrize("name", ["dr_pendulum", "robust_dr", "uposi", "sim2real_cheetah"])
def test_every_ppo_experiment_says_how_to_rebuild_its_policies(name):
    """``policies(config)`` builds each phase's learner and the state shapes load_run restores
    into (no training: the round trip itself is tested on dr_pendulum above)."""
    import importlib

    module = importlib.import_module(f"experiments.{name}")
    config = module.PRESETS["quick"]
    keys = jax.random.split(jax.random.PRNGKey(0), config.num_seeds)
    for phase, (learner, learner_config, init_args) in module.policies(config).items():
        assert learner_config == config.ppo and hasattr(learner, "make_policy")
        like = jax.eval_shape(lambda: learner.init_seeds(keys, learner_config, *init_args))
        assert jax.tree.leaves(like)[0].shape[0] == config.num_seeds


def test_load_run_refuses_what_it_cannot_rebuild(tmp_path):
    with pytest.raises(RunLoadError, match="not a readable run folder"):
        metarl_jax.load_run(tmp_path)
    write_json(tmp_path / "config.json", {"name": "maml_sinusoid", "seed": 0, "config": {}})
    with pytest.raises(RunLoadError, match="no policies\\(config\\) function"):
        metarl_jax.load_run(tmp_path)


def test_a_real_run_writes_tensorboard_files_and_readable_results(quick_run):
    from tests.test_tensorboard import scalars

    tags = scalars(quick_run)
    lines = [line for line in read_metrics(quick_run / METRICS_FILE) if line["phase"] == "dr"]
    assert tags["dr/episode_return"] == [(line["step"], pytest.approx(line["episode_return"]))
                                         for line in lines]
    for name in ("config.json", "summary.json", METRICS_FILE, "policies/dr.npz"):
        assert stat.S_IMODE((quick_run / name).stat().st_mode) & 0o044 == 0o044, name


def test_several_seeds_log_per_seed_returns_and_progress_fn_sees_every_chunk(tmp_path):
    """A toy phase: 3 seeds, metric ``episode_return[s] = 10 s + update``."""
    def chunk(state, n):
        updates = state["n"][:, None] + jnp.arange(1, n + 1)  # [S, n]
        return {"n": updates[:, -1]}, {"episode_return": 10.0 * jnp.arange(3)[:, None] + updates,
                                       "loss": updates * 0.0}

    calls = []
    train_phase(tmp_path, "toy", init=lambda: {"n": jnp.zeros(3)}, chunk=chunk, num_updates=6,
                updates_per_chunk=2, steps_per_update=100,
                progress_fn=lambda step, metrics: calls.append((step, metrics)))
    lines = read_metrics(tmp_path / METRICS_FILE)
    assert [line["episode_return_per_seed"] for line in lines[:2]] == [[1, 11, 21], [2, 12, 22]]
    assert lines[0]["episode_return"] == 11.0 and "loss_per_seed" not in lines[0]
    assert [step for step, _ in calls] == [200, 400, 600]
    assert calls[-1][1]["phase"] == "toy" and calls[-1][1]["update"] == 6
    assert calls[-1][1]["episode_return"] == 16.0
