"""Smoke test of the benchmarks: they run end to end and write complete, sane JSON."""

import json
import math

from benchmarks import env_throughput


def test_env_throughput_quick_writes_every_cell(tmp_path):
    out = tmp_path / "results" / "env_throughput.json"
    env_throughput.main(["--quick", "--out", str(out)])

    report = json.loads(out.read_text())
    cells = {(row["env"], row["num_envs"]): row for row in report["results"]}
    expected = {(case.name, n) for case in env_throughput.CASES for n in env_throughput.QUICK.env_counts}
    assert set(cells) == expected
    for key, row in cells.items():
        throughputs = [row["jax_randomized"]["steps_per_s"], row["jax_fixed"]["steps_per_s"],
                       row["gymnasium"]["steps_per_s"], row["ratio_jax_randomized_over_gym"],
                       row["randomization_overhead"]]
        assert all(math.isfinite(x) and x > 0 for x in throughputs), (key, throughputs)
        assert row["jax_randomized"]["compile_s"] >= 0 and row["jax_fixed"]["compile_s"] >= 0
    assert report["machine"]["jax"] and report["machine"]["cpu_count"] >= 1
