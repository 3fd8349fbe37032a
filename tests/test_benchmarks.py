"""Smoke test of the benchmarks: they run end to end and write complete, sane JSON."""

import json
import math

from benchmarks import env_throughput


def test_env_throughput_quick_writes_every_cell(tmp_path):
    out = tmp_path / "results" / "env_throughput.json"
    env_throughput.main(["--quick", "--out", str(out)])

    report = json.loads(out.read_text())
    cells = {(row["env"], row["num_envs"]): row for row in report["results"]}
    expected = {(case.name, n) for case in env_throughput.CASES
                for n in env_throughput.QUICK.env_counts}
    assert set(cells) == expected
    for key, row in cells.items():
        throughputs = [row["jax_randomized"]["steps_per_s"], row["jax_fixed"]["steps_per_s"],
                       row["gymnasium"]["steps_per_s"], row["ratio_jax_randomized_over_gym"],
                       row["randomization_overhead"]]
        assert all(math.isfinite(x) and x > 0 for x in throughputs), (key, throughputs)
        assert row["jax_randomized"]["compile_s"] >= 0 and row["jax_fixed"]["compile_s"] >= 0
    assert report["machine"]["jax"] and report["machine"]["cpu_count"] >= 1


def test_maml_speed_quick_reports_time_and_remat_memory(tmp_path):
    from benchmarks import maml_speed

    out = tmp_path / "maml_speed.json"
    maml_speed.main(["--quick", "--out", str(out)])
    report = json.loads(out.read_text())
    jax_row = report["sinusoid"]["jax"]
    assert math.isfinite(jax_row["ms_per_iter"]) and jax_row["ms_per_iter"] > 0
    rows = {(r["points_per_task"], r["k"]): r for r in report["memory_vs_k"]}
    assert {k for _, k in rows} == {1, 2, 4}
    # Without remat memory grows with k; with remat the growth per step is far smaller.
    big = [rows[(p, k)] for p, k in sorted(rows) if p == max(p for p, _ in rows)]
    assert big[-1]["no_remat"] > big[0]["no_remat"]
    assert big[-1]["remat"] - big[0]["remat"] < 0.5 * (big[-1]["no_remat"] - big[0]["no_remat"])
