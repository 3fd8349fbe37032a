"""The Colab notebooks: committed without outputs, and each runs top to bottom at the small size
in a real kernel (``tests.notebook_runner``, nbclient) and computes a result we check.

Each notebook ends with a dict ``RESULTS``; the asserts below are on those numbers: exact checks
where there is an oracle (03: the meta-gradient against finite differences; 04: the exact
Bayes-optimal value bounds every method) and orderings that fail if the code is wrong
(01: physics redrawn per episode; 02: the exported file computes the JAX policy's actions;
04: RL^2 above a random policy; 05: skills more distinguishable than chance).
"""

import json
import math
from pathlib import Path

import pytest

from tests.notebook_runner import NOTEBOOKS

EXPECTED = ["01_quickstart.ipynb", "02_sim2real.ipynb", "03_maml.ipynb", "04_rl2_bandits.ipynb",
            "05_maxent_and_skills.ipynb"]
COLAB = "https://colab.research.google.com/github/metarl_jax/metarl_jax/blob/main/notebooks/"


def _cells(name):
    return json.loads((NOTEBOOKS / name).read_text())["cells"]


def test_the_notebooks_are_the_five_listed():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_has_no_outputs_and_installs_itself(name):
    """Executed outputs are never committed; the install cell and size switch come first."""
    cells = _cells(name)
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            assert cell.get("outputs") == [], f"{name} cell {i} has outputs: strip them"
            assert cell.get("execution_count") is None, f"{name} cell {i} has an execution count"
    first_code = next(c for c in cells if c["cell_type"] == "code")
    source = "".join(first_code["source"])
    assert "git\", \"clone\"" in source and "pip\", \"install\"" in source
    assert "METARL_NB_SIZE" in source and "find_spec(\"metarl_jax\")" in source
    intro = "".join(cells[0]["source"])
    assert COLAB + name in intro and "Run time" in intro


def test_readme_links_every_notebook_with_a_colab_badge():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    for name in EXPECTED:
        assert f"({COLAB}{name})" in readme, name


def _execute(name):
    """Run the notebook at the small size; its ``RESULTS``. Prints the kernel's CPU time."""
    from tests.notebook_runner import execute

    _, results, timing = execute(NOTEBOOKS / name, "small")
    print(f"{name}: wall {timing['wall_s']:.1f} s, kernel CPU {timing['kernel_cpu_s']:.1f} s")
    return results


def _finite(*values):
    return all(math.isfinite(v) for v in values)


@pytest.mark.slow
def test_01_quickstart():
    r = _execute("01_quickstart.ipynb")
    low, high = r["mass_range"]
    assert 0.5 <= low < 0.6 and 1.9 < high <= 2.0  # 1000 draws of m ~ 1.0 x U[0.5, 2]
    assert r["delays_seen"] == [0, 1, 2]
    assert r["masses_redrawn"]  # every env got new physics at its second episode
    assert _finite(r["rollout_reward_mean"], *r["train_returns"])
    assert len(r["heatmap"]) == 4 and all(len(row) == 3 for row in r["heatmap"])
    cells = [v for row in r["heatmap"] for v in row]
    assert r["heldout_worst"] == pytest.approx(min(cells), rel=1e-6)
    assert r["heldout_worst"] <= r["heldout_mean"] <= max(cells) and _finite(*cells)


@pytest.mark.slow
def test_02_sim2real():
    r = _execute("02_sim2real.ipynb")
    assert r["export_max_abs_diff"] < 1e-4  # numpy file vs JAX policy, same observation
    for phase in ("nominal", "dr"):
        p = r[phase]
        assert len(p["cell_returns"]) == 2  # nominal + mass x 2, in MuJoCo C
        assert p["real_nominal"] == p["cell_returns"][0]
        assert p["real_worst"] == min(p["cell_returns"]) <= p["real_mean"]
        assert _finite(p["sim_return"], *p["cell_returns"], *r["sim_randomized"][phase])


@pytest.mark.slow
def test_03_maml():
    r = _execute("03_maml.ipynb")
    # The exact meta-gradient and the (I - a H) g formula agree with float64 central differences;
    # first-order MAML's directional derivative is off by far more (the Hessian term).
    assert r["fd_rel_err_second_order"] < 1e-6
    assert r["fd_rel_err_by_hand"] < 1e-6
    assert r["fd_rel_err_first_order"] > 1e3 * max(r["fd_rel_err_second_order"], 1e-9)
    assert len(r["sine_pre_loss"]) == len(r["sine_post_loss"]) == 10
    assert _finite(*r["sine_pre_loss"], *r["sine_post_loss"])
    assert len(r["nav_returns_by_steps"]) == 2 and _finite(*r["nav_returns_by_steps"])


@pytest.mark.slow
def test_04_rl2_bandits():
    r = _execute("04_rl2_bandits.ipynb")
    t, bayes = r["table"], r["bayes_optimal"]
    assert bayes == pytest.approx(6.66, abs=0.01)  # n=10, k=5 (exact DP, see test_bandit_baselines)
    assert len(t["rl2"]["per_seed"]) == 3
    # Nothing beats the Bayes-optimal value beyond sampling noise; RL^2 learned to beat random.
    for method in ("rl2", "thompson", "random"):
        assert t[method]["mean"] - t[method]["ci95"] <= bayes, method
    assert t["rl2"]["mean"] - t["rl2"]["ci95"] > t["random"]["mean"] + t["random"]["ci95"]
    lo = {m: t[m]["mean"] - t[m]["ci95"] for m in ("rl2", "thompson")}
    hi = {m: t[m]["mean"] + t[m]["ci95"] for m in ("rl2", "thompson")}
    expected = ("RL² above Thompson" if lo["rl2"] > hi["thompson"] else
                "Thompson above RL²" if lo["thompson"] > hi["rl2"] else "tie (CIs overlap)")
    assert r["rl2_vs_thompson"] == expected


@pytest.mark.slow
def test_05_maxent_and_skills():
    r = _execute("05_maxent_and_skills.ipynb")
    for method in ("sac_fixed", "low_entropy"):
        per_seed = r[method]["histograms"]
        assert len(per_seed) == 3 and all(sum(h.values()) == 100 for h in per_seed)
        reached = r[method]["goals_reached"]["per_seed"]
        assert reached == [sum(h[f"goal_{g}"] >= 5 for g in range(4)) for h in per_seed]
    acc = r["discriminator_accuracy"]
    assert all(0.0 <= a <= 1.0 for a in acc["per_seed"])
    assert acc["mean"] > r["chance_accuracy"]  # skills are told apart better than chance
    assert _finite(r["state_coverage"]["mean"], r["random_policy_coverage"]["mean"])
