"""RL^2 on random tabular MDPs: returns rise over the episodes of a trial as the policy adapts.

    python -m experiments.rl2_mdp --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.rl2_mdp --resume runs/rl2_mdp/<timestamp>
    python -m experiments.rl2_mdp --preset accel --devices all   # seeds/envs over devices

Story (Duan et al. 2016, sec. 3.2): every trial is a fresh MDP (10 states, 5 actions, mean
rewards ~ N(1, 1), transitions ~ Dirichlet(1)) played for ``episodes_per_trial`` episodes of 10
steps. A GRU policy trained with recurrent PPO keeps its memory across the episodes of a trial,
so what it learns about the MDP in early episodes pays off in later ones: on held-out MDPs, the
mean return of episode ``i`` of a trial rises with ``i``. Two exact references per task bracket
it: uniformly random actions, and the optimal policy of the *known* MDP (value iteration).
The paper's Bayesian baseline is computed on the same held-out MDPs: PSRL (posterior sampling
with the prior the tasks come from; ``metarl_jax.baselines.psrl``).

Writes ``summary.json``: ``results.per_episode`` (mean return of each episode index within a
trial for ``rl2``, its ``rl2_stderr``, ``random`` and ``oracle``), ``results.trial_return``,
``results.adaptation`` (last minus first episode, paired over tasks, with its standard error),
``results.psrl`` (``per_episode`` mean and ``per_episode_ci95``, ``trial_return`` and its
``ci95``, all over tasks; ``rl2_minus_psrl``: RL^2's minus PSRL's mean episode return of a trial,
paired over tasks, with its 95% CI and ``verdict`` ahead / behind / tie; with
``num_seeds >= 2`` also ``rl2_minus_psrl_over_seeds``: each training seed's difference and the
t-CI over seeds),
``per_episode.png`` (return vs episode index), ``curves.png`` (training) and ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import numpy as np

from envs.tabular_mdp import (
    TabularMDP,
    optimal_episode_return,
    random_episode_return,
    tabular_mdp_task_space,
)
from metarl_jax import stats
from metarl_jax.algos.rl2 import RL2, RL2Config
from metarl_jax.baselines.psrl import psrl_returns
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.scale import mesh_size, run_mesh
from metarl_jax.transfer.trials import (
    episode_returns_per_seed,
    per_episode_rows,
    plot_per_episode,
    report_per_episode,
    train_rl2_phase,
)

NAME = "rl2_mdp"


@dataclasses.dataclass(frozen=True)
class Config:
    # gamma 0.15 and 2000 updates: chosen on validation MDPs (experiments._rl2_mdp_sweep;
    # docs/rl2.md): a short discount cuts the noise that ~100 future rewards add to every advantage;
    # the evaluation is the undiscounted return.
    rl2: RL2Config = RL2Config(num_envs=128, num_steps=100, total_steps=25_600_000, num_epochs=4,
                               num_minibatches=4, hidden_size=64, encoder_sizes=(64,),
                               head_sizes=(64,), learning_rate=2e-3, gamma=0.15,
                               gae_lambda=0.95, ent_coef=0.005, reward_scale=0.05)
    episodes_per_trial: int = 10
    episode_length: int = 10
    num_states: int = 10
    num_actions: int = 5
    num_seeds: int = 1
    updates_per_chunk: int = 50
    eval_tasks: int = 2000

    def __post_init__(self):
        self.rl2.validate()
        for name in ("episodes_per_trial", "episode_length", "num_states", "num_actions",
                     "num_seeds", "updates_per_chunk", "eval_tasks"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


PRESETS = {
    # A smoke test of the whole pipeline (tests/test_rl2.py): 20 updates in two checkpointed
    # chunks (the resume test cuts one), no encoder / head layers (a smaller program compiles
    # faster), 300 held-out MDPs (PSRL's learning is still clear of random there).
    "quick": Config(rl2=dataclasses.replace(Config.rl2, num_envs=32, total_steps=32 * 100 * 20,
                                            hidden_size=32, encoder_sizes=(), head_sizes=()),
                    episodes_per_trial=5, updates_per_chunk=10, eval_tasks=300),
    "cpu": Config(num_seeds=3),  # 3 training seeds vmapped: RL^2 - PSRL gets a CI over seeds
    "accel": Config(rl2=dataclasses.replace(Config.rl2, num_envs=2048, num_minibatches=16,
                                            total_steps=1_000_000_000, hidden_size=256,
                                            encoder_sizes=(256,), head_sizes=(256,)),
                    num_seeds=3, updates_per_chunk=20, eval_tasks=10_000),
}


def policies(config: Config):
    """``{"rl2": (RL2, learner config, (task space,))}``: what ``main`` trains and
    ``metarl_jax.load_run`` restores (``run["rl2"].recurrent()`` plays it)."""
    env = TabularMDP(config.num_states, config.num_actions, config.episode_length)
    space = tabular_mdp_task_space(config.num_states, config.num_actions)
    return {"rl2": (RL2(env, config.episodes_per_trial), config.rl2, (space,))}


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    rl2, _, (space,) = policies(config)["rl2"]
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    mesh = run_mesh(args.devices)  # --devices N: the seeds (or each seed's envs) split over N
    states = train_rl2_phase(run_dir, rl2, config.rl2, space, seed_keys,
                             config.updates_per_chunk, mesh=mesh)

    # Held-out MDPs, drawn with a key training never uses.
    task_key, eval_key = jax.random.split(jax.random.PRNGKey(seed + 1_000_003))
    tasks = space.sample(task_key, (config.eval_tasks,))
    per_seed = episode_returns_per_seed(rl2, states, config.rl2, tasks, eval_key)  # [S, M, E]
    episode_returns = per_seed.mean(0)
    exact = {name: float(np.mean(jax.vmap(lambda p: fn(p, config.episode_length))(tasks)))
             for name, fn in (("random", random_episode_return),
                              ("oracle", optimal_episode_return))}
    labels = {"random": "random actions", "oracle": "optimal, MDP known"}
    title = f"RL^2 on random MDPs ({config.eval_tasks} held-out tasks)"
    results, _ = report_per_episode(
        run_dir, episode_returns, exact, labels, later=-1, gain_name="last_minus_first",
        ylabel="mean episode return (held-out MDPs)", title=title)
    psrl = np.asarray(psrl_returns(jax.random.fold_in(eval_key, 0x9512), rl2.env, tasks, space,
                                   config.episodes_per_trial))  # [M, E]
    results["psrl"] = psrl_summary(psrl, per_seed)
    results["per_episode"]["psrl"] = results["psrl"]["per_episode"]
    plot_per_episode(run_dir / "per_episode.png", results["per_episode"],
                     dict(labels, psrl="PSRL (posterior sampling)"),
                     ylabel="mean episode return (held-out MDPs)", title=title)
    table = format_table(per_episode_rows(results["per_episode"], ("psrl", *exact)))
    return finish(run_dir, {"results": results, "eval_tasks": config.eval_tasks,
                            "devices": mesh_size(mesh)}, table)


def _verdict(diff: float, ci: float) -> str:
    """RL^2 - PSRL's 95% CI against 0 (``stats.ci_verdict``), in this summary's words."""
    verdict = stats.ci_verdict(diff, ci, 0.0, 0.0)  # "tie" and "undefined" pass through
    return {"better": "rl2 ahead", "worse": "psrl ahead"}.get(verdict, verdict)


def psrl_summary(psrl: np.ndarray, rl2_per_seed: np.ndarray) -> dict:
    """PSRL's per-episode returns ``psrl[M, E]`` summarized over tasks (95% CIs), and RL^2's
    mean episode return of a trial minus PSRL's: ``rl2_minus_psrl`` with RL^2 averaged over its
    ``S`` training seeds (``rl2_per_seed[S, M, E]``), paired over the same tasks (95% CI over
    tasks); with ``S >= 2`` also ``rl2_minus_psrl_over_seeds``: each seed's difference (mean
    over tasks) and the t-CI over seeds -- the one that says whether another training seed
    would change the verdict."""
    mean_ci = [stats.mean_ci95(psrl[:, i]) for i in range(psrl.shape[1])]
    trial = stats.mean_ci95(psrl.sum(1))
    per_seed_diff = rl2_per_seed.mean(2) - psrl.mean(1)  # [S, M]
    diff, ci = stats.mean_ci95(per_seed_diff.mean(0))
    out = {"per_episode": [m for m, _ in mean_ci], "per_episode_ci95": [c for _, c in mean_ci],
           "trial_return": trial[0], "trial_return_ci95": trial[1],
           "rl2_minus_psrl": {"mean_episode_return": diff, "ci95": ci,
                              "verdict": _verdict(diff, ci)}}
    if rl2_per_seed.shape[0] >= 2:
        over = stats.seed_summary(per_seed_diff.mean(1))
        out["rl2_minus_psrl_over_seeds"] = dict(over, verdict=_verdict(over["mean"],
                                                                       over["ci95"]))
    return out


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
