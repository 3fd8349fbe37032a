"""The calibrate_cheetah experiment end to end (quick preset) and its config checks.

The end-to-end run compiles four MJX programs (gradient fit, CEM, EPOpt posterior, PPO), minutes
on 2 cores: it is marked ``mjx_e2e`` and runs only when selected (``pytest -m mjx_e2e
tests/test_calibrate_cheetah.py``), not in the default suite."""

import json

import numpy as np
import pytest

from experiments import calibrate_cheetah
from tests.experiment_contract import check_run_folder, run_quick

pytestmark = pytest.mark.slow


def _selected(request) -> bool:
    return "mjx_e2e" in (request.config.getoption("-m") or "")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, request):
    if not _selected(request):
        pytest.skip("MJX end-to-end run: select with -m mjx_e2e")
    out = tmp_path_factory.mktemp("calibrate") / "run"
    assert run_quick(calibrate_cheetah, out, "--seed", "0") == 0
    return out


@pytest.mark.mjx_e2e
def test_quick_preset_writes_the_contract(quick_run):
    config = calibrate_cheetah.PRESETS["quick"]
    check_run_folder(quick_run, {v: config.ppo.num_updates for v in calibrate_cheetah.VARIANTS},
                     ("calibration.png", "curves.png"))
    results = json.loads((quick_run / "summary.json").read_text())["results"]
    for method in ("gradient", "cem"):
        fit = results["calibration"][method]
        assert set(fit["param_error"]) == set(calibrate_cheetah.FIELDS)
        assert all(np.isfinite(e["mean"]) for e in fit["param_error"].values())
        assert len(fit["loss_per_delay"]) == config.max_delay + 1
        # The latency is the clearest signal in the data: every fit finds it.
        assert fit["delay"] == config.hidden_delay, fit["loss_per_delay"]
    # The world body's mass and the root joints' damping are 0 in the model: not fitted, not
    # scored (7 of 8 masses, 6 of 9 dampings).
    assert results["not_identifiable"] == {"body_mass_scale": [0], "friction_scale": [],
                                           "damping_scale": [0, 1, 2], "gear_scale": []}
    assert len(results["calibration"]["gradient"]["param_error"]["damping_scale"][
        "per_element"]) == 6
    gradient = results["calibration"]["gradient"]
    assert gradient["loss"] < gradient["loss_nominal"]
    # Levenberg-Marquardt takes only steps that lower the loss, and reports the Jacobian's
    # singular values over the 20 acting elements (7 masses + friction + 6 dampings + 6 gears).
    assert gradient["optimizer"] == "lm"
    assert np.all(np.diff(gradient["loss_history"]) <= 0), gradient["loss_history"]
    assert len(gradient["identifiability"]["singular_values"]) == 20
    for variant in calibrate_cheetah.VARIANTS:
        real = results["policy"][variant]["real_return"]
        assert len(real["per_seed"]) == config.num_seeds and np.isfinite(real["mean"])
    assert set(results["comparison"]) == {"calibrated_vs_nominal", "calibrated_vs_wide_dr",
                                          "calibrated_vs_posterior"}
    assert len(list((quick_run / "policies").glob("*.npz"))) == 4 * config.num_seeds


@pytest.mark.parametrize("override, message", [
    ("horizon=500", "horizon"),
    ("hidden_delay=5", "hidden_delay"),
    ("hidden_mass=0,1", "hidden_mass"),
    ("posterior_batch=99", "posterior_batch"),
])
def test_bad_config_exits_2(tmp_path, override, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_quick(calibrate_cheetah, tmp_path / "bad", override)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
