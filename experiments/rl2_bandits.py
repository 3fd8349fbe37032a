"""RL^2 on Bernoulli bandits against classic policies and the exact Bayes-optimal value.

    python -m experiments.rl2_bandits --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.rl2_bandits --resume runs/rl2_bandits/<timestamp>
    python -m experiments.rl2_bandits --preset accel --devices all   # seeds/envs over devices

Story (Duan et al. 2016, sec. 3.1, Table 1): for each setting ``n`` pulls x ``k`` arms, train a
GRU policy with recurrent PPO on trials of tasks ``p_i ~ U[0, 1]`` -- it sees only its previous
arm and reward, so it must learn to explore -- then score it on held-out tasks next to random,
greedy, eps-greedy, UCB1 and Thompson sampling (the tuned constants of eps-greedy and UCB1 are
chosen by grid search on separate training-distribution tasks) and, for small ``n``, the exact
Bayes-optimal value computed by dynamic programming over Beta posteriors.

Presets: ``quick`` = n=10,k=5 with a short training (for tests); ``cpu`` = the paper's n=10 row
(k = 5, 10, 50) and n=100,k=5 (about 8 CPU-minutes; 1M training steps per n=10 setting, 8M for
n=100); ``accel`` = the paper's full grid n in {10, 100, 500} x k in {5, 10, 50}. The
Bayes-optimal value is computed for n <= ``bayes_max_horizon`` (all n=10 rows; null elsewhere).

Writes ``summary.json``: ``results.table["n=10,k=5"]`` = mean total reward per trial of every
method (``rl2``, ``bayes_optimal``, ``thompson``, ``ucb1``, ``greedy``, ``random``,
``eps_greedy``), ``results.stderr`` the standard errors over held-out tasks (0 for the exact
value), ``results.details`` the tuned constants, RL^2 with greedy (mode) actions, UCB1 with its
classic initial round, training time; ``paper_settings_not_run`` lists the cells of the paper's
3 x 3 grid this preset skipped; plus ``curves.png`` (training return per pull).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Tuple

import jax
import numpy as np

from envs.bandits import BernoulliBandit, bernoulli_task_space
from metarl_jax import stats
from metarl_jax.algos.rl2 import RL2, RL2Config
from metarl_jax.baselines import bandits as bl
from metarl_jax.io import plots
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.scale import mesh_size, run_mesh, sharded, to_host

NAME = "rl2_bandits"
METHODS = ("random", "bayes_optimal", "thompson", "ucb1", "eps_greedy", "greedy", "rl2")


def parse_setting(text: str) -> Tuple[int, int]:
    """``"100x5"`` -> ``(n, k) = (100, 5)``."""
    try:
        n, k = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"a setting is written NxK (pulls x arms), e.g. 100x5; got {text!r}")
    if n < 1 or k < 2:
        raise ValueError(f"setting {text!r}: need n >= 1 pulls and k >= 2 arms")
    return n, k


@dataclasses.dataclass(frozen=True)
class Config:
    settings: Tuple[str, ...] = ("10x5", "10x10", "10x50", "100x5")  # n pulls x k arms
    train_steps: Tuple[int, ...] = (  # env steps of training, one per setting; rl2.total_steps
        1_000_000, 1_000_000, 1_000_000, 8_000_000)  # is not used (replaced by these)
    # Template for every setting: num_steps is the longest rollout (T = min(n, num_steps));
    # total_steps comes from train_steps; reward_scale is per *trial*: rewards are scaled by
    # reward_scale / n so that a trial's scaled return is O(1) at every horizon.
    rl2: RL2Config = RL2Config(num_envs=128, num_steps=100, total_steps=12_800, num_epochs=4,
                               num_minibatches=4, hidden_size=64, encoder_sizes=(64,),
                               head_sizes=(64,), learning_rate=2e-3, gamma=1.0,
                               gae_lambda=0.95, ent_coef=0.005, reward_scale=5.0)
    num_seeds: int = 1
    updates_per_chunk: int = 50
    eval_tasks: int = 10_000  # held-out tasks every method is scored on
    tune_tasks: int = 4_000  # training-distribution tasks for the eps / c grid searches
    bayes_max_horizon: int = 12  # exact DP for n <= this

    def __post_init__(self):
        if not self.settings or len(self.settings) != len(self.train_steps):
            raise ValueError(f"settings and train_steps need the same, non-zero length; got "
                             f"{len(self.settings)} and {len(self.train_steps)}")
        check_at_least_one(self, ("num_seeds", "updates_per_chunk", "eval_tasks", "tune_tasks"))
        for i in range(len(self.settings)):
            setting_config(self, i).validate()


def setting_config(config: Config, i: int) -> RL2Config:
    n, _ = parse_setting(config.settings[i])
    return config.rl2.replace(num_steps=min(n, config.rl2.num_steps),
                              total_steps=int(config.train_steps[i]),
                              reward_scale=config.rl2.reward_scale / n)


_quick_rl2 = dataclasses.replace(Config.rl2, num_envs=64, hidden_size=32, encoder_sizes=(32,),
                                 head_sizes=(32,))
PRESETS = {
    "quick": Config(settings=("10x5",), train_steps=(64 * 10 * 150,), rl2=_quick_rl2,
                    updates_per_chunk=50, eval_tasks=2000, tune_tasks=1000),
    "cpu": Config(),
    "accel": Config(settings=tuple(f"{n}x{k}" for n in (10, 100, 500) for k in (5, 10, 50)),
                    train_steps=(20_000_000,) * 3 + (200_000_000,) * 6,
                    rl2=dataclasses.replace(Config.rl2, num_envs=1024, num_minibatches=8,
                                            hidden_size=256, encoder_sizes=(256,),
                                            head_sizes=(256,)),
                    num_seeds=3, updates_per_chunk=20),
}


def baselines(n: int, tasks, tune_probs, key) -> Tuple[dict, dict]:
    """Totals ``[M]`` per baseline on the held-out ``tasks`` (same tasks for all), and details.
    eps-greedy's eps and UCB1's c are tuned on ``tune_probs`` (never on the held-out tasks)."""
    tune_key, run_key = jax.random.split(key)
    searches = {"eps_greedy": (bl.eps_greedy, bl.EPS_GRID), "ucb1": (bl.ucb1, bl.UCB_GRID),
                "ucb1_classic": (bl.ucb1_classic, bl.UCB_GRID)}
    tuned = bl.tune(searches, tune_probs, n, tune_key)
    runs = {"random": (bl.random_arm, 0.0), "greedy": (bl.greedy, 0.0),
            "thompson": (bl.thompson, 0.0)}
    runs.update({name: (policy, tuned[name][0]) for name, (policy, _) in searches.items()})
    totals = bl.run_policies(runs, tasks.probs, n, run_key)
    return totals, {f"{name}_tuned": {"best": best, "grid_scores": scores}
                    for name, (best, scores) in tuned.items()}


def markdown_table(table: dict, stderr: dict) -> str:
    """Rows = settings, columns = methods (the paper's layout); ``mean ± stderr``."""
    lines = ["| setting | " + " | ".join(METHODS) + " |", "|---" * (len(METHODS) + 1) + "|"]
    for setting, row in table.items():
        cells = ["-" if row[m] is None else (f"{row[m]:.2f}" if stderr[setting][m] == 0
                                             else f"{row[m]:.2f} ± {stderr[setting][m]:.2f}")
                 for m in METHODS]
        lines.append(f"| {setting} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def policies(config: Config):
    """``{"n<n>_k<k>": (RL2, that setting's config, (task space,))}``: what ``main`` trains and
    ``metarl_jax.load_run`` restores (``run[phase].recurrent()`` plays it)."""
    phases = {}
    for i, text in enumerate(config.settings):
        n, k = parse_setting(text)
        phases[f"n{n}_k{k}"] = (RL2(BernoulliBandit(k, n), episodes_per_trial=1),
                                setting_config(config, i), (bernoulli_task_space(k),))
    return phases


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    table, stderr, details, curves = {}, {}, {}, {}
    mesh = run_mesh(args.devices)  # --devices N: the seeds (or each seed's envs) split over N
    for i, text in enumerate(config.settings):
        n, k = parse_setting(text)
        label, phase = f"n={n},k={k}", f"n{n}_k{k}"
        rl2_config = setting_config(config, i)
        rl2, space = RL2(BernoulliBandit(k, n), episodes_per_trial=1), bernoulli_task_space(k)
        seed_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), i),
                                     config.num_seeds)
        start, trainer = time.time(), sharded(rl2, mesh)
        states = to_host(train_phase(
            run_dir, phase,
            init=lambda: trainer.init_seeds(seed_keys, rl2_config, space),
            chunk=lambda s, m: trainer.train_chunk_seeds(s, rl2_config, m),
            num_updates=rl2_config.num_updates, updates_per_chunk=config.updates_per_chunk,
            steps_per_update=rl2_config.batch_size * config.num_seeds, show=("trial_return",)))
        train_seconds = time.time() - start

        # Held-out tasks (shared by every method), tuning tasks, evaluation noise: own keys.
        task_key, tune_key, eval_key = jax.random.split(
            jax.random.fold_in(jax.random.PRNGKey(seed + 1_000_003), i), 3)
        tasks = space.sample(task_key, (config.eval_tasks,))
        tune_probs = space.sample(tune_key, (config.tune_tasks,)).probs
        totals, info = baselines(n, tasks, tune_probs, eval_key)
        for name, deterministic in (("rl2", False), ("rl2_mode", True)):
            per_seed = [rl2.evaluate(jax.tree.map(lambda x: x[s], states.params), rl2_config,
                                     tasks, jax.random.fold_in(eval_key, 100 + s),
                                     deterministic=deterministic)["trial_return"]
                        for s in range(config.num_seeds)]
            totals[name] = np.mean(np.stack(per_seed), axis=0)  # per task, over seeds
        summary = {name: stats.mean_stderr(t) for name, t in totals.items()}
        bayes = bl.bayes_optimal_value(k, n) if n <= config.bayes_max_horizon else None
        table[label] = {m: (bayes if m == "bayes_optimal" else summary[m][0]) for m in METHODS}
        stderr[label] = {m: (None if bayes is None else 0.0) if m == "bayes_optimal"
                         else summary[m][1] for m in METHODS}
        lines = phase_metrics(run_dir, phase)
        details[label] = dict(info, rl2_mode=summary["rl2_mode"],
                              ucb1_classic=summary["ucb1_classic"], train_seconds=train_seconds,
                              train_steps=rl2_config.num_updates * rl2_config.batch_size,
                              final_train_return=lines[-1]["trial_return"])
        curves[label] = ([line["step"] for line in lines],
                         [line["trial_return"] / n for line in lines])

    plots.plot_curves(run_dir / "curves.png", curves, xlabel="env steps (all seeds)",
                      ylabel="reward per pull (latest trials)", title="RL^2 training on bandits")
    paper = [f"n={n},k={k}" for n in (10, 100, 500) for k in (5, 10, 50)]
    return finish(run_dir, {"results": {"table": table, "stderr": stderr, "details": details},
                            "eval_tasks": config.eval_tasks, "devices": mesh_size(mesh),
                            "paper_settings_not_run": [s for s in paper if s not in table]},
                  markdown_table(table, stderr))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
