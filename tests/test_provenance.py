"""Run provenance (#12 item 8, 10, 13): versions, git commit, machine and wall time in config.json
and summary.json; result files readable by others (0644); the quick preset's smoke-test note;
``metarl_jax.__version__``."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
from importlib import metadata
from pathlib import Path

import metarl_jax
from metarl_jax.io.cli import RunArgs
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.metrics import truncate_metrics
from metarl_jax.io.provenance import PACKAGES, git_state, run_environment
from metarl_jax.io.run_dir import read_json, write_json

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class TinyConfig:
    size: int = 3


def _args(tmp_path, preset):
    return RunArgs(config=TinyConfig(), preset=preset, seed=7, out=tmp_path / "run", resume=None)


def test_version_comes_from_the_installed_metadata():
    assert metarl_jax.__version__ == metadata.version("metarl_jax")


def test_run_environment_names_versions_commit_and_machine():
    env = run_environment()
    assert set(env["packages"]) == set(PACKAGES)
    assert env["packages"]["jax"] == metadata.version("jax")
    assert env["packages"]["metarl_jax"] == metarl_jax.__version__
    assert env["machine"]["jax_backend"] == "cpu" and env["machine"]["devices"]
    assert env["machine"]["cpu_count"] == os.cpu_count()
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                          text=True)
    if head.returncode == 0:  # the tests run from a git checkout
        assert env["git"]["commit"] == head.stdout.strip()
        assert isinstance(env["git"]["dirty"], bool)


def test_git_state_is_none_without_a_checkout_or_without_git(tmp_path, monkeypatch):
    assert git_state(tmp_path) is None  # no pyproject.toml: not a source checkout
    (tmp_path / "pyproject.toml").write_text("")
    assert git_state(tmp_path) is None  # not a git repository
    monkeypatch.setenv("PATH", str(tmp_path))  # no git executable at all
    assert git_state(ROOT) is None
    assert run_environment()["git"] is None


def test_config_and_summary_record_environment_and_wall_time(tmp_path, capsys):
    run_dir, config, seed = start_run("tiny", _args(tmp_path, "cpu"))
    saved = read_json(run_dir / "config.json")
    assert saved["environment"]["packages"]["jax"] == metadata.version("jax")
    assert saved["started_at"] and saved["config"] == {"size": 3}
    summary = finish(run_dir, {"results": {"x": 1.0}}, "table")
    written = read_json(run_dir / "summary.json")
    assert written == summary
    assert 0 <= written["wall_time_s"] < 60 and written["finished_at"]
    assert written["environment"]["machine"]["devices"]
    out = capsys.readouterr().out
    assert "smoke test" not in out  # only the quick preset says so


def test_a_nan_result_is_written_as_null_and_listed_not_lost(tmp_path, capsys):
    # A diverged adaptation (NaN return) must not crash the run at its last line, losing
    # everything else it measured: the value becomes null and its path is listed.
    import numpy as np

    run_dir, _, _ = start_run("tiny", _args(tmp_path, "cpu"))
    finish(run_dir, {"results": {"ok": 1.0, "curve": np.array([1.0, np.nan, np.inf]),
                                 "mean": float("nan")}}, "table")
    written = read_json(run_dir / "summary.json")
    assert written["results"] == {"ok": 1.0, "curve": [1.0, None, None], "mean": None}
    assert written["nonfinite"] == ["$['results']['curve'][1]", "$['results']['curve'][2]",
                                    "$['results']['mean']"]
    captured = capsys.readouterr()
    assert "3 result(s) are NaN or infinite" in captured.err and "table" in captured.out


def test_quick_preset_table_says_it_is_a_smoke_test(tmp_path, capsys):
    run_dir, _, _ = start_run("tiny", _args(tmp_path, "quick"))
    finish(run_dir, {"results": {}}, "policy  return\n------  ------\nx          1.0")
    lines = capsys.readouterr().out.splitlines()
    assert lines[3] == ("quick preset: a smoke test (tiny budget, barely trained policies), not "
                        "results; for meaningful numbers run: python -m experiments.tiny "
                        "--preset cpu (the README's table of experiments links its numbers)")
    assert lines[4].startswith("summary: ")


def test_result_files_are_readable_by_others(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "summary.json", {"a": 1})
        (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
        truncate_metrics(tmp_path / "metrics.jsonl", keep=lambda line: line["step"] < 2)
        os.umask(0o077)
        write_json(tmp_path / "private.json", {"a": 1})  # the umask still decides
    finally:
        os.umask(old)
    mode = lambda name: stat.S_IMODE((tmp_path / name).stat().st_mode)
    assert mode("summary.json") == 0o644 and mode("metrics.jsonl") == 0o644
    assert mode("private.json") == 0o600


def test_license_and_changelog_are_in_the_source_tree():
    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "#12" in (ROOT / "CHANGELOG.md").read_text()
