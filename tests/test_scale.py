"""Training over 4 forced host devices equals the single-device run (``metarl_jax.scale``):
dr_pendulum through ``--devices`` (and resumed), SAC, RL², MAML-RL.

``--xla_force_host_platform_device_count`` only acts before JAX starts, so the runs happen in one
subprocess (``tests/scale_worker.py``) that prints its findings as one JSON line. In-process
tests here check the layouts (which leaves split, along which axis) without compiling.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from metarl_jax.xla_flags import with_defaults
from tests.conftest import FAST_COMPILE_FLAGS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
STATE_ATOL = 1e-5  # float32 reduction order differs across devices; nothing else may
METRICS_RTOL = 1e-5  # |a - b| / (1 + |a|), per metric


@pytest.fixture(scope="module")
def sharded_run(tmp_path_factory):
    import jax  # conftest has set the suite's persistent compilation cache; the worker shares it

    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_PYTHON_CLIENT_PREALLOCATE="false",
               JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1",
               XLA_FLAGS=with_defaults(os.environ.get("XLA_FLAGS", ""),
                                       (*FAST_COMPILE_FLAGS,
                                        "--xla_force_host_platform_device_count=4")))
    root = tmp_path_factory.mktemp("scale")
    proc = subprocess.run([sys.executable, "-m", "tests.scale_worker", str(root)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_dr_pendulum_on_four_devices_equals_one_device_and_resumes(sharded_run):
    """``--devices 4`` splits the one seed's 8 envs 2 per device. The exported policies agree to
    float reduction order: weights within 1e-5 (6e-8 observed on the 2-core CPU, against 0.64
    between the two phases' weights after 4 updates), observation statistics (means over the
    batch, reduced in another order) within 1e-4 relative (7e-6 observed); ``load_run`` reads
    the 4-device checkpoints back on one device. Resuming the 4-device run from its
    next-to-last checkpoint reproduces it bit for bit."""
    run = sharded_run["dr_pendulum"]
    assert sharded_run["devices"] == 4
    assert run["devices"] == [1, 4, 4]  # the summaries say how many devices trained
    assert run["phases_apart"] > 1e-2  # training moved the parameters: a difference to compare
    assert run["weights_diff"] <= STATE_ATOL, run
    assert run["obs_stats_rel_diff"] <= 1e-4, run
    assert run["loaded_params_diff"] <= STATE_ATOL, run  # load_run reads a 4-device run
    assert run["heldout_diff"] <= 1e-3, run
    assert run["resumed_from"] == 2
    assert run["resumed_params_equal"] and run["resumed_metrics_equal"], run


def test_sac_with_envs_buffer_and_batches_split_equals_one_device(sharded_run):
    run = sharded_run["sac"]
    assert run["grad_steps"] >= 3 and run["moved"] > 1e-3  # gradient steps ran in both chunks
    assert run["split"], "env state / obs / replay storage not split [N/4] over 4 devices"
    assert run["replicated"], "params / targets / optimizer / key / buffer counters not replicated"
    assert run["traces"] == 1 and run["init_compiles"] == 1
    assert run["state_diff"] <= STATE_ATOL, run
    assert run["metrics_rel_diff"] <= METRICS_RTOL, run


def test_rl2_with_its_envs_split_over_four_devices_equals_one_device(sharded_run):
    run = sharded_run["rl2"]
    assert run["moved"] > 1e-4 and run["traces"] == 1 and run["init_compiles"] == 1
    assert run["carry_sharded"] and run["rest_replicated"]
    assert run["state_diff"] <= STATE_ATOL, run
    assert run["metrics_rel_diff"] <= METRICS_RTOL, run


def test_maml_rl_with_its_tasks_split_over_four_devices_equals_one_device(sharded_run):
    """TRPO's outer step solves with the Fisher by conjugate gradient, which amplifies float32
    reduction-order differences (~1e-7) in the task mean: observed 5e-3 of the parameters'
    movement after two meta-iterations (2e-3 absolute) with the worker's unoptimized codegen
    (``FAST_COMPILE_FLAGS``; 9e-4 with XLA's default optimizations), on the 2-core CPU.
    A bug (one of the 4 tasks dropped or counted twice, a wrong mean) changes the meta-gradient
    by ~25%, hence the parameters by the order of their movement."""
    run = sharded_run["maml"]
    assert run["moved"] > 1e-2 and run["traces"] == 1 and run["init_compiles"] == 1
    assert run["state_diff"] <= 1e-2 * run["moved"], run
    assert run["metrics_rel_diff"] <= 1e-2, run


def test_indivisible_env_batch_is_a_clear_error(sharded_run):
    assert sharded_run["indivisible_error"] == (
        "num_envs = 6 is not divisible by the 4 devices on mesh axis 'data'")


def test_mesh_and_sharding_spec_in_process():
    """No compile: the mesh checks its size, and the spec splits exactly env_state and obs."""
    import jax
    from jax.sharding import PartitionSpec as P

    from envs.pendulum import Pendulum
    from metarl_jax.algos.ppo import PPO, PPOConfig
    from metarl_jax.randomization.param_space import fixed_space
    from metarl_jax.scale import check_divisible, data_mesh, ppo_state_sharding

    with pytest.raises(ValueError, match="num_devices must be in"):
        data_mesh(jax.local_device_count() + 1)
    mesh = data_mesh(1)
    check_divisible(7, mesh)  # one device takes any batch
    env = Pendulum()
    config = PPOConfig(num_envs=4, num_steps=8, total_steps=32, hidden_sizes=(8,))
    shapes = jax.eval_shape(lambda k: PPO(env)._init(k, config, fixed_space(env.default_params())),
                            jax.random.PRNGKey(0))
    spec = ppo_state_sharding(shapes, mesh)
    split = jax.tree.leaves((spec.env_state, spec.obs))
    rest = jax.tree.leaves(spec.replace(env_state=None, obs=None))
    assert split and all(s.spec == P("data") for s in split)
    assert rest and all(s.spec == P() for s in rest)
    assert len(split) + len(rest) == len(jax.tree.leaves(shapes))


def test_seeds_split_when_they_divide_else_each_seeds_envs_in_process():
    """No compile (an abstract 4-device mesh): ``S`` seeds go whole to the devices when 4
    divides ``S``, else each seed's envs split ``[S, N/4]``; SAC also splits its replay storage
    and keeps the buffer's counters replicated; neither splitting is a clear error."""
    import jax
    from jax.sharding import AbstractMesh
    from jax.sharding import PartitionSpec as P

    from envs.pendulum import Pendulum
    from metarl_jax.algos.ppo import PPO, PPOConfig
    from metarl_jax.algos.sac import SAC, SACConfig
    from metarl_jax.randomization.param_space import fixed_space
    from metarl_jax.scale import ShardedPPO, ShardedSAC

    env = Pendulum()
    space = fixed_space(env.default_params())
    mesh = AbstractMesh((4,), ("data",))
    ppo = PPO(env)
    sppo = ShardedPPO(ppo, mesh)
    assert sppo.seed_split(8, 6) == "seeds" and sppo.seed_split(2, 8) == "envs"
    with pytest.raises(ValueError, match="neither 2 seeds nor a batch of 6 is divisible by the 4"):
        sppo.seed_split(2, 6)
    config = PPOConfig(num_envs=8, num_steps=8, total_steps=64, hidden_sizes=(8,))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    stacked = jax.eval_shape(jax.vmap(lambda k: ppo._init(k, config, space)), keys)
    spec = sppo.seeds_sharding(stacked)
    assert all(s.spec == P(None, "data") for s in jax.tree.leaves((spec.env_state, spec.obs)))
    assert all(s.spec == P() for s in jax.tree.leaves(spec.replace(env_state=None, obs=None)))
    four = jax.eval_shape(jax.vmap(lambda k: ppo._init(k, config, space)),
                          jax.random.split(jax.random.PRNGKey(0), 4))
    assert all(s.spec == P("data") for s in jax.tree.leaves(sppo.seeds_sharding(four)))

    sac = SAC(env)
    ssac = ShardedSAC(sac, mesh)
    scfg = SACConfig(num_envs=8, batch_size=16, buffer_size=64, hidden_sizes=(8,))
    shapes = jax.eval_shape(lambda k: sac._init(k, scfg, space), keys[0])
    spec = ssac.state_sharding(shapes)
    split = jax.tree.leaves((spec.env_state, spec.obs, spec.buffer.data))
    assert split and all(s.spec == P("data") for s in split)
    assert spec.buffer.position.spec == P() and spec.buffer.size.spec == P()
    with pytest.raises(ValueError, match="SACConfig.buffer_size = 66 is not divisible by the 4"):
        ssac.check_config(scfg.replace(buffer_size=66))


def test_devices_flag_and_run_mesh_in_process():
    """``--devices`` parses to an int or ``"all"``; ``run_mesh`` gives None (the plain run) for
    one device and refuses more devices than there are."""
    import jax

    from metarl_jax.io.cli import parse_args
    from metarl_jax.io.config import ConfigError
    from metarl_jax.scale import run_mesh
    from tests.toy_experiment import PRESETS, Config

    assert parse_args(Config, PRESETS, ["--devices", "4"], environ={}).devices == 4
    assert parse_args(Config, PRESETS, ["--devices", "all"], environ={}).devices == "all"
    assert parse_args(Config, PRESETS, [], environ={}).devices is None
    resumed = parse_args(Config, PRESETS, ["--resume", "r", "--devices", "2"], environ={})
    assert not resumed.changes_config  # a resume may move to another device count
    with pytest.raises(ConfigError, match="--devices must be >= 1, got 0"):
        parse_args(Config, PRESETS, ["--devices", "0"], environ={})
    with pytest.raises(ConfigError, match="--devices expects a number of devices or 'all'"):
        parse_args(Config, PRESETS, ["--devices", "four"], environ={})
    n = jax.local_device_count()
    assert run_mesh(None) is None and run_mesh(1) is None
    assert (run_mesh("all") is None) == (n == 1)
    with pytest.raises(ValueError, match="num_devices must be in"):
        run_mesh(n + 1)


# Experiments whose learners all have a sharded wrapper (or whose PPO phases do): ``main`` is
# marked ``@supports_devices`` and trains on ``run_mesh(args.devices)``; every other experiment
# refuses ``--devices N``. ``(module, the name main hands the mesh to)``.
WIRED = {"dr_pendulum": "train_ppo_phases", "sim2real_cheetah": "train_ppo_phases",
         "uposi": "train_ppo_phases", "calibrate_cheetah": "train_ppo_phases",
         "maml_nav2d": "train_meta_phases", "rl2_nav": "train_rl2_phase",
         "rl2_mdp": "train_rl2_phase", "rl2_bandits": "sharded", "maxent_multigoal": "sharded",
         "maml_cheetah": "train_meta_phases", "maml_ant": "train_meta_phases"}
# Checked for the mark only (each builds an MJX model, ~15 s; calibrate_cheetah also fits its
# simulator first); they train through the same shared paths as the others.
MJX_WIRED = {"calibrate_cheetah", "sim2real_cheetah", "maml_cheetah", "maml_ant"}


class _Reached(Exception):
    """Raised by a spy where an experiment hands its mesh to the training path."""


# One experiment per training path: uposi trains through train_ppo_phases as dr_pendulum does,
# rl2_mdp through train_rl2_phase as rl2_nav (both checked for the mark below).
@pytest.mark.parametrize("name", ["dr_pendulum", "maml_nav2d", "rl2_nav", "rl2_bandits",
                                  "maxent_multigoal"])
def test_devices_reaches_each_wired_experiments_training_path_in_process(name, tmp_path,
                                                                         monkeypatch):
    """No compile: ``--devices 4`` gets through ``cli`` and the mesh ``run_mesh(4)`` is what the
    experiment's training path (the PPO / meta / RL² phases, or ``sharded``) receives; the spy
    stops the run there. (``MJX_WIRED`` build MJX models, 15 s each here; they train through
    the same shared paths, and their ``main`` is checked for the mark below.) dr_pendulum runs
    the PPO path on 4 devices in the worker; ``test_shared_paths_wrap_...`` checks the meta and
    RL² paths wrap."""
    import importlib

    from metarl_jax.io.cli import cli

    module = importlib.import_module(f"experiments.{name}")
    mesh = object()
    asked = []
    monkeypatch.setattr(module, "run_mesh", lambda devices: asked.append(devices) or mesh)

    def spy(*args, **kwargs):
        raise _Reached(kwargs.get("mesh", args[-1]))

    monkeypatch.setattr(module, WIRED[name], spy)
    with pytest.raises(_Reached) as reached:
        cli(module.NAME, module.main, module.Config, module.PRESETS,
            argv=["--preset", "quick", "--out", str(tmp_path / "run"), "--devices", "4"])
    assert asked == [4] and reached.value.args[0] is mesh


def test_every_other_experiment_refuses_devices_in_process(tmp_path, capsys):
    """An experiment not marked ``@supports_devices`` stops on ``--devices 2`` (exit status 2,
    the experiment named, nothing run or written) instead of training on one device."""
    import importlib

    from experiments.__main__ import available
    from metarl_jax.io.cli import cli

    marked = {n for n in available()
              if getattr(importlib.import_module(f"experiments.{n}").main, "supports_devices",
                         False)}
    assert marked == set(WIRED)
    diayn = importlib.import_module("experiments.diayn")
    with pytest.raises(SystemExit) as stop:
        cli(diayn.NAME, diayn.main, diayn.Config, diayn.PRESETS,
            argv=["--preset", "quick", "--out", str(tmp_path / "run"), "--devices", "2"])
    assert stop.value.code == 2 and not (tmp_path / "run").exists()
    assert ("diayn trains on one device only: --devices 2 is not supported"
            in capsys.readouterr().err)


def test_shared_paths_wrap_their_learners_for_the_mesh_in_process(monkeypatch):
    """No compile: ``train_meta_phases`` / ``train_rl2_phase`` / ``train_ppo_phases`` train
    ``sharded(learner, mesh)`` (``sharded_all``: one wrapper per distinct learner, so phases
    sharing a learner share its compiled programs)."""
    from types import SimpleNamespace

    from metarl_jax.io.load import Phase
    from metarl_jax.scale import mesh as mesh_module
    from metarl_jax.transfer import few_shot, phases, trials

    mesh, seen = object(), []

    def spy(learner, m):
        seen.append((learner, m))
        return SimpleNamespace(wraps=learner, env=SimpleNamespace(max_steps=1))

    monkeypatch.setattr(mesh_module, "sharded", spy)
    monkeypatch.setattr(trials, "sharded", spy)
    wrapped = mesh_module.sharded_all(["a", "b", "a"], mesh)
    assert [w.wraps for w in wrapped] == ["a", "b", "a"] and wrapped[0] is wrapped[2]
    assert seen == [("a", mesh), ("b", mesh)]

    def train_phase(run_dir, phase, init, chunk, **kwargs):
        raise _Reached(seen[-1])

    for module in (few_shot, phases, trials):
        monkeypatch.setattr(module, "train_phase", train_phase)
    keys, cfg = np.zeros((1, 2)), SimpleNamespace(num_inner_steps=1, meta_batch_size=1,
                                                  episodes_per_task=1, num_updates=1,
                                                  batch_size=1)
    for train, learner in (
            (lambda: trials.train_rl2_phase("run", "rl2", cfg, None, keys, 1, mesh=mesh), "rl2"),
            (lambda: few_shot.train_meta_phases(
                "run", {"m": Phase("maml", cfg, (), num_updates=1)}, None, 1, mesh=mesh), "maml"),
            (lambda: phases.train_ppo_phases("run", {"p": ("ppo", None)}, cfg, keys, 1,
                                             mesh=mesh), "ppo")):
        with pytest.raises(_Reached) as reached:
            train()
        assert reached.value.args[0] == (learner, mesh)
