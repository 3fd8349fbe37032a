"""benchmarks/sac_speed.py on its quick settings: both sides train and report their speeds."""

import json
import math

import pytest

pytestmark = pytest.mark.slow


def test_sac_speed_quick_reports_both_sides(tmp_path):
    from benchmarks import sac_speed  # imports brax (and installs the device_put shim)

    out = tmp_path / "sac_speed.json"
    sac_speed.main(["--quick", "--out", str(out)])
    report = json.loads(out.read_text())
    for side in ("ours", "brax"):
        row = report["best"][side]
        assert math.isfinite(row["env_steps_per_s"]) and row["env_steps_per_s"] > 0
        assert row["grad_steps_per_s"] == pytest.approx(row["env_steps_per_s"])  # UTD 1
    assert report["ratio_ours_over_brax"] == pytest.approx(
        report["best"]["ours"]["env_steps_per_s"] / report["best"]["brax"]["env_steps_per_s"])
    assert report["settings"]["utd"] == 1 and len(report["runs"]["ours"]) == 1
