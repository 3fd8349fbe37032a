"""The two MAML experiments end to end: quick presets write the contract's files and numbers."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import metarl_jax
from experiments import maml_nav2d, maml_sinusoid
from metarl_jax.io.cli import cli
from metarl_jax.io.metrics import read_metrics
from metarl_jax.io.run_dir import METRICS_FILE

pytestmark = pytest.mark.slow


def _run(module, out, *extra):
    code = cli(module.NAME, module.main, module.Config, module.PRESETS,
               argv=["--preset", "quick", "--seed", "0", "--out", str(out), *extra])
    assert code == 0
    return json.loads((out / "summary.json").read_text())


def test_sinusoid_quick_preset(tmp_path):
    out = tmp_path / "sinusoid"
    summary = _run(maml_sinusoid, out)
    results = summary["results"]
    assert set(results) == {"maml", "fomaml", "pretrained"}
    for method, r in results.items():
        for k in (5, 10):
            for steps in (1, 10):
                name = f"mse_k{k}_{steps}step"
                assert np.isfinite(r[name]) and 0 < r[name + "_ci95"] < r[name], (method, name)
            assert len(r[f"curve_k{k}"]) == 11
    # Even a short meta-training run beats pretraining + fine-tuning by a wide margin.
    for k in (5, 10):
        assert results["maml"][f"mse_k{k}_1step"] < 0.6 * results["pretrained"][f"mse_k{k}_1step"]
        assert results["maml"][f"mse_k{k}_1step"] < results["maml"]["curve_k%d" % k][0]
    config = maml_sinusoid.PRESETS["quick"]
    lines = [line for line in read_metrics(out / METRICS_FILE) if line["phase"] == "maml_k5"]
    assert len(lines) == config.num_iterations // config.log_every
    assert (out / "fits.png").stat().st_size > 20_000
    assert (out / "curves.png").stat().st_size > 5_000


@pytest.fixture(scope="module")
def nav2d_run(tmp_path_factory):
    """A finished quick-preset maml_nav2d run (2 evaluation steps): its folder and summary."""
    out = tmp_path_factory.mktemp("maml") / "nav"
    return out, _run(maml_nav2d, out, "eval_steps=2")


def test_nav2d_quick_preset(nav2d_run):
    out, summary = nav2d_run
    by_steps = summary["results"]["returns_by_steps"]
    assert set(by_steps) == {"maml", "promp", "pretrained"}
    for method, returns in by_steps.items():
        assert len(returns) == 3 and all(-300 < r < 0 for r in returns), (method, returns)
        assert len(summary["results"]["returns_ci95"][method]) == 3
    # Before adaptation no policy knows the goal: all near "stand still or drift" (~ -38..-60).
    assert all(-80 < by_steps[m][0] < -25 for m in by_steps)
    final = summary["results"]["final_train"]["pretrained"]
    assert final["return_pre"] == final["return_post"]  # zero inner steps: one policy
    assert (out / "trajectories.png").stat().st_size > 20_000
    saved = json.loads((out / "config.json").read_text())
    assert saved["config"]["maml"]["outer"] == "trpo" and saved["config"]["eval_steps"] == 2

    # load_run: every method's meta-policy back (one seed), acting like the learner's policy.
    run = metarl_jax.load_run(out)
    assert set(run.policies) == {"maml", "promp", "pretrained"} and run.finished
    obs = np.random.default_rng(0).normal(size=(5, 2)).astype(np.float32)
    for method, trained in run.policies.items():
        assert trained.complete and trained.num_seeds == 1, method
        actions = trained.act(obs)
        assert actions.shape == (5, 2) and np.all(np.isfinite(actions))
        pure = trained.policy(seed=0)(jax.random.PRNGKey(0), jnp.asarray(obs))
        np.testing.assert_allclose(actions, np.asarray(pure), rtol=1e-6)
    assert not np.allclose(run["maml"].act(obs), run["pretrained"].act(obs))


def test_adapt_sweep_reproduces_the_run_and_sweeps_rates(nav2d_run, tmp_path, capsys):
    """``adapt_sweep`` at each method's own rate and episode count re-derives the run's held-out
    tasks and rollouts, so it reproduces the summary's returns; another rate, a log-std shift,
    fewer tasks change them; bad arguments are refused with a message."""
    from metarl_jax.io.load import RunLoadError
    from metarl_jax.transfer import adapt_sweep

    out, summary = nav2d_run
    own = adapt_sweep.sweep(out)
    assert own["experiment"] == "maml_nav2d" and own["steps"] == 2
    by_steps = summary["results"]["returns_by_steps"]
    assert [r["method"] for r in own["rows"]] == list(by_steps)
    for row in own["rows"]:
        np.testing.assert_allclose(row["returns_by_steps"], by_steps[row["method"]], rtol=1e-5)
        assert row["inner_lr"] == maml_nav2d.eval_config(maml_nav2d.PRESETS["quick"],
                                                         row["method"]).inner_lr
        gain = row["gain_1_minus_0"]
        assert np.isclose(gain["mean"], row["returns_by_steps"][1] - row["returns_by_steps"][0])

    swept = adapt_sweep.sweep(out, rates=[0.01, 1.0], episodes=[1, 3], methods=["maml"],
                              tasks=5, log_std_shift=-0.5)
    rows = swept["rows"]
    assert [(r["episodes"], r["inner_lr"]) for r in rows] == [(1, 0.01), (1, 1.0), (3, 0.01),
                                                              (3, 1.0)]
    # Same pre-adaptation policy and samples: the 0-step returns agree across rates, the
    # adapted ones do not.
    assert rows[0]["returns_by_steps"][0] == rows[1]["returns_by_steps"][0]
    assert rows[0]["returns_by_steps"][1] != rows[1]["returns_by_steps"][1]
    assert np.isclose(rows[0]["log_std_mean"], own["rows"][0]["log_std_mean"] - 0.5, atol=1e-6)
    assert all(np.isfinite(r["returns_by_steps"]).all() for r in rows)

    assert adapt_sweep.main([str(out), "--rates", "0.05", "--methods", "maml,pretrained",
                             "--tasks", "4", "--out", str(tmp_path / "s.json")]) == 0
    written = json.loads((tmp_path / "s.json").read_text())
    assert [r["method"] for r in written["rows"]] == ["maml", "pretrained"]
    assert "1-step gain" in capsys.readouterr().out

    for kwargs, match in (({"rates": [0.0]}, "rates"), ({"rates": [float("nan")]}, "rates"),
                          ({"episodes": [0]}, "episodes"), ({"methods": ["nope"]}, "nope"),
                          ({"tasks": 10_000}, "tasks"), ({"steps": 0}, "steps"),
                          ({"log_std_shift": float("inf")}, "log_std_shift")):
        with pytest.raises(ValueError, match=match):
            adapt_sweep.sweep(out, **kwargs)
    with pytest.raises(RunLoadError):
        adapt_sweep.sweep(tmp_path)
    assert adapt_sweep.main([str(tmp_path)]) == 1
    assert "adapt_sweep: error" in capsys.readouterr().err


def test_adapt_sweep_fixed_rates_replace_learned_ones(tmp_path):
    """On a Meta-SGD run (learned inner rate), the default row uses the learned rate and
    reproduces the run; a given rate replaces it (the rows differ and say so)."""
    from metarl_jax.transfer import adapt_sweep

    out = tmp_path / "metasgd"
    summary = _run(maml_nav2d, out, "maml.inner_lr_mode=scalar")
    own = adapt_sweep.sweep(out, methods=["maml"])
    (row,) = own["rows"]
    assert row["learned_rates"]
    np.testing.assert_allclose(row["returns_by_steps"],
                               summary["results"]["returns_by_steps"]["maml"], rtol=1e-5)
    fixed = adapt_sweep.sweep(out, rates=[0.001, 2.0], methods=["maml"], tasks=5)["rows"]
    assert [(r["inner_lr"], r["learned_rates"]) for r in fixed] == [(0.001, False), (2.0, False)]
    assert fixed[0]["returns_by_steps"][1] != fixed[1]["returns_by_steps"][1]


def test_meta_phases_train_several_seeds_in_one_program(tmp_path):
    """``train_meta_phases`` with keys ``[S, 2]`` (``few_shot.seed_keys``) trains the seeds side
    by side (``train_chunk_seeds``, one compile) and seed i's state is the one-seed run's with
    key ``PRNGKey(seed + i)`` (nav2d: bit for bit; MJX's floats may differ in the last digits
    under ``vmap``)."""
    from metarl_jax.io.load import Phase
    from metarl_jax.transfer.few_shot import seed_keys, train_meta_phases

    config = maml_nav2d.PRESETS["quick"]
    one = {"maml": maml_nav2d.policies(config)["maml"]}
    several = {"maml": Phase(*one["maml"][:3], num_updates=one["maml"].num_updates,
                             stacked=True)}
    keys = seed_keys(5, 2)
    for folder in ("both", "seed0", "seed1"):
        (tmp_path / folder).mkdir()
    both = train_meta_phases(tmp_path / "both", several, keys, 2)["maml"]
    assert several["maml"].learner.traces["train_chunk_seeds"] == 1
    for i in range(2):
        alone = train_meta_phases(tmp_path / f"seed{i}", one, keys[i], 2)["maml"]
        seed_i = jax.tree.map(lambda x: x[i], both.meta.params)
        jax.tree.map(np.testing.assert_array_equal, seed_i, alone.meta.params)
    moved = jax.tree.map(lambda a, b: np.abs(a - b).max(), jax.tree.map(lambda x: x[0],
                         both.meta.params), jax.tree.map(lambda x: x[1], both.meta.params))
    assert max(jax.tree.leaves(moved)) > 0  # the two seeds are different runs
