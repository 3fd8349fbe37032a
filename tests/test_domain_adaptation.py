"""The domain-adaptation experiment end to end (quick preset, all three methods in one run
folder) and its command line.

Cost: the quick run is compile-bound, so it is sized for that: one compiled training program per
learner (DANN, DARC, PPO; DARC's target-only SAC baseline is off in the quick preset), one
evaluator per method family, one chunk (one checkpoint) per phase and small replay buffers. No
resume test: every phase is an ordinary ``train_phase`` (the contract's resume is tested with
other experiments), and it would compile every program again."""

import json

import numpy as np
import pytest

from experiments import domain_adaptation
from tests.experiment_contract import check_run_folder, run_quick

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("domain_adaptation") / "run"
    assert run_quick(domain_adaptation, out, "--seed", "0") == 0
    return out


def test_quick_preset_writes_the_contract(quick_run):
    config = domain_adaptation.PRESETS["quick"]
    lines = config.dann.num_updates // config.log_every
    phases = ("no_adaptation", "dann", "target_oracle", "source_only", "darc")
    ifs_phases = ("ifs", "no_transfer", "random_features")
    ifs_lines = config.ifs.num_updates // config.log_every
    check_run_folder(quick_run, {**{p: lines for p in phases},
                                 **{p: ifs_lines for p in ifs_phases}},
                     ("features_pca.png", "dann_accuracy.png", "darc_curves.png"))
    summary = json.loads((quick_run / "summary.json").read_text())
    results = summary["results"]
    assert set(results) == set(phases + ifs_phases)
    for name, r in results.items():
        assert len(r["per_seed"]) == (config.ifs_seeds if name in ifs_phases else config.num_seeds)
        assert r["target_return"] == pytest.approx(np.mean(r["per_seed"]))
        assert np.isfinite(r["target_return"])
        # IFS's sparse task reward can be 0 for every seed of a tiny run (a zero-width CI).
        assert r["ci95"] > 0 if name in phases else r["ci95"] >= 0
    # One compiled training program for the three DANN runs, one for both DARC runs.
    assert results["dann"]["compiles"] == 1 and results["darc"]["compiles"] == 1
    budget = config.darc.target_budget
    assert all(results[m]["target_steps"] == budget for m in ("source_only", "darc"))
    assert not config.target_only and "darc_vs_target_only" not in summary["comparisons"]
    accuracy = results["dann"]["domain_accuracy_curve"]
    assert len(accuracy) == lines and all(0.0 <= a <= 1.0 for a in accuracy)
    # Without adaptation the classifier still trains (the encoder ignores it): it separates the
    # domains (distractors and offset are plain to see), which DANN's encoder must prevent.
    assert results["no_adaptation"]["final_domain_accuracy"] > 0.75
    # IFS: one compiled PPO program for its three runs; the source's scripted skill reaches the
    # goal region; trained encoders align the new skill's states better than random ones.
    ifs = results["ifs"]
    assert ifs["compiles"] == 1 and ifs["source_demo_return"] > 0
    assert results["no_transfer"]["alpha"] == 0 and ifs["alpha"] > 0
    assert len(ifs["encoder_similarity_loss"]) == config.ifs_seeds
    assert (np.mean(ifs["new_skill_feature_distance"])
            < np.mean(results["random_features"]["new_skill_feature_distance"]))
    assert {"ifs_vs_no_transfer", "ifs_vs_random_features"} <= set(summary["comparisons"])
    for name, c in summary["comparisons"].items():
        assert c["verdict"] in ("better", "worse", "tie"), name


def test_method_flag_and_bad_config(tmp_path, capsys):
    assert domain_adaptation.cli_argv(["--method", "dann", "--preset", "quick"]) == [
        "method=dann", "--preset", "quick"]
    assert domain_adaptation.cli_argv(["--method=darc"]) == ["method=darc"]
    assert domain_adaptation.cli_argv(["--method", "ifs"]) == ["method=ifs"]
    for override, message in (("method=dtw", "method must be one of dann|darc|ifs|all"),
                              ("num_seeds=1", "num_seeds")):
        with pytest.raises(SystemExit) as exit_info:
            run_quick(domain_adaptation, tmp_path / "bad", override)
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
