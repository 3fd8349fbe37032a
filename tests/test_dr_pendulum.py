"""The main job end to end: quick preset, exact resume after SIGKILL / SIGTERM, bad input."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import dr_pendulum
from metarl_jax.io.cli import cli
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import CHECKPOINT_DIR, LOCK_FILE, METRICS_FILE
from metarl_jax.randomization.distributions import SpecError

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def _run_inprocess(*argv):
    return cli(dr_pendulum.NAME, dr_pendulum.main, dr_pendulum.Config, dr_pendulum.PRESETS,
               argv=list(argv))


def _spawn(*argv):
    env = dict(os.environ, PYTHONPATH=str(ROOT),
               JAX_COMPILATION_CACHE_DIR=str(ROOT / ".jax_cache"))
    return subprocess.Popen([sys.executable, "-m", "experiments.dr_pendulum", *argv], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dr") / "run"
    assert _run_inprocess("--preset", "quick", "--seed", "0", "--out", str(out)) == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    summary = json.loads((quick_run / "summary.json").read_text())
    config = dr_pendulum.PRESETS["quick"]
    num_cells = (len(config.eval_mass_scales) * len(config.eval_length_scales)
                 * len(config.eval_delays))
    for policy in ("nominal", "dr"):
        result = summary["results"][policy]
        assert result["heldout_worst"] <= result["heldout_cvar10"] <= result["heldout_mean"] < 0
        assert len(result["cell_returns"]) == num_cells
        assert min(result["cell_returns"]) == result["heldout_worst"]
    assert len(summary["grid"]["m"]) == num_cells and set(summary["grid"]["action_delay"]) == {0, 3}
    # The grid reaches outside the training range (mass scale 2.4 > 2.0).
    assert max(summary["grid"]["m"]) > config.mass_scale[1]
    lines = read_metrics(quick_run / METRICS_FILE)
    dr_updates = [line["update"] for line in lines if line["phase"] == "dr"]
    assert dr_updates == list(range(1, config.ppo.num_updates + 1))
    for png in ("heatmap.png", "curves.png"):
        assert (quick_run / png).stat().st_size > 5000
    saved = json.loads((quick_run / "config.json").read_text())
    assert saved["preset"] == "quick" and saved["config"]["ppo"]["num_envs"] == 32


def _wait_for(path: Path, proc, timeout=240):
    start = time.time()
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - start < timeout, f"{path} never appeared"
        time.sleep(0.05)


def test_sigterm_mid_run_exits_130_and_resumes_to_identical_results(quick_run, tmp_path):
    """SIGTERM at a known point (the second phase's first checkpoint): a clean exit 130 naming
    ``--resume``, then the resumed run equals the uninterrupted one. SIGKILL at random moments is
    the next test's."""
    out = tmp_path / "run"
    proc = _spawn("--preset", "quick", "--seed", "0", "--out", str(out))
    _wait_for(out / CHECKPOINT_DIR / "dr" / "4", proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "--resume" in stderr, stderr
    assert not (out / "summary.json").exists()

    resumed = _spawn("--resume", str(out))
    stdout, stderr = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, stderr
    expected = json.loads((quick_run / "summary.json").read_text())["results"]
    got = json.loads((out / "summary.json").read_text())["results"]
    assert got == expected
    assert read_metrics(out / METRICS_FILE) == read_metrics(quick_run / METRICS_FILE)

    again = _spawn("--resume", str(out))
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0 and "already finished" in stderr


def _any_exists(patterns, out: Path) -> bool:
    return any(any(out.glob(pattern)) for pattern in patterns)


def test_repeated_sigkills_at_random_moments_resume_to_identical_results(quick_run, tmp_path):
    """Kill the run with SIGKILL at moments chosen by what it has done, whatever the machine's
    load: once its folder exists (before the first checkpoint), while or just after a
    checkpoint is being saved, at the end of the first phase (the second one compiling) and in
    the middle of the second phase; resume each time, and still get the uninterrupted run's
    numbers."""
    out = tmp_path / "run"
    nominal, dr = f"{CHECKPOINT_DIR}/nominal", f"{CHECKPOINT_DIR}/dr"
    moments = [
        ["config.json"],  # running, nothing saved yet
        [f"{nominal}/8.orbax-checkpoint-tmp*", f"{nominal}/8"],  # mid-save (or just after)
        [f"{nominal}/12"],  # the first phase just ended
        [f"{dr}/8.orbax-checkpoint-tmp*", f"{dr}/8"],
    ]
    proc = _spawn("--preset", "quick", "--seed", "0", "--out", str(out))
    for patterns in moments:
        start = time.time()
        while not _any_exists(patterns, out):
            assert proc.poll() is None, proc.communicate()
            assert time.time() - start < 300, f"{patterns} never appeared"
            time.sleep(0.005)
        proc.kill()
        proc.communicate()
        proc = _spawn("--resume", str(out))
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    expected = json.loads((quick_run / "summary.json").read_text())["results"]
    assert json.loads((out / "summary.json").read_text())["results"] == expected
    assert read_metrics(out / METRICS_FILE) == read_metrics(quick_run / METRICS_FILE)


def test_ctrl_c_at_start_up_and_on_a_phases_last_chunk_exits_130_and_resumes(quick_run,
                                                                           tmp_path):
    """SIGINT while compiling ends the run at once with one line; SIGINT when the first phase's
    last checkpoint appears (the final save, or the second phase starting) stops before the
    second phase trains; both exit 130 naming the resume command, and the resumed run
    reproduces the uninterrupted one."""
    out = tmp_path / "run"
    proc = _spawn("--preset", "quick", "--seed", "0", "--out", str(out))
    for path in (out / "config.json", out / CHECKPOINT_DIR / "nominal" / "12"):
        _wait_for(path, proc)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert f"Continue with: python -m experiments.dr_pendulum --resume {out}" in \
            stderr.strip().splitlines()[-1]
        assert not any(p.name.isdigit() for p in (out / CHECKPOINT_DIR / "dr").glob("*"))
        proc = _spawn("--resume", str(out))
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    expected = json.loads((quick_run / "summary.json").read_text())["results"]
    assert json.loads((out / "summary.json").read_text())["results"] == expected
    assert read_metrics(out / METRICS_FILE) == read_metrics(quick_run / METRICS_FILE)


def test_negative_eval_masses_are_refused_alike_by_every_experiment():
    from experiments import robust_dr, sim2real_cheetah, uposi

    for module in (dr_pendulum, sim2real_cheetah, robust_dr, uposi):
        with pytest.raises(SpecError, match="eval_mass_scales are scales of a physical "
                                            "quantity and must be > 0"):
            dataclasses.replace(module.PRESETS["quick"], eval_mass_scales=(-1.0, 1.0))


@pytest.mark.parametrize("argv, message", [
    (["--bogus"], "unknown option '--bogus'"),
    (["--preset", "huge"], "unknown preset 'huge'"),
    (["mass_scal=0.5,2.0"], "mass_scale"),
    (["mass_scale=2.0,0.5"], "0 <= low <= high"),
    (["ppo.num_minibatches=7"], "not divisible"),
    (["--resume", "/nonexistent/run"], "no such folder"),
    (["eval_mass_scales=-1,1"], "eval_mass_scales are scales of a physical quantity"),
    (["eval_delays="], "eval_delays must list at least one value"),
    (["eval_delays=0,5"], "eval_delays must be <= 3"),
])
def test_bad_input_exits_2_with_a_clear_message(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_inprocess(*argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_existing_run_is_never_overwritten(quick_run, capsys):
    before = {p: p.stat().st_mtime_ns for p in quick_run.rglob("*")}
    with pytest.raises(SystemExit):
        _run_inprocess("--preset", "quick", "--out", str(quick_run))
    assert "not empty" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in quick_run.rglob("*")} == before


def test_resume_from_a_corrupt_checkpoint_fails_clearly_without_writing(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _spawn("--preset", "quick", "--out", str(out))
    _wait_for(out / CHECKPOINT_DIR / "nominal" / "4", proc)
    proc.kill()
    proc.communicate()
    for f in (out / CHECKPOINT_DIR / "nominal").rglob("*"):
        if f.is_file() and "meta" not in f.name:
            f.write_bytes(b"garbage")
    files = lambda: {p: p.read_bytes() for p in out.rglob("*")
                     if p.is_file() and p.name != LOCK_FILE}  # the lock names its owner
    before = files()
    assert _run_inprocess("--resume", str(out)) == 1
    assert "checkpoint" in capsys.readouterr().err
    assert files() == before


def test_nonfinite_training_stops_with_a_clear_message(tmp_path, capsys):
    out = tmp_path / "run"
    code = _run_inprocess("--preset", "quick", "--out", str(out), "ppo.reward_scale=1e38")
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite loss" in err and "at update 1 of phase 'nominal'" in err
    assert not (out / "summary.json").exists()


def test_resume_refuses_overrides(quick_run, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run_inprocess("--resume", str(quick_run), "ppo.learning_rate=1.0")
    assert exit_info.value.code == 2
    assert "drop the field=value overrides" in capsys.readouterr().err


def test_unknown_experiment_gets_a_suggestion(capsys):
    from experiments.__main__ import main as experiments_main

    assert experiments_main(["dr_pendulm"]) == 2
    assert "Did you mean 'dr_pendulum'?" in capsys.readouterr().err
    assert experiments_main([]) == 0
    assert "dr_pendulum" in capsys.readouterr().out
