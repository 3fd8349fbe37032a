"""The optional Weights & Biases mirror (``io.wandb_log``), against a fake ``wandb`` module:
off by default, opt-in by environment variable, one W&B run per run folder (stable id across
resumes), tags and x-axes like TensorBoard's, a warning (not a crash) when wandb is missing."""

import sys
import types

import pytest

from metarl_jax.io import wandb_log
from metarl_jax.io.metrics import MetricsLog


class FakeRun:
    def __init__(self, **kwargs):
        self.init_kwargs, self.logged, self.defined, self.finished = kwargs, [], [], False

    def define_metric(self, name, step_metric=None):
        self.defined.append((name, step_metric))

    def log(self, data):
        self.logged.append(dict(data))

    def finish(self):
        self.finished = True


@pytest.fixture
def fake_wandb(monkeypatch):
    module = types.ModuleType("wandb")
    module.runs = []

    def init(**kwargs):
        module.runs.append(FakeRun(**kwargs))
        return module.runs[-1]

    module.init = init
    monkeypatch.setitem(sys.modules, "wandb", module)
    monkeypatch.setenv("METARL_JAX_TENSORBOARD", "0")
    return module


def test_off_by_default(fake_wandb, tmp_path, monkeypatch):
    monkeypatch.delenv(wandb_log.ENV_VAR, raising=False)
    with MetricsLog(tmp_path / "metrics.jsonl") as log:
        log.log(10, {"loss": 1.0}, phase="dr")
    assert fake_wandb.runs == []


def test_lines_are_mirrored_per_phase_with_a_stable_run_id(fake_wandb, tmp_path, monkeypatch):
    monkeypatch.setenv(wandb_log.ENV_VAR, "my-project")
    run_dir = tmp_path / "runs" / "dr_pendulum" / "20260101-000000"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text('{"name": "dr_pendulum", "seed": 3}')
    with MetricsLog(run_dir / "metrics.jsonl") as log:
        log.log(100, {"episode_return": -500.0, "per_seed": [1.0, 2.0], "bad": float("nan")},
                phase="dr")
        log.log(200, {"episode_return": -400.0}, phase="dr")
    run = fake_wandb.runs[0]
    assert run.init_kwargs["project"] == "my-project"
    assert run.init_kwargs["resume"] == "allow"
    assert run.init_kwargs["config"] == {"name": "dr_pendulum", "seed": 3}
    assert run.init_kwargs["name"] == "dr_pendulum/20260101-000000"
    assert run.logged[0] == {"dr/step": 100, "dr/episode_return": -500.0,
                             "dr/per_seed/0": 1.0, "dr/per_seed/1": 2.0}  # NaN (null) skipped
    assert run.logged[1] == {"dr/step": 200, "dr/episode_return": -400.0}
    assert ("dr/*", "dr/step") in run.defined and run.finished
    with MetricsLog(run_dir / "metrics.jsonl") as log:  # a resume: the same W&B run
        log.log(300, {"episode_return": -300.0}, phase="dr")
    assert fake_wandb.runs[1].init_kwargs["id"] == run.init_kwargs["id"]
    other = tmp_path / "other"
    other.mkdir()
    assert wandb_log.run_id(other) != run.init_kwargs["id"]


def test_enabled_without_wandb_warns_once_and_logs_locally(tmp_path, monkeypatch):
    monkeypatch.setenv(wandb_log.ENV_VAR, "1")
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb -> ImportError
    monkeypatch.setattr(wandb_log, "_warned", [])
    with pytest.warns(UserWarning, match="wandb cannot be imported"):
        assert wandb_log.open_wandb_log(tmp_path) is None
    assert wandb_log.project("1") == wandb_log.DEFAULT_PROJECT
    assert wandb_log.project("off") is None
