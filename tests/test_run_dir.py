"""Tests for metarl_jax.io.run_dir: run folders, resume checks and atomic JSON files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from metarl_jax.io import (
    CHECKPOINT_DIR,
    METRICS_FILE,
    ResumeError,
    RunDirError,
    create_run_dir,
    open_for_resume,
    read_json,
    to_jsonable,
    write_json,
)
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import LOCK_FILE, RunDirBusy, lock_run_dir, unlock_run_dirs


def test_file_names_are_the_ones_the_readme_promises():
    assert (METRICS_FILE, CHECKPOINT_DIR) == ("metrics.jsonl", "checkpoints")


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
    (run / CHECKPOINT_DIR / "3.orbax-checkpoint-tmp").mkdir(parents=True)  # interrupted save
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        open_for_resume(run)
    (run / CHECKPOINT_DIR / "train" / "4.orbax-checkpoint-tmp" / "7").mkdir(parents=True)
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        open_for_resume(run)
    (run / CHECKPOINT_DIR / "train" / "2").mkdir()  # one Checkpointer per phase
    assert open_for_resume(run) == run
    other = tmp_path / "other"
    (other / CHECKPOINT_DIR / "5").mkdir(parents=True)
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
    found = []  # asked to, to_jsonable turns them into null and names where they were
    assert to_jsonable({"loss": jnp.array([1.0, jnp.inf]), "x": float("nan")},
                       nonfinite=found) == {"loss": [1.0, None], "x": None}
    assert found == ["$['loss'][1]", "$['x']"]
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
# One writer per run folder; damaged run files on --resume (with tests.toy_experiment)

ROOT = Path(__file__).resolve().parent.parent


def _toy_cli(*argv):
    from metarl_jax.io.cli import cli
    from tests import toy_experiment

    return cli(toy_experiment.NAME, toy_experiment.main, toy_experiment.Config,
               toy_experiment.PRESETS, argv=list(argv))


def _files(run: Path) -> dict:
    return {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != LOCK_FILE}


def _wait_for(path: Path, proc):
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)


def test_a_run_folder_has_one_writer_and_a_killed_owner_releases_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom metarl_jax.io.run_dir import lock_run_dir\n"
                               "lock_run_dir(sys.argv[1]); print('locked', flush=True)\n"
                               "time.sleep(600)", str(run)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RunDirBusy, match=f"in use by process {holder.pid}"):
            lock_run_dir(run)
        with pytest.raises(RunDirBusy):  # a second process given the same --out
            create_run_dir("x", run)
    finally:
        holder.kill()
        holder.communicate()
    try:
        lock_run_dir(run)  # the OS released the SIGKILLed owner's lock: never stale
        assert (run / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    finally:
        unlock_run_dirs()


def test_resume_of_a_live_run_is_refused_and_leaves_it_untouched(tmp_path, capsys):
    reference = tmp_path / "reference"
    assert _toy_cli("--out", str(reference)) == 0
    run = tmp_path / "run"
    live = subprocess.Popen([sys.executable, "-m", "tests.toy_experiment", "--out", str(run)],
                            cwd=ROOT, env=dict(os.environ, TOY_HOLD="a:4:release"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(run / "held", live)
    _wait_for(run / CHECKPOINT_DIR / "a" / "2", live)  # then it writes nothing until released
    before = _files(run)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        _toy_cli("--resume", str(run))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert f"is in use by process {live.pid}" in err and len(err.splitlines()) == 1
    assert _files(run) == before
    (run / "held").unlink()  # let the live run finish
    _, stderr = live.communicate(timeout=120)
    assert live.returncode == 0, stderr
    assert read_metrics(run / METRICS_FILE) == read_metrics(reference / METRICS_FILE)
    assert read_json(run / "summary.json")["results"] == \
        read_json(reference / "summary.json")["results"]


@pytest.mark.parametrize("damage, message", [
    (lambda run: (run / "config.json").write_text("{not json"), "config.json is not valid JSON"),
    (lambda run: (run / "config.json").write_text("[1, 2]"), "holds a JSON list"),
    (lambda run: (run / METRICS_FILE).write_text(
        (run / METRICS_FILE).read_text().replace("\n", "\n{garbage\n", 1)),
     "metrics.jsonl:2: malformed metrics line"),
])
def test_damaged_run_files_on_resume_exit_1_with_one_line(tmp_path, capsys, damage, message):
    run = tmp_path / "run"
    assert _toy_cli("--out", str(run)) == 0
    (run / "summary.json").unlink()
    damage(run)
    before = _files(run)
    capsys.readouterr()
    assert _toy_cli("--resume", str(run)) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert _files(run) == before
