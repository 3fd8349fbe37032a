"""Two processes as one JAX job (``metarl_jax.scale.distributed``), and the suite's GPU settings.

The 2-process run starts two ``tests/distributed_worker.py`` processes on 127.0.0.1 (CPU, one
device each, gloo collectives): ``jax.distributed.initialize``, PPO with the env batch split
over both, checkpoints through orbax's multi-host save, a run stopped and resumed. The test
waits on the processes themselves (``communicate``), never on a fixed sleep.
"""

import json
import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

import pytest

from metarl_jax.io.config import ConfigError
from metarl_jax.xla_flags import with_defaults
from tests.conftest import FAST_COMPILE_FLAGS

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory):
    import jax  # conftest has set the suite's persistent compilation cache; the workers share it

    root = tmp_path_factory.mktemp("distributed")
    flags = with_defaults(" ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                                   if "force_host_platform_device_count" not in f),
                          FAST_COMPILE_FLAGS)
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_PYTHON_CLIENT_PREALLOCATE="false",
               XLA_FLAGS=flags, JAX_COMPILATION_CACHE_DIR=str(jax.config.jax_compilation_cache_dir),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="1")
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "tests.distributed_worker", str(port),
                               str(i), str(root)], cwd=ROOT, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
    outs = {}
    try:  # wait on the exits; the first failure ends the other process instead of hanging it
        with ThreadPoolExecutor(len(procs)) as pool:
            waits = {pool.submit(p.communicate, timeout=600): i for i, p in enumerate(procs)}
            for done in as_completed(waits):
                i = waits[done]
                outs[i] = done.result()
                if procs[i].returncode != 0:
                    for p in procs:
                        if p.poll() is None:
                            p.kill()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    failed = [f"process {i} exit {p.returncode}: {outs[i][1][-2000:]}"
              for i, p in enumerate(procs) if p.returncode != 0]
    assert not failed, "\n".join(failed)
    outs = [outs[i] for i in range(len(procs))]
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    return {"root": root, "results": results, "stderr": [err for _, err in outs]}


def test_both_processes_hold_identical_parameters(two_processes):
    p0, p1 = two_processes["results"]
    assert (p0["process"], p1["process"]) == (0, 1)
    assert p0["processes"] == p1["processes"] == 2 and p0["devices"] == 2
    assert p0["primary"] and not p1["primary"]
    assert p0["params_replicated"] and p1["params_replicated"]
    assert p0["params_sha256"] == p1["params_sha256"]  # bit for bit
    assert p0["traces"] == p1["traces"] == 1  # one compile, the resumed run included
    assert p0["state_donated"] and p1["state_donated"]  # donate_argnums: no second copy


def test_each_process_owns_its_slice_of_the_env_batch(two_processes):
    p0, p1 = two_processes["results"]
    assert p0["rows"] == p0["expected_rows"] == [0, 4]
    assert p1["rows"] == p1["expected_rows"] == [4, 8]
    assert p0["env_sha256"] != p1["env_sha256"]  # different envs, not two copies


def test_one_checkpoint_per_step_and_resume_is_bit_identical(two_processes):
    ckpt = two_processes["root"] / "run" / "checkpoints" / "ppo"
    assert sorted(p.name for p in ckpt.iterdir()) == ["2", "4"]  # no temporary leftovers
    # one step written by both processes together: each its own shards, one shared manifest
    state = ckpt / "4" / "state"
    assert (state / "manifest.ocdbt").is_file()
    assert sorted(p.name for p in state.glob("ocdbt.process_*")) == ["ocdbt.process_0",
                                                                    "ocdbt.process_1"]
    for r in two_processes["results"]:
        assert r["stopped"], "the first half of the resumed run did not stop at its checkpoint"
        assert r["resumed_rows"] == r["rows"]  # restored into the same split
        assert r["resumed_equal"], r


def test_only_process_zero_writes_metrics_summary_and_progress(two_processes):
    root = two_processes["root"]
    for run in ("run", "resumed"):
        lines = [json.loads(x) for x in (root / run / "metrics.jsonl").read_text().splitlines()]
        assert [x["update"] for x in lines] == [1, 2, 3, 4], run  # not one set per process
    summary = json.loads((root / "run" / "summary.json").read_text())
    assert summary["written_by"] == 0
    assert summary["params_sha256"] == two_processes["results"][0]["params_sha256"]
    assert json.loads((root / "run" / "config.json").read_text())["name"] == "distributed_ppo"
    err0, err1 = two_processes["stderr"]
    assert "ppo  steps 512/512" in err0
    assert "steps" not in err1 and "summary" not in err1 and "run folder" not in err1


# ------------------------------------------------------------------ in-process, no JAX work
def test_command_line_starts_the_job_and_one_process_state_is_refused_clearly(two_processes):
    """``--coordinator/--num-processes/--process-id`` joined the job (the processes met); a
    state local to each process is not silently checkpointed twice, nor half."""
    root = two_processes["root"]
    for r, err in zip(two_processes["results"], two_processes["stderr"]):
        assert r["cli_rc"] == 1
        assert ("cannot save checkpoint step 2 of a 2-process run: 1 arrays of the state live "
                "on one process only") in err
    assert json.loads((root / "toy" / "config.json").read_text())["name"] == "toy_experiment"
    assert not list((root / "toy" / "checkpoints" / "a").glob("[0-9]*"))


def test_an_experiment_trains_on_both_processes_through_its_command_line(two_processes):
    """dr_pendulum with ``--coordinator ...``: its env batch split over the two processes'
    devices; the job checkpoints, evaluates and finishes (exit 0 on both), process 0 alone
    writing the run folder."""
    root = two_processes["root"] / "dr"
    assert [r["dr_rc"] for r in two_processes["results"]] == [0, 0]
    summary = json.loads((root / "summary.json").read_text())
    assert summary["devices"] == 2
    assert summary["results"]["dr"]["heldout_mean"] < 0  # Pendulum returns are costs
    lines = [json.loads(x) for x in (root / "metrics.jsonl").read_text().splitlines()]
    assert [(x["phase"], x["update"]) for x in lines] == [
        (p, u) for p in ("nominal", "dr") for u in (1, 2, 3, 4)]
    assert sorted(p.name for p in (root / "checkpoints" / "dr").iterdir()) == ["2", "4"]
    assert (root / "policies" / "dr.npz").is_file() and (root / "heatmap.png").is_file()


def test_spec_from_flags_and_environment():
    from metarl_jax.io.cli import parse_args
    from metarl_jax.scale.distributed import DistributedSpec, process_slice, spec_from_env
    from tests.toy_experiment import PRESETS, Config

    env = {"METARL_JAX_COORDINATOR": "10.0.0.1:1234", "METARL_JAX_NUM_PROCESSES": "4",
           "METARL_JAX_PROCESS_ID": "3"}
    assert spec_from_env(env) == DistributedSpec("10.0.0.1:1234", 4, 3)
    assert spec_from_env({}) is None
    args = parse_args(Config, PRESETS, ["--out", "o", "--coordinator", "h:9", "--num-processes",
                                        "2", "--process-id", "1"], environ=env)
    assert args.distributed == DistributedSpec("h:9", 2, 1)  # the flags win
    assert parse_args(Config, PRESETS, ["--out", "o"], environ=env).distributed.process_id == 3
    assert parse_args(Config, PRESETS, [], environ={}).distributed is None
    with pytest.raises(ConfigError, match="needs --out DIR"):
        parse_args(Config, PRESETS, [], environ=env)
    with pytest.raises(ConfigError, match="missing: num_processes, process_id"):
        parse_args(Config, PRESETS, ["--out", "o", "--coordinator", "h:9"], environ={})
    with pytest.raises(ConfigError, match=r"process_id must be in \[0, 2\), got 2"):
        parse_args(Config, PRESETS, ["--out", "o", "--coordinator", "h:9",
                                     "--num-processes", "2", "--process-id", "2"], environ={})
    with pytest.raises(ValueError, match="coordinator must be host:port"):
        DistributedSpec("localhost", 2, 0)
    assert process_slice(8, 1, 2) == slice(4, 8) and process_slice(6, 0, 1) == slice(0, 6)
    with pytest.raises(ValueError, match="6 rows are not divisible by the 4 processes"):
        process_slice(6, 0, 4)


def test_suite_settings_fast_compiles_on_cpu_and_exact_numerics_on_gpu():
    from tests.conftest import gpu_platform, suite_settings

    env, config = suite_settings({"XLA_FLAGS": "--xla_force_host_platform_device_count=4 "
                                               "--xla_backend_optimization_level=2"}, gpu=False)
    assert env == {"XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                   "XLA_FLAGS": "--xla_force_host_platform_device_count=4 "
                                "--xla_backend_optimization_level=2 "
                                "--xla_llvm_disable_expensive_passes=true"} and config == {}
    env, config = suite_settings({"XLA_FLAGS": "--a=1"}, gpu=True)
    assert env["XLA_FLAGS"] == "--a=1 --xla_gpu_deterministic_ops=true"
    assert env["JAX_DEFAULT_MATMUL_PRECISION"] == "highest"
    assert config == {"jax_default_matmul_precision": "highest"}
    assert gpu_platform({"JAX_PLATFORMS": "cuda"}) and not gpu_platform({"JAX_PLATFORMS": "cpu"})
    assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"  # set for every subprocess


def test_processes_other_than_zero_neither_create_lock_nor_write_the_run(tmp_path, monkeypatch):
    """``start_run`` / ``finish`` as process 1 sees them (``jax.process_index`` patched)."""
    import jax

    from metarl_jax.io import experiment
    from metarl_jax.io.cli import RunArgs
    from metarl_jax.io.run_dir import unlock_run_dirs
    from tests.toy_experiment import Config

    run = tmp_path / "run"
    first = RunArgs(config=Config(num_updates=4), preset="quick", seed=3, out=run, resume=None)
    try:
        experiment.start_run("toy_experiment", first)  # process 0: creates, locks, config.json
        monkeypatch.setattr(jax, "process_index", lambda: 1)
        again = RunArgs(config=Config(), preset="quick", seed=0, out=None, resume=run)
        # no RunDirBusy although process 0 (this process) holds the folder: 1 never locks
        assert experiment.start_run("toy_experiment", again) == (run, Config(num_updates=4), 3)
        other = tmp_path / "other"
        fresh = RunArgs(config=Config(), preset="quick", seed=5, out=other, resume=None)
        assert experiment.start_run("toy_experiment", fresh) == (other, Config(), 5)
        assert not other.exists()  # created by process 0, not here
        summary = experiment.finish(run, {"x": 1.0})
        assert summary["x"] == 1.0 and not (run / "summary.json").exists()
    finally:
        unlock_run_dirs()


def test_restore_places_leaves_with_the_templates_shardings(tmp_path):
    import jax
    import jax.numpy as jnp

    from metarl_jax.io.checkpoint import Checkpointer, sharded_like

    tree = {"w": jnp.arange(4.0), "key": jax.random.key(1)}
    like = sharded_like(tree)
    assert like["w"].sharding == tree["w"].sharding  # jax.eval_shape would drop it
    assert jax.eval_shape(lambda: tree)["w"].sharding is None
    shardings = jax.tree.map(lambda x: x.sharding, tree)
    with Checkpointer(tmp_path / "c", async_save=False) as ckpt:
        ckpt.save(1, tree)
        template = {"w": jax.eval_shape(lambda: tree["w"]), "key": tree["key"]}
        for state, _ in (ckpt.restore(1, like),
                         ckpt.restore(1, template, shardings=shardings)):
            assert state["w"].sharding == tree["w"].sharding
            assert (jax.random.key_data(state["key"]) == jax.random.key_data(tree["key"])).all()
            assert (state["w"] == tree["w"]).all()
