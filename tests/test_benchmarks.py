"""The benchmark suite's machinery: interleaved timing, the runner's files, the brax shim, the
MAML gradient agreement with PyTorch, and a smoke run of env_throughput."""

import json
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import env_throughput
from benchmarks import run as bench_run
from benchmarks.brax_peer import device_put_replicated_shim
from benchmarks.compiles import CompileCounter
from benchmarks.timing import Rounds, interleave, spread


# ------------------------------------------------------------------------------ timing helper
class FakeClock:
    """A timer whose reading only moves when a fake program advances it."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_interleave_calls_programs_in_rounds_and_computes_ratios_per_round():
    clock, calls = FakeClock(), []
    durations = {"ours": iter([1.0, 2.0, 1.0]), "peer": iter([3.0, 2.0, 4.0])}

    def program(name):
        def run():
            calls.append(name)
            clock.now += next(durations[name])
        return run

    rounds = interleave({"ours": program("ours"), "peer": program("peer")}, 3, timer=clock)
    assert calls == ["ours", "peer"] * 3
    assert rounds.seconds == {"ours": [1.0, 2.0, 1.0], "peer": [3.0, 2.0, 4.0]}
    summary = rounds.summary(baseline="peer", work=10.0)
    assert summary["ratios"]["ours"]["values"] == [3.0, 1.0, 4.0]  # peer / ours, per round
    assert summary["ratios"]["ours"]["median"] == 3.0
    assert summary["ratios"]["ours"]["min"] == 1.0 and summary["ratios"]["ours"]["max"] == 4.0
    assert summary["ours"]["median"] == 1.0 and summary["peer"]["median"] == 3.0
    assert summary["ours"]["units_per_s"]["values"] == [10.0, 5.0, 10.0]
    assert summary["rounds"] == 3 and summary["order"] == ["ours", "peer"]


def test_a_program_that_returns_seconds_overrides_the_timer():
    clock = FakeClock()

    def slow_wrapper():
        clock.now += 100.0  # e.g. brax's own setup around the part it times
        return 2.0

    rounds = interleave({"a": lambda: 1.0, "b": slow_wrapper}, 2, timer=clock)
    assert rounds.seconds["b"] == [2.0, 2.0]
    assert rounds.summary()["ratios"]["a"]["median"] == 2.0  # default baseline: the last


def test_rounds_recorded_by_hand_use_complete_rounds_only_and_reject_bad_input():
    rounds = Rounds(["ours", "brax"])
    rounds.add("brax", 2.0)
    rounds.add("ours", 1.0)
    rounds.add("brax", 4.0)  # an unfinished round
    assert rounds.complete == 1
    assert rounds.ratios("brax") == {"ours": [2.0]}
    with pytest.raises(ValueError, match="unknown program"):
        rounds.add("torch", 1.0)
    with pytest.raises(ValueError, match="> 0 s"):
        rounds.add("ours", 0.0)
    with pytest.raises(ValueError, match="distinct"):
        Rounds(["a", "a"])
    with pytest.raises(ValueError, match="no complete round"):
        Rounds(["a", "b"]).summary()
    with pytest.raises(ValueError, match="num_rounds"):
        interleave({"a": lambda: None}, 0)


def test_spread_quartiles():
    s = spread([4.0, 1.0, 3.0, 2.0, 5.0])
    assert (s["median"], s["q25"], s["q75"], s["min"], s["max"]) == (3.0, 2.0, 4.0, 1.0, 5.0)


# ------------------------------------------------------------------------------ runner
FAKE_MODULE = '''
def run(preset):
    ratio = {"median": 1.5, "q25": 1.4, "q75": 1.6, "min": 1.2, "max": 1.8, "values": [1.5]}
    slow = dict(ratio, median=0.5, min=0.4, max=0.6)
    close = dict(ratio, median=0.9, min=0.8, max=1.1)
    return {"title": "fake", "preset_seen": preset,
            "headline": [{"label": "fast thing", "ratio": ratio, "target": 1.0},
                         {"label": "slow thing", "ratio": slow, "target": 1.0},
                         {"label": "close thing", "ratio": close, "target": 1.0},
                         {"label": "info only", "ratio": ratio, "target": None}]}


def markdown(result):
    return "fake body for " + result["preset_seen"]
'''


@pytest.fixture
def fake_suite(tmp_path, monkeypatch):
    (tmp_path / "fake_bench.py").write_text(FAKE_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(bench_run, "BENCHMARKS", {"fake": ("fake_bench", {}),
                                                  "broken": ("fake_bench", {})})
    out = tmp_path / "results"
    out.mkdir()
    yield out
    sys.modules.pop("fake_bench", None)


def test_runner_writes_json_png_and_results_markdown(fake_suite):
    out = fake_suite
    bench_run.worker("fake", "fake_bench", "quick", out / "fake.json")
    record = json.loads((out / "fake.json").read_text())
    assert record["name"] == "fake" and record["preset"] == "quick"
    assert record["result"]["preset_seen"] == "quick" and record["wall_s"] >= 0
    machine = record["machine"]
    assert machine["cpu_count"] >= 1 and machine["cpu_model"]
    assert machine["versions"]["jax"] == jax.__version__ and machine["accelerator"] == "none"

    assert bench_run.plot(record, out / "fake.png") == out / "fake.png"
    assert (out / "fake.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    (out / "broken.json").write_text(json.dumps(  # a failed benchmark's record
        {"name": "broken", "preset": "quick", "wall_s": 1.0, "machine": machine,
         "error": "exit status 1:\nboom"}))
    (out / "old_format.json").write_text("{}")  # not in the suite: ignored
    md = bench_run.write_results_md(out, out.parent / "RESULTS.md")
    assert (out.parent / "RESULTS.md").read_text() == md
    assert "| fake | fast thing | 1.50x [1.20-1.80] | >= 1.0x | yes |" in md
    assert "| fake | slow thing | 0.50x [0.40-0.60] | >= 1.0x | no (50% of target) |" in md
    assert "| fake | close thing | 0.90x [0.80-1.10] | >= 1.0x | no (90% of target); rounds on " \
        "both sides of it |" in md
    assert "| fake | info only | 1.50x [1.20-1.80] |  |  |" in md
    assert "fake body for quick" in md and machine["cpu_model"] in md
    assert "## broken" in md and "**Failed**" in md and "boom" in md
    assert "Failed in their latest run: broken." in md
    assert md.index("## fake") < md.index("## broken")  # suite order


def test_runner_rejects_unknown_benchmark_names(capsys):
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench_run.parse_only("ppo_speed,nope")
    assert bench_run.parse_only(None) == list(bench_run.BENCHMARKS)
    assert bench_run.parse_only("maml_speed, ppo_speed") == ["maml_speed", "ppo_speed"]
    with pytest.raises(SystemExit):
        bench_run.main(["--only", "nope"])
    assert "unknown benchmark" in capsys.readouterr().err


# ------------------------------------------------------------------------------ brax shim
def fresh_size() -> int:
    """An array size no earlier run used, so the persistent compile cache (conftest) cannot
    answer a compile these tests count."""
    return 7 + (os.getpid() * 7919 + time.monotonic_ns()) % 100_000


def test_device_put_replicated_shim_exists_only_inside_and_replicates():
    assert not hasattr(jax, "device_put_replicated")  # jax 0.10 removed it
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "n": jnp.int32(7)}
    devices = jax.local_devices()[:1]
    with device_put_replicated_shim():
        out = jax.device_put_replicated(tree, devices)
    assert not hasattr(jax, "device_put_replicated")
    assert out["w"].shape == (1, 2, 3) and out["n"].shape == (1,)
    np.testing.assert_array_equal(out["w"][0], tree["w"])
    assert out["n"].dtype == jnp.int32 and int(out["n"][0]) == 7
    # Placed as pmap places its outputs: a pmapped function reads it, then its own output,
    # with a single compile.
    with device_put_replicated_shim():
        fresh = jax.device_put_replicated(jnp.ones(fresh_size()), devices)
    double = jax.pmap(lambda x: 2 * x)
    with CompileCounter() as compiles:
        once = double(fresh)
        mark = compiles.mark()
        twice = double(once)
    np.testing.assert_array_equal(twice[0], 4 * np.ones(fresh.shape[1]))
    assert compiles.count >= 1 and compiles.since(mark)[0] == 0


def test_compile_counter_counts_backend_compiles():
    f, x = jax.jit(lambda x: x * 3 + 1), jnp.ones(fresh_size())
    with CompileCounter() as compiles:
        f(x)
        mark = compiles.mark()
        f(x)
    assert compiles.count == 1 and compiles.seconds > 0
    assert compiles.since(mark) == (0, 0.0)


# ------------------------------------------------------------------------------ MAML vs torch
def test_maml_meta_gradients_agree_between_jax_torch_func_and_eager_torch():
    pytest.importorskip("torch")
    from benchmarks import maml_speed

    check = maml_speed.gradient_check()
    assert check["agree"], check
    for key in ("jax_vs_torch_func", "jax_vs_torch_eager", "torch_func_vs_eager"):
        assert check[key] <= 1e-5 * check["max_abs_grad"], (key, check)
    assert check["max_abs_grad"] > 1e-3  # a real gradient, not zeros compared with zeros


# ------------------------------------------------------------------------------ env_throughput
def test_env_throughput_quick_writes_every_cell(tmp_path):
    out = tmp_path / "results" / "env_throughput.json"
    env_throughput.main(["--quick", "--out", str(out)])

    report = json.loads(out.read_text())
    cells = {(row["env"], row["num_envs"]): row for row in report["results"]}
    expected = {(name, n) for name in env_throughput.QUICK.envs
                for n in env_throughput.QUICK.env_counts}
    assert set(cells) == expected
    for key, row in cells.items():
        throughputs = [row["jax_randomized"]["steps_per_s"], row["jax_fixed"]["steps_per_s"],
                       row["gymnasium"]["steps_per_s"], row["ratio_jax_randomized_over_gym"],
                       row["randomization_overhead"]]
        assert all(math.isfinite(x) and x > 0 for x in throughputs), (key, throughputs)
        assert row["jax_randomized"]["compile_s"] >= 0 and row["jax_fixed"]["compile_s"] >= 0
        assert all(math.isfinite(r["median"]) and r["min"] > 0 for r in row["ratios"].values())
        assert set(row["ratios"]) == {"rand/fixed", "rand/numpy", "rand/gym"}
    assert report["machine"]["jax"] and report["machine"]["cpu_count"] >= 1
    table = env_throughput.markdown_table(report["results"])
    assert all(f"| {env} | {n} |" in table for env, n in expected)
