"""The finetune_transfer experiment end to end (quick preset), its resume, and config errors."""

import json
import shutil

import numpy as np
import pytest

import metarl_jax
from experiments import finetune_transfer
from metarl_jax import stats
from metarl_jax.io.cli import cli
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import CHECKPOINT_DIR, METRICS_FILE
from tests.experiment_contract import check_run_folder, resume_matches, run_quick

pytestmark = pytest.mark.slow
QUICK = finetune_transfer.PRESETS["quick"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finetune") / "run"
    assert run_quick(finetune_transfer, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    sac_lines = QUICK.sac.num_updates // QUICK.sac_log_every
    lines = {160: 2, 480: 4}  # 80 target steps per line (SAC: 8 envs x 10 updates; PPO: 2 x 40)
    assert QUICK.budgets == tuple(lines)
    segments = {f"{m}_to_{b}": lines[b] for m in finetune_transfer.METHODS for b in QUICK.budgets}
    check_run_folder(quick_run, {"ppo_source": QUICK.ppo.num_updates, "sac_source": sac_lines,
                                 **segments}, ("finetune.png",))
    summary = json.loads((quick_run / "summary.json").read_text())
    results, threshold = summary["results"], summary["threshold"]
    assert set(results) == set(finetune_transfer.METHODS)
    budgets = ["0", *map(str, QUICK.budgets)]
    for r in results.values():
        by_budget = r["return_by_budget"]
        assert list(by_budget) == budgets
        for entry in by_budget.values():
            assert len(entry["per_seed"]) == QUICK.num_seeds
            mean, ci = stats.mean_ci95(entry["per_seed"])
            assert entry["mean"] == pytest.approx(mean) and entry["ci95"] == pytest.approx(ci)
        reached = [int(b) for b in budgets if by_budget[b]["mean"] >= threshold]
        assert r["steps_to_threshold"] == (reached[0] if reached else None)
    # The threshold is the configured fraction of the way from untrained to the best return.
    untrained = results["scratch"]["return_by_budget"]["0"]["mean"]
    best = max(e["mean"] for r in results.values() for e in r["return_by_budget"].values())
    assert summary["untrained_return"] == pytest.approx(untrained)
    assert summary["best_return"] == pytest.approx(best)
    assert threshold == pytest.approx(untrained + QUICK.threshold_fraction * (best - untrained))


def test_load_run_restores_source_and_finetuned_policies(quick_run):
    run = metarl_jax.load_run(quick_run)
    last = QUICK.budgets[-1]
    finetuned = {f"{m}_to_{last}" for m in finetune_transfer.METHODS}
    assert set(run.policies) == {"ppo_source", "sac_source"} | finetuned and run.missing == ()
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    for phase, trained in run.policies.items():
        assert trained.complete and trained.num_seeds == QUICK.num_seeds, phase
        assert trained.act(obs).shape == (4, 1)
    # Finetuning moved the pretrained actor away from its source version.
    assert not np.allclose(run[f"sac_pretrain_to_{last}"].act(obs), run["sac_source"].act(obs))


def test_resume_matches_the_uninterrupted_run(quick_run, tmp_path, capsys):
    """Killed in the last phase (the last finetuning segment, two checkpoints of two lines)."""
    last = f"sac_pretrain_to_{QUICK.budgets[-1]}"
    resume_matches(finetune_transfer, quick_run, tmp_path, [last], capsys)


def test_resume_retrains_a_finetuning_segment_that_never_saved(quick_run, tmp_path):
    """Killed before the last segment saved anything: the resumed run trains it from the
    restored previous segment and ends with the same numbers and metrics."""
    run = tmp_path / "killed"
    shutil.copytree(quick_run, run)
    (run / "summary.json").unlink()
    last = f"sac_pretrain_to_{QUICK.budgets[-1]}"
    shutil.rmtree(run / CHECKPOINT_DIR / last)
    argv = ["--resume", str(run)]
    assert cli(finetune_transfer.NAME, finetune_transfer.main, finetune_transfer.Config,
               finetune_transfer.PRESETS, argv=argv) == 0
    expected = json.loads((quick_run / "summary.json").read_text())["results"]
    assert json.loads((run / "summary.json").read_text())["results"] == expected
    assert read_metrics(run / METRICS_FILE) == read_metrics(quick_run / METRICS_FILE)


@pytest.mark.parametrize("override, message", [
    ("budgets=480,160", "strictly increasing"),
    ("budgets=100", "multiples"),
    ("num_seeds=1", "num_seeds"),
    ("env=cartpole", "env must be"),
])
def test_bad_config_exits_2(tmp_path, override, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(finetune_transfer, tmp_path / "bad", override)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
