"""Tests for metarl_jax.io: CLI/config, run folders, metrics, progress, checkpoints, plots."""

from __future__ import annotations

import dataclasses
import gc
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from metarl_jax.io import (
    CheckpointError,
    Checkpointer,
    ConfigError,
    MetricsLog,
    Progress,
    ResumeError,
    RunDirError,
    config_from_dict,
    config_to_dict,
    create_run_dir,
    format_table,
    open_for_resume,
    parse_args,
    plot_curves,
    plot_heatmaps,
    read_json,
    read_metrics,
    run_cli,
    truncate_metrics,
    write_json,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------------
# Config and command line


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    learning_rate: float = 3e-4
    epochs: int = 4
    clip: float = 0.2


@dataclasses.dataclass(frozen=True)
class ExpConfig:
    ppo: PPOConfig = PPOConfig()
    num_envs: int = 8
    total_steps: int = 100_000
    hidden: tuple[int, ...] = (64, 64)
    mass_range: tuple[float, float] = (0.5, 1.5)
    normalize_obs: bool = True
    env_name: str = "pendulum"
    eval_every: int | None = None

    def __post_init__(self):
        if self.num_envs <= 0:
            raise ValueError(f"num_envs must be positive, got {self.num_envs}")


PRESETS = {
    "quick": ExpConfig(num_envs=2, total_steps=1_000),
    "cpu": ExpConfig(),
    "accel": ExpConfig(num_envs=4096, total_steps=50_000_000),
}


def test_parse_args_applies_typed_and_nested_overrides():
    args = parse_args(ExpConfig, PRESETS, [
        "--preset", "quick", "--seed", "7", "--out", "some/dir",
        "ppo.learning_rate=1e-3", "ppo.epochs=10", "num_envs=16", "total_steps=2e6",
        "hidden=32,32,16", "mass_range=0.8, 1.2", "normalize_obs=no", "env_name=cheetah",
        "eval_every=500",
    ])
    cfg = args.config
    assert (args.preset, args.seed, args.out, args.resume) == ("quick", 7, Path("some/dir"), None)
    assert cfg.ppo == PPOConfig(learning_rate=1e-3, epochs=10, clip=0.2)
    assert cfg.num_envs == 16 and type(cfg.num_envs) is int
    assert cfg.total_steps == 2_000_000 and type(cfg.total_steps) is int
    assert cfg.hidden == (32, 32, 16) and all(type(h) is int for h in cfg.hidden)
    assert cfg.mass_range == (0.8, 1.2)
    assert cfg.normalize_obs is False
    assert cfg.env_name == "cheetah" and cfg.eval_every == 500
    # Fields that were not overridden keep the preset's values.
    assert parse_args(ExpConfig, PRESETS, ["--preset", "accel"]).config == PRESETS["accel"]


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("1", True), ("yes", True), ("False", False), ("0", False), ("no", False),
])
def test_bool_override_spellings(text, expected):
    cfg = parse_args(ExpConfig, PRESETS, [f"normalize_obs={text}"]).config
    assert cfg.normalize_obs is expected


def test_defaults_and_resume_and_optional_none():
    args = parse_args(ExpConfig, PRESETS, ["--resume", "runs/x/1", "eval_every=none"])
    assert args.preset == "cpu" and args.seed == 0 and args.out is None
    assert args.resume == Path("runs/x/1") and args.config.eval_every is None


def test_unknown_field_suggests_closest_and_lists_valid():
    with pytest.raises(ConfigError) as e:
        parse_args(ExpConfig, PRESETS, ["ppo.learnig_rate=1e-3"])
    msg = str(e.value)
    assert "ppo.learnig_rate" in msg and "Did you mean 'ppo.learning_rate'" in msg
    assert "num_envs" in msg and "ppo.clip" in msg  # valid fields are listed


def test_unknown_option_suggests_closest():
    with pytest.raises(ConfigError, match="Did you mean '--seed'"):
        parse_args(ExpConfig, PRESETS, ["--sed", "3"])
    with pytest.raises(ConfigError, match="num_envs=VALUE"):
        parse_args(ExpConfig, PRESETS, ["--num_envs", "3"])


def test_bad_preset_lists_valid_presets():
    with pytest.raises(ConfigError) as e:
        parse_args(ExpConfig, PRESETS, ["--preset", "fast"])
    assert "fast" in str(e.value) and "quick, cpu, accel" in str(e.value)


@pytest.mark.parametrize("override, words", [
    ("num_envs=many", ["num_envs", "int", "many"]),
    ("total_steps=1.5", ["total_steps", "int", "1.5"]),
    ("ppo.clip=wide", ["ppo.clip", "float", "wide"]),
    ("normalize_obs=maybe", ["normalize_obs", "bool", "maybe"]),
    ("mass_range=1,2,3", ["mass_range", "tuple[float, float]", "1,2,3"]),
    ("hidden=64,x", ["hidden", "tuple[int, ...]", "64,x"]),
])
def test_bad_value_names_field_type_and_text(override, words):
    with pytest.raises(ConfigError) as e:
        parse_args(ExpConfig, PRESETS, [override])
    for word in words:
        assert word in str(e.value)


def test_malformed_override_group_override_and_post_init_are_config_errors():
    with pytest.raises(ConfigError, match="name=value"):
        parse_args(ExpConfig, PRESETS, ["num_envs"])
    with pytest.raises(ConfigError, match="group of fields.*ppo.epochs"):
        parse_args(ExpConfig, PRESETS, ["ppo=3"])
    with pytest.raises(ConfigError, match="num_envs must be positive"):
        parse_args(ExpConfig, PRESETS, ["num_envs=0"])


def test_run_cli_exits_2_without_traceback(capsys):
    with pytest.raises(SystemExit) as e:
        run_cli(lambda args: None, ExpConfig, PRESETS, ["ppo.lr=1"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error: unknown config field 'ppo.lr'" in err and "Traceback" not in err

    def main(args):  # usage errors raised by the experiment itself end the same way
        raise RunDirError("refusing to write into x")
    with pytest.raises(SystemExit) as e:
        run_cli(main, ExpConfig, PRESETS, [])
    assert e.value.code == 2 and "refusing to write into x" in capsys.readouterr().err
    assert run_cli(lambda args: args.config.num_envs, ExpConfig, PRESETS, ["num_envs=3"]) == 3


def test_cli_subprocess_exit_status_2():
    code = textwrap.dedent("""
        import dataclasses
        from metarl_jax.io.config import run_cli
        @dataclasses.dataclass(frozen=True)
        class C:
            lr: float = 0.1
        run_cli(lambda a: None, C, {"quick": C(), "cpu": C()})
    """)
    proc = subprocess.run([sys.executable, "-c", code, "--preset", "slow"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "unknown preset 'slow'" in proc.stderr and "Traceback" not in proc.stderr


def test_config_dict_round_trip_through_json(tmp_path):
    cfg = parse_args(ExpConfig, PRESETS, ["--preset", "accel", "ppo.clip=0.1", "hidden=8"]).config
    d = config_to_dict(cfg)
    assert d["ppo"] == {"learning_rate": 3e-4, "epochs": 4, "clip": 0.1}
    assert d["hidden"] == [8] and d["mass_range"] == [0.5, 1.5]
    write_json(tmp_path / "config.json", cfg)
    back = config_from_dict(ExpConfig, read_json(tmp_path / "config.json"))
    assert back == cfg and isinstance(back.ppo, PPOConfig) and back.hidden == (8,)


def test_config_from_dict_rejects_unknown_and_mistyped_fields():
    d = config_to_dict(ExpConfig())
    with pytest.raises(ConfigError, match="ppo.momentum"):
        config_from_dict(ExpConfig, {**d, "ppo": {**d["ppo"], "momentum": 0.9}})
    with pytest.raises(ConfigError, match="num_envs"):
        config_from_dict(ExpConfig, {**d, "num_envs": "8"})
    assert config_from_dict(ExpConfig, {"num_envs": 3}) == ExpConfig(num_envs=3)


# ----------------------------------------------------------------------------------------------
# Run folders and JSON


def test_create_run_dir_default_names_are_unique(tmp_path):
    a = create_run_dir("exp", root=tmp_path)
    b = create_run_dir("exp", root=tmp_path)
    assert a != b and a.is_dir() and b.is_dir()
    assert a.parent == tmp_path / "exp" and a.name[:8].isdigit() and a.name[8] == "-"


def test_create_run_dir_refuses_to_overwrite(tmp_path):
    out = tmp_path / "run"
    assert create_run_dir("exp", out) == out  # new folder
    assert create_run_dir("exp", out) == out  # existing but empty: fine
    (out / "config.json").write_text("{}")
    with pytest.raises(RunDirError) as e:
        create_run_dir("exp", out)
    assert "not empty" in str(e.value) and "--resume" in str(e.value)
    assert (out / "config.json").read_text() == "{}"


def test_open_for_resume_explains_what_is_missing(tmp_path):
    with pytest.raises(ResumeError, match="no such folder"):
        open_for_resume(tmp_path / "nope")
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ResumeError, match="not a run folder.*config.json"):
        open_for_resume(run)
    write_json(run / "config.json", {"a": 1})
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        open_for_resume(run)
    (run / "checkpoints" / "3.orbax-checkpoint-tmp").mkdir(parents=True)  # interrupted save
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        open_for_resume(run)
    (run / "checkpoints" / "train" / "4.orbax-checkpoint-tmp" / "7").mkdir(parents=True)
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        open_for_resume(run)
    (run / "checkpoints" / "train" / "2").mkdir()  # one Checkpointer per phase
    assert open_for_resume(run) == run
    other = tmp_path / "other"
    (other / "checkpoints" / "5").mkdir(parents=True)
    write_json(other / "config.json", {})
    assert open_for_resume(other) == other


def test_write_json_converts_arrays_and_rejects_nan_naming_the_key(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"ret": jnp.float32(1.5), "n": np.int64(3), "curve": jnp.arange(3),
                      "grid": np.ones((2, 2)), "t": (1, 2)})
    assert read_json(path) == {"ret": 1.5, "n": 3, "curve": [0, 1, 2],
                               "grid": [[1.0, 1.0], [1.0, 1.0]], "t": [1, 2]}
    before = path.read_text()
    with pytest.raises(ValueError) as e:
        write_json(path, {"eval": {"return": [1.0, float("nan")]}})
    assert "['eval']['return'][1]" in str(e.value) and "NaN" in str(e.value)
    with pytest.raises(ValueError, match="'loss'"):
        write_json(path, {"loss": jnp.array([1.0, jnp.inf])})
    # Failed writes leave the old file and no temporary files behind.
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_write_json_is_atomic(tmp_path, monkeypatch):
    import metarl_jax.io.run_dir as run_dir_module

    path = tmp_path / "summary.json"
    write_json(path, {"v": 1})
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        # The complete new text sits in a temporary file next to the target before the swap.
        assert Path(src).parent == path.parent and json.loads(Path(src).read_text()) == {"v": 2}
        assert json.loads(path.read_text()) == {"v": 1}
        replaced.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(run_dir_module.os, "replace", spy)
    write_json(path, {"v": 2})
    assert replaced == [path] and read_json(path) == {"v": 2}

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(run_dir_module.os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"v": 3})
    assert read_json(path) == {"v": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


# ----------------------------------------------------------------------------------------------
# Metrics


def test_metrics_log_read_and_truncate(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with MetricsLog(path) as log:
        for step in (100, 200, 300):
            log.log(step, {"return": jnp.float32(step / 10), "loss": np.float64(0.5)},
                    phase="train")
            assert read_metrics(path)[-1]["step"] == step  # flushed line by line
        line = log.log(50, {"return": jnp.float32(jnp.nan)}, phase="finetune")
    assert line == {"step": 50, "phase": "finetune", "return": None, "nonfinite": ["return"]}
    rows = read_metrics(path)
    assert [r["step"] for r in rows] == [100, 200, 300, 50]
    assert rows[0] == {"step": 100, "phase": "train", "return": 10.0, "loss": 0.5}
    for raw in path.read_text().splitlines():
        json.loads(raw, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))

    # Resume from the train checkpoint at step 200: later train lines and later phases go.
    dropped = truncate_metrics(path, keep=lambda r: r["phase"] == "train" and r["step"] <= 200)
    assert dropped == 2 and [r["step"] for r in read_metrics(path)] == [100, 200]
    with MetricsLog(path) as log:  # appending continues after the kept lines
        log.log(300, {"return": 31.0}, phase="train")
    assert [r["step"] for r in read_metrics(path)] == [100, 200, 300]


def test_metrics_log_torn_line_and_strict_mode(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "r": 1.0}\n{"step": 2, "r"')  # killed mid-write
    assert read_metrics(path) == [{"step": 1, "r": 1.0}]
    with pytest.warns(UserWarning, match="torn"):
        log = MetricsLog(path, nonfinite="raise")
    with pytest.raises(ValueError, match="'loss'"):
        log.log(3, {"loss": float("inf")})
    with pytest.raises(ValueError, match="clash"):
        log.log(3, {"step": 1.0})
    log.log(3, {"r": 3.0})
    log.close()
    assert read_metrics(path) == [{"step": 1, "r": 1.0}, {"step": 3, "r": 3.0}]


# ----------------------------------------------------------------------------------------------
# Progress and tables


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_content_and_throttling():
    clock, out = FakeClock(), io.StringIO()
    progress = Progress(1_000_000, "ppo", stream=out, interval=10.0, clock=clock)
    clock.t = 10.0
    progress.update(123_456, {"return": -123.4567})
    assert out.getvalue() == (
        "ppo  steps 123,456/1,000,000 (12%)  12,346 steps/s  return -123.5  ETA 1m11s\n"
    )
    clock.t = 15.0
    progress.update(200_000, {"return": -100.0})  # within the interval: held back
    assert out.getvalue().count("\n") == 1
    clock.t = 21.0
    progress.update(250_000, {"return": -90.0})
    assert out.getvalue().count("\n") == 2
    # Throughput over recent updates ((250,000 - 123,456) / 11 s), not since the start, so the
    # first chunk's compile time does not linger in steps/s and ETA.
    assert out.getvalue().splitlines()[-1] == (
        "ppo  steps 250,000/1,000,000 (25%)  11,504 steps/s  return -90.00  ETA 1m05s"
    )
    clock.t = 22.0
    progress.update(260_000)
    progress.close()  # the held-back last line is written on close
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "260,000" in lines[-1] and "\r" not in out.getvalue()


def test_progress_on_a_terminal_rewrites_one_line():
    clock, out = FakeClock(), FakeTTY()
    progress = Progress(100, "x", stream=out, clock=clock, initial_steps=50)
    clock.t = 1.0
    progress.update(60, {"return": 1.0})
    clock.t = 2.0
    progress.update(100)
    progress.close()
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and text.count("\n") == 1
    assert "10 steps/s" in text and "100/100 (100%)" in text and "done in 2s" in text


def test_format_table_aligns_columns():
    table = format_table(
        [{"method": "ppo", "return": -123.456, "seeds": 3},
         {"method": "domain_rand", "return": (12.5, 0.25), "seeds": 10}],
        columns=["method", "return", "seeds"],
    )
    lines = table.splitlines()
    assert lines[0].split() == ["method", "return", "seeds"]
    assert lines[2].startswith("ppo ") and "-123.5" in lines[2]
    assert "12.50 ± 0.2500" in lines[3]
    assert len({len(line) for line in lines}) == 1  # every line padded to the same width
    assert lines[2].endswith("    3") and lines[3].endswith("   10")  # numbers right-aligned


# ----------------------------------------------------------------------------------------------
# Checkpoints


@struct.dataclass
class TrainState:
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    typed_key: jax.Array
    step: jax.Array
    history: jax.Array
    num_updates: int = struct.field(pytree_node=False, default=0)


def make_train_state(seed: int) -> TrainState:
    key = jax.random.PRNGKey(seed)
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w": jax.random.normal(k1, (4, 3)), "b": jnp.zeros(3),
              "layers": [jax.random.normal(k2, (3,)), jnp.arange(2, dtype=jnp.int32)]}
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)
    grads = jax.tree.map(lambda p: jnp.ones_like(p) * 0.3 if p.dtype == jnp.float32
                         else jnp.zeros_like(p), params)
    _, opt_state = tx.update(grads, opt_state, params)  # non-trivial mu, nu, count
    history = jnp.array([1.0, -0.0, jnp.nan, 1e-40, jnp.inf], jnp.float32)
    return TrainState(params, opt_state, k3, jax.random.key(seed + 1), jnp.int32(seed * 7),
                      history, num_updates=5)


def assert_bitwise_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert jax.dtypes.issubdtype(y.dtype, jax.dtypes.prng_key)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()


def test_checkpoint_round_trip_is_bitwise(tmp_path):
    state = make_train_state(1)
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.latest_step() is None
        ckpt.save(10, state, {"phase": "train", "updates": np.int64(5)})
    # A fresh Checkpointer stands for a resumed process.
    with Checkpointer(tmp_path / "checkpoints") as ckpt:
        assert ckpt.latest_step() == 10
        restored, extra = ckpt.restore(None, like=make_train_state(2))
    assert extra == {"phase": "train", "updates": 5}
    assert isinstance(restored, TrainState) and restored.num_updates == 5
    assert isinstance(restored.opt_state[0], optax.ScaleByAdamState)
    assert restored.key.dtype == jnp.uint32
    assert_bitwise_equal(restored, state)
    # The restored state keeps working with optax.
    tx = optax.adam(1e-2)
    updates, _ = tx.update(jax.tree.map(jnp.ones_like, state.params), restored.opt_state,
                           restored.params)
    assert np.isfinite(np.asarray(updates["w"])).all()


def test_checkpoint_latest_step_and_max_to_keep(tmp_path):
    state = make_train_state(0)
    with Checkpointer(tmp_path / "ck", max_to_keep=2) as ckpt:
        for step in (1, 2, 3, 4):
            ckpt.save(step, state.replace(step=jnp.int32(step)), {"s": step})
        ckpt.wait()
        assert ckpt.all_steps() == [3, 4] and ckpt.latest_step() == 4
        restored, extra = ckpt.restore(3, like=state)
        assert int(restored.step) == 3 and extra == {"s": 3}
        with pytest.raises(CheckpointError, match=r"step 1 .*available steps: \[3, 4\]"):
            ckpt.restore(1, like=state)
        with pytest.raises(CheckpointError, match="already exists"):
            ckpt.save(4, state)
    assert sorted(p.name for p in (tmp_path / "ck").iterdir() if p.name.isdigit()) == ["3", "4"]


def _corrupt_by_deleting_data(step_dir: Path):
    for f in (step_dir / "state" / "d").iterdir():
        f.unlink()


def _corrupt_by_garbling_metadata(step_dir: Path):
    (step_dir / "state" / "_METADATA").write_bytes(b"\x00garbage")


def _corrupt_by_deleting_meta(step_dir: Path):
    (step_dir / "meta" / "metadata").unlink()


def _corrupt_by_removing_state(step_dir: Path):
    import shutil
    shutil.rmtree(step_dir / "state")


# A failed tensorstore read leaves orbax's other pending reads to be collected later, which
# Python reports as "Event loop is closed"; collect them here, where the warning is expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("corrupt", [_corrupt_by_deleting_data, _corrupt_by_garbling_metadata,
                                     _corrupt_by_deleting_meta, _corrupt_by_removing_state])
def test_corrupt_checkpoint_raises_checkpoint_error(tmp_path, corrupt):
    state = make_train_state(0)
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(5, state)
    corrupt(tmp_path / "ck" / "5")
    with Checkpointer(tmp_path / "ck") as ckpt:
        with pytest.raises(CheckpointError, match="checkpoint step 5"):
            ckpt.restore(5, like=state)
    gc.collect()


def test_restore_into_wrong_structure_names_the_leaves(tmp_path):
    state = make_train_state(0)
    with Checkpointer(tmp_path / "ck") as ckpt:
        ckpt.save(1, state)
        with pytest.raises(CheckpointError, match=r"/step: saved int32\[\], `like` has float32"):
            ckpt.restore(1, like=state.replace(step=jnp.float32(0)))
        with pytest.raises(CheckpointError, match=r"/history: saved float32\[5\]"):
            ckpt.restore(1, like=state.replace(history=jnp.zeros(4)))
        smaller = state.replace(params={k: v for k, v in state.params.items() if k != "b"})
        with pytest.raises(CheckpointError, match="not in `like`: /params/b"):
            ckpt.restore(1, like=smaller)


KILL_SCRIPT = """
import os, signal, sys, time
import jax.numpy as jnp
from metarl_jax.io import Checkpointer
directory = sys.argv[1]
ckpt = Checkpointer(directory)
ckpt.save(1, {"w": jnp.arange(8, dtype=jnp.float32)}, {"phase": "a"})
ckpt.wait()
ckpt.save(2, {"w": jnp.ones(48 * 2**20, jnp.float32)}, {"phase": "b"})  # ~190 MB
deadline = time.time() + 20
while not any(n.startswith("2.") for n in os.listdir(directory)) and time.time() < deadline:
    time.sleep(0.001)
print("in-flight" if not os.path.exists(os.path.join(directory, "2")) else "finished", flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_killed_save_leaves_last_complete_checkpoint(tmp_path):
    directory = tmp_path / "ck"
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(directory)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.strip() == "in-flight", proc.stdout + proc.stderr
    leftovers = [p.name for p in directory.iterdir() if p.name.startswith("2.")]
    assert leftovers, "the interrupted save should have left its temporary folder"

    with Checkpointer(directory) as ckpt:
        assert ckpt.latest_step() == 1
        state, extra = ckpt.restore(None, like={"w": jnp.zeros(8, jnp.float32)})
        assert extra == {"phase": "a"}
        np.testing.assert_array_equal(state["w"], np.arange(8, dtype=np.float32))
        assert not any(p.name.startswith("2.") for p in directory.iterdir())  # cleaned up
        ckpt.save(2, {"w": jnp.zeros(3)})  # the interrupted step can be written again
    with Checkpointer(directory) as ckpt:
        assert ckpt.all_steps() == [1, 2]


# ----------------------------------------------------------------------------------------------
# Plots


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
    x = np.linspace(0, 1e5, 20)
    curves = {"ppo": (x, np.sin(x / 1e4)), "dr": (x, np.cos(x / 1e4), 0.1 * np.ones(20))}
    p1 = plot_curves(tmp_path / "curves.png", curves, "env steps", "return", "learning curves")
    grids = {"ppo": np.arange(6.0).reshape(2, 3), "dr": np.array([[1.0, np.nan, 2], [3, 4, 5]])}
    p2 = plot_heatmaps(tmp_path / "sub" / "grid.png", grids, [0.5, 1.0, 1.5], [0.1, 0.9],
                       "mass scale", "friction", "return over physics")
    for p in (p1, p2):
        data = p.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 5_000
    with pytest.raises(ValueError, match=r"grid 'bad' has shape \(3, 2\)"):
        plot_heatmaps(tmp_path / "x.png", {"bad": np.zeros((3, 2))}, [1, 2, 3], [1, 2],
                      "x", "y", "t")
