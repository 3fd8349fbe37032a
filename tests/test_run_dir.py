"""Tests for metarl_jax.io.run_dir: run folders, resume checks and atomic JSON files."""

from __future__ import annotations

import json
import os
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
    write_json,
)


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
