"""Checks of the experiment contract (README) shared by experiment tests: the run folder's files,
and ``--resume`` of a run killed after a checkpoint reproducing the uninterrupted run exactly.

A run killed (SIGKILL) between two checkpoints leaves the earlier checkpoints, metrics lines
logged after the last one, and no ``summary.json``. ``resume_matches`` rebuilds exactly that from
a finished run (copy it, drop its summary, plots and latest checkpoint of every given phase) and
resumes it in process, which is much cheaper than killing a fresh process mid-run.
"""

import json
import shutil
from pathlib import Path

from metarl_jax.io.cli import cli
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import CHECKPOINT_DIR, METRICS_FILE


def run_quick(module, out: Path, *extra: str) -> int:
    return cli(module.NAME, module.main, module.Config, module.PRESETS,
               argv=["--preset", "quick", "--out", str(out), *extra])


def check_run_folder(run: Path, phase_updates: dict, pngs) -> None:
    """``config.json`` names the preset; ``metrics.jsonl`` has one line per update of every
    phase ``{phase: num_updates}``; the PNGs and a checkpoint folder per phase exist."""
    saved = json.loads((run / "config.json").read_text())
    assert saved["preset"] == "quick" and "config" in saved
    lines = read_metrics(run / METRICS_FILE)
    for phase, num_updates in phase_updates.items():
        updates = [line["update"] for line in lines if line["phase"] == phase]
        assert updates == list(range(1, num_updates + 1)), phase
        assert (run / CHECKPOINT_DIR / phase).is_dir()
    assert all(line.get("nonfinite_flags", 0) == 0 for line in lines)
    for png in pngs:
        assert (run / png).stat().st_size > 5000, png
    assert json.loads((run / "summary.json").read_text())["results"]


def _without(tree, keys):
    """``tree`` with every dict entry named in ``keys`` removed, at any depth."""
    if isinstance(tree, dict):
        return {k: _without(v, keys) for k, v in tree.items() if k not in keys}
    if isinstance(tree, list):
        return [_without(v, keys) for v in tree]
    return tree


def resume_matches(module, finished: Path, tmp_path: Path, phases, capsys,
                   wall_clock_keys=()) -> None:
    """Resume a copy of ``finished`` cut back to its previous checkpoint; the results and the
    metrics must equal the uninterrupted run's (``wall_clock_keys``, e.g. timings, excepted)."""
    run = tmp_path / "killed"
    shutil.copytree(finished, run)
    (run / "summary.json").unlink()
    for png in run.glob("*.png"):
        png.unlink()
    for phase in phases:
        steps = sorted((p for p in (run / CHECKPOINT_DIR / phase).iterdir() if p.name.isdigit()),
                       key=lambda p: int(p.name))
        assert len(steps) >= 2, f"{phase}: need two checkpoints to cut one, got {steps}"
        shutil.rmtree(steps[-1])
    capsys.readouterr()
    argv = ["--resume", str(run)]
    assert cli(module.NAME, module.main, module.Config, module.PRESETS, argv=argv) == 0
    expected = json.loads((finished / "summary.json").read_text())["results"]
    got = json.loads((run / "summary.json").read_text())["results"]
    assert _without(got, set(wall_clock_keys)) == _without(expected, set(wall_clock_keys))
    assert read_metrics(run / METRICS_FILE) == read_metrics(finished / METRICS_FILE)
    assert sorted(p.name for p in run.glob("*.png")) == sorted(p.name
                                                               for p in finished.glob("*.png"))
    capsys.readouterr()
    assert cli(module.NAME, module.main, module.Config, module.PRESETS, argv=argv) == 0
    assert "already finished" in capsys.readouterr().err
