"""The quick presets of ``experiments.robust_dr`` and ``experiments.uposi`` end to end."""

import json
import shutil

import numpy as np
import pytest

from experiments import robust_dr, uposi
from metarl_jax.io.cli import cli
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import CHECKPOINT_DIR, METRICS_FILE

pytestmark = pytest.mark.slow


def _run(module, *argv):
    return cli(module.NAME, module.main, module.Config, module.PRESETS, argv=list(argv))


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("robust") / "run"
    assert _run(robust_dr, "--preset", "quick", "--seed", "0", "--out", str(out)) == 0
    return out


def test_robust_dr_quick_preset_writes_the_contract(robust_run):
    summary = json.loads((robust_run / "summary.json").read_text())
    config = robust_dr.PRESETS["quick"]
    num_cells = len(config.eval_mass_scales) * len(config.eval_length_scales)
    assert set(summary["results"]) == set(robust_dr.METHODS)
    for method, result in summary["results"].items():
        assert result["heldout_worst"] <= result["heldout_cvar10"] <= result["heldout_mean"] < 0
        assert len(result["cell_returns"]) == num_cells
        curve = result["curve"]
        assert len(curve["train_return_mean"]) == config.ppo.num_updates
        cvar, mean = np.array(curve["train_return_cvar10"]), np.array(curve["train_return_mean"])
        assert np.all(cvar <= mean)
    # Every method trains through ONE compiled program (the arm is data), whatever the chunks.
    assert summary["compiles"] == {"train_chunk_seeds": 1, "init": 1}
    # ADR's ranges stay inside the DR box (its hard limits) and contain the nominal value.
    for field, (low, high) in summary["results"]["adr"]["final_ranges"].items():
        box = config.mass_scale if field == "m" else config.length_scale
        assert box[0] - 1e-6 <= low <= 1.0 <= high <= box[1] + 1e-6
    adr = summary["results"]["adr"]
    assert len(adr["reached_box_per_seed"]) == config.num_seeds
    assert all(len(r) == config.num_seeds for r in adr["final_ranges_per_seed"].values())
    # Per seed: the in-box draws' mean and CVaR10, the grid's; one seed, so no CI (yet keys).
    for result in summary["results"].values():
        over = result["over_seeds"]
        assert set(over) == set(robust_dr.SEED_METRICS)
        assert all(len(v["per_seed"]) == config.num_seeds and v["ci95"] is None
                   for v in over.values())
        assert over["inbox_cvar10"]["mean"] <= over["inbox_mean"]["mean"] < 0
        assert over["heldout_cvar10"]["mean"] == pytest.approx(
            result["per_seed"][0]["heldout_cvar10"])
    assert set(summary["vs_dr"]) == set(robust_dr.METHODS) - {"dr"}
    dr_cvar = summary["results"]["dr"]["over_seeds"]["inbox_cvar10"]["mean"]
    epopt = summary["vs_dr"]["epopt"]["inbox_cvar10"]
    assert epopt["mean"] == pytest.approx(
        summary["results"]["epopt"]["over_seeds"]["inbox_cvar10"]["mean"] - dr_cvar)
    lines = read_metrics(robust_run / METRICS_FILE)
    warmup = round(config.epopt_warmup_frac * config.ppo.num_updates)
    for arm in ("epopt", "epopt_adapt"):
        epopt = [line for line in lines if line["phase"] == arm]
        # Warm start: every episode; then exactly ceil(0.1 * 32) = 4 of the 32 episodes.
        selected = [line["selected_frac"] for line in epopt]
        assert selected == [1.0] * warmup + [4 / 32] * (len(epopt) - warmup)
    # An arm logs its own rule's metrics only (the others' run in the shared program, unused).
    assert not any(k.startswith(("selected", "epopt", "mrpo", "posterior"))
                   for line in lines if line["phase"] in ("dr", "adr") for k in line)
    assert all(line["episodes_aligned"] == 1.0 for line in lines)
    # EPOpt's source adaptation: after each round (chunk) the box is the posterior given the
    # current policy's target episodes; it shrinks round after round around the target.
    post = summary["results"]["epopt_adapt"]["posterior"]
    assert post["update"] == list(range(config.updates_per_chunk, config.ppo.num_updates + 1,
                                        config.updates_per_chunk))
    for field, box in (("m", config.mass_scale), ("l", config.length_scale)):
        widths = np.subtract(post["high"][field], post["low"][field])
        assert np.all(np.diff(np.r_[box[1] - box[0], widths]) < 0), (field, widths)
    assert post["target_in_final_box_per_seed"] == [True] * config.num_seeds
    for result in summary["results"].values():
        assert len(result["target_return"]["per_seed"]) == config.num_seeds
        assert np.isfinite(result["target_return"]["mean"])
    for png in ("curves.png", "heatmap.png"):
        assert (robust_run / png).stat().st_size > 5000


def test_robust_dr_resumes_adr_and_the_adaptation_from_checkpoints_exactly(robust_run, tmp_path):
    """Drop the last ADR and epopt_adapt checkpoints and the summary: the resumed run restores
    ADR's range state and the adapted posterior box from the mid-run checkpoints, redoes the
    last round (training and adaptation) and reproduces the same metrics and results."""
    out = tmp_path / "run"
    shutil.copytree(robust_run, out)
    (out / "summary.json").unlink()
    for arm in ("adr", "epopt_adapt"):
        folder = out / CHECKPOINT_DIR / arm
        shutil.rmtree(folder / str(max(int(p.name) for p in folder.iterdir()
                                       if p.name.isdigit())))
    assert _run(robust_dr, "--resume", str(out)) == 0
    expected = json.loads((robust_run / "summary.json").read_text())["results"]
    got = json.loads((out / "summary.json").read_text())["results"]
    assert got["adr"] == expected["adr"] and got["epopt_adapt"] == expected["epopt_adapt"]
    # Two phases redo their last chunk: adr's lines now follow epopt_adapt's in the file.
    order = lambda lines: sorted(lines, key=lambda line: (line["phase"], line["update"]))
    assert order(read_metrics(out / METRICS_FILE)) == order(read_metrics(robust_run /
                                                                          METRICS_FILE))


def test_robust_dr_compares_methods_to_dr_seed_by_seed():
    """The per-seed metrics, and the paired difference to DR with both verdicts: the paired
    one (difference's CI against 0) can call a shift that the two methods' own CIs tie."""
    grid = np.array([[-100.0, -200.0, -300.0], [-110.0, -210.0, -310.0]])  # [S=2, C=3]
    inbox = np.tile(np.arange(-1000.0, 0.0, 1.0), (2, 1))  # [S, N=1000]
    got = robust_dr.per_seed_metrics(grid, inbox)
    np.testing.assert_allclose(got["inbox_mean"], [-500.5, -500.5])
    np.testing.assert_allclose(got["inbox_cvar10"], [-950.5, -950.5])  # the 100 lowest
    np.testing.assert_allclose(got["heldout_worst"], [-300.0, -310.0])
    np.testing.assert_allclose(got["heldout_mean"], [-200.0, -210.0])
    dr = {k: np.array([-500.0, -600.0, -700.0]) for k in robust_dr.SEED_METRICS}
    shifted = {k: v + np.array([10.0, 11.0, 9.0]) for k, v in dr.items()}  # +10 on every seed
    far = {k: v + 1000.0 for k, v in dr.items()}
    vs = robust_dr.compare_to({"dr": dr, "epopt": shifted, "adr": far}, "dr")
    assert set(vs) == {"epopt", "adr"}
    cvar = vs["epopt"]["inbox_cvar10"]
    assert cvar["mean"] == pytest.approx(10.0) and cvar["per_seed"] == [10.0, 11.0, 9.0]
    assert cvar["ci95"] == pytest.approx(4.303 * 1.0 / np.sqrt(3), rel=1e-3)
    assert (cvar["paired_verdict"], cvar["ci_verdict"]) == ("better", "tie")
    assert vs["adr"]["heldout_mean"]["ci_verdict"] == "better"
    one = robust_dr.compare_to({"dr": {"inbox_mean": [1.0]}, "mrpo": {"inbox_mean": [0.0]}},
                               "dr")["mrpo"]["inbox_mean"]
    assert one["mean"] == -1.0 and one["paired_verdict"] is one["ci_verdict"] is None


def test_robust_dr_reports_adr_ranges_per_seed():
    from types import SimpleNamespace

    adr = SimpleNamespace(fields=("m", "l"), low=np.array([[0.5, 0.6], [0.7, 0.6]]),
                          high=np.array([[2.0, 1.5], [2.0, 1.5]]),
                          hard_low=np.array([[0.5, 0.6]] * 2), hard_high=np.array([[2.0, 1.5]] * 2))
    lines = [dict(update=u, adr_low_m=lo, adr_high_m=2.0, adr_low_l=0.6, adr_high_l=1.5)
             for u, lo in ((10, 0.8), (20, 0.5), (30, 0.6))]
    got = robust_dr.adr_ranges(adr, lines)
    assert got["reached_box_per_seed"] == [True, False]
    assert got["final_ranges_per_seed"]["m"] == [[0.5, 2.0], [0.7, 2.0]]
    assert got["final_ranges"]["m"] == pytest.approx([0.6, 2.0])
    assert got["full_box_update"] == 20
    assert robust_dr.adr_ranges(adr, lines[:1])["full_box_update"] is None


def test_robust_dr_rejects_a_rollout_that_is_not_one_episode(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(robust_dr, "--preset", "quick", "ppo.num_steps=100")
    assert exit_info.value.code == 2 and "episode length" in capsys.readouterr().err


@pytest.mark.mjx_e2e
def test_robust_dr_runs_on_the_mjx_cheetah(tmp_path):
    """The MJX path: EPOpt's selection inside the compiled PPO update on HalfCheetah, with a
    scalar whole-robot mass factor and friction as the two axes (ADR's range updates are the
    same code on any env: the Pendulum quick run above tests them; a second MJX training
    program would cost ~1 min of CI)."""
    out = tmp_path / "run"
    assert _run(robust_dr, "--preset", "quick_mjx", "--seed", "0", "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    config = robust_dr.PRESETS["quick_mjx"]
    assert set(summary["results"]) == {"epopt"} == set(config.methods)
    assert summary["compiles"] == {"train_chunk_seeds": 1, "init": 1}
    assert summary["grid"]["relative"] == ["body_mass_scale", "friction_scale"]
    num_cells = len(config.eval_mass_scales) * len(config.eval_friction_scales)
    for result in summary["results"].values():
        assert len(result["cell_returns"]) == num_cells
        assert np.all(np.isfinite(result["cell_returns"]))
    epopt = [line for line in read_metrics(out / METRICS_FILE) if line["phase"] == "epopt"]
    warmup = round(config.epopt_warmup_frac * config.ppo.num_updates)
    # ceil(0.1 * 8) = 1 of the 8 episodes after the warm start.
    assert [line["selected_frac"] for line in epopt] == [1.0] * warmup + [1 / 8] * (
        len(epopt) - warmup)
    assert (out / "heatmap.png").stat().st_size > 5000


def test_robust_dr_rejects_unknown_env_and_methods():
    with pytest.raises(ValueError, match="env must be one of"):
        robust_dr.Config(env="cartpole")
    with pytest.raises(ValueError, match="methods"):
        robust_dr.Config(methods=("dr", "rarl"))


def test_uposi_quick_preset_writes_the_contract(tmp_path):
    out = tmp_path / "run"
    assert _run(uposi, "--preset", "quick", "--seed", "0", "--out", str(out)) == 0
    summary = json.loads((out / "summary.json").read_text())
    results = summary["results"]
    for policy in ("up_true", "up_osi", "dr"):
        assert results[policy]["heldout_worst"] <= results[policy]["heldout_mean"] < 0
    # The prior is U[0.5, 2] kg x U[0.6, 1.5] m: std = width / sqrt(12).
    assert results["prior_std"]["m"] == pytest.approx(1.5 / np.sqrt(12))
    assert results["prior_std"]["l"] == pytest.approx(0.9 / np.sqrt(12))
    for field in ("m", "l"):
        assert 0 < results["osi_rmse"][field] < 2 * results["prior_std"][field]
        assert len(results["osi_rmse_by_quarter"][field]) == 4
    assert summary["compiles"] == {"up": 1, "dr": 1, "osi": 1}
    osi_lines = [line for line in read_metrics(out / METRICS_FILE) if line["phase"] == "osi"]
    assert len(osi_lines) == uposi.PRESETS["quick"].osi.num_updates
    for png in ("osi_trace.png", "curves.png"):
        assert (out / png).stat().st_size > 5000
