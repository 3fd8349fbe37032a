"""Successor features + GPI transfer to new tasks vs learning them from scratch (FeatureNav2D).

    python -m experiments.successor_features --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.successor_features --resume runs/successor_features/<timestamp>

Story (Barreto et al. 2017): on ``envs.FeatureNav2D`` every task's reward is ``phi . w`` with
``phi`` the indicator of four regions. Phase 1 trains one SF network per **base task**
``w = e_1..e_4`` (all base tasks and seeds as one ``vmap``-ed program). Phase 2 visits a sequence
of **new tasks** ``w'``; on each, two methods get the same budget of env steps per seed:

* ``sf_gpi``: an SF network learned with GPI over the four frozen base networks (acting and
  bootstrapping: ``algos/sf.py``), started as a copy of one of them (``warm_start``): zero-shot
  at step 0, then improved;
* ``scratch``: the same learner with an empty library (plain SF Q-learning on ``w_hat``).

Neither method is told ``w'``: both regress it on the rewards they see (``w_hat``, from an
optimistic prior: every feature's weight starts at ``w_prior`` = 1, so GPI first visits the
regions it knows nothing about). The greedy policy (GPI over library + own network, on
``w_hat``) is evaluated at step 0 (``w_hat`` = the prior) and after every budget; each budget
segment is a checkpointed phase. ``zero_shot_given_w`` is the step-0 return when the task's
true ``w'`` is handed over instead (Barreto et al.'s zero-shot setting). ``return_at_budget``
is the return at ``budget`` (the comparison's stated budget), ``return_by_budget`` the whole
curve; means and 95% CIs over seeds (``stats``).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.sf_gpi`` / ``.scratch``:
``{task_j: {w, zero_shot_given_w, return_by_budget, return_at_budget}}``,
``results.w_regression_error`` per task (max |w_hat - w'| of ``sf_gpi`` at the last budget),
``results.base_return``), ``curves.png`` (return vs steps per new task), ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from envs.feature_nav import FeatureNav2D
from metarl_jax import stats
from metarl_jax.algos.sf import Library, SFConfig, SFLearner
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import train_phase
from metarl_jax.randomization.param_space import fixed_space
from metarl_jax.transfer.evaluation import episode_return

NAME = "successor_features"
METHODS = ("sf_gpi", "scratch")
NEW_TASKS = ((-1.0, 1.0, -1.0, 0.5), (0.5, -1.0, 1.0, -0.5), (-0.5, -0.5, -1.0, 1.0))


@dataclasses.dataclass(frozen=True)
class Config:
    base: SFConfig = SFConfig(total_steps=16_000)  # per base task and seed
    # New tasks (both methods alike): less exploration, learning sooner, a 10x smaller rate (at
    # 1e-3 the new network's TD updates pulled the GPI policy below the library's within 800
    # steps on the cpu preset; at 1e-4 it stays near it).
    new: SFConfig = SFConfig(total_steps=3200, learning_starts=320, eps_start=0.3,
                             learning_rate=1e-4)
    new_tasks: Tuple[Tuple[float, ...], ...] = NEW_TASKS
    budgets: Tuple[int, ...] = (400, 800, 1600, 3200)  # env steps per seed on each new task
    budget: int = 800  # the stated budget of results.*.return_at_budget
    num_seeds: int = 5
    log_every: int = 5  # updates averaged into one metrics line
    updates_per_chunk: int = 5  # metrics lines per compiled chunk
    base_updates_per_chunk: int = 50
    eval_episodes: int = 32
    warm_start: bool = True  # sf_gpi's own network starts as a copy of a library member

    def __post_init__(self):
        self.base.validate()
        self.new.validate()
        if not self.new_tasks or any(len(w) != 4 for w in self.new_tasks):
            raise ValueError(f"new_tasks must be non-empty 4-vectors, got {self.new_tasks}")
        step = self.new.num_envs * self.log_every * self.updates_per_chunk
        if list(self.budgets) != sorted(set(self.budgets)) or any(b % step for b in self.budgets):
            raise ValueError(f"budgets must increase and be multiples of num_envs * log_every * "
                             f"updates_per_chunk = {step}, got {self.budgets}")
        if self.budget not in self.budgets:
            raise ValueError(f"budget {self.budget} must be one of budgets {self.budgets}")
        if self.budgets[-1] > self.new.total_steps:
            raise ValueError(f"new.total_steps ({self.new.total_steps}) must cover the last "
                             f"budget ({self.budgets[-1]}): it sets the exploration schedule")
        if self.base.num_updates < self.log_every * self.base_updates_per_chunk:
            raise ValueError("base.total_steps is less than one chunk of updates")
        check_at_least_one(self, ("num_seeds", "log_every", "updates_per_chunk", "eval_episodes"))


PRESETS = {
    "quick": Config(base=SFConfig(total_steps=2400, learning_starts=400, buffer_size=4000),
                    new=SFConfig(total_steps=800, learning_starts=160, eps_start=0.3,
                                 learning_rate=1e-4, buffer_size=4000),
                    new_tasks=NEW_TASKS[:1], budgets=(400, 800), budget=400, num_seeds=2,
                    base_updates_per_chunk=10, eval_episodes=8),
    "cpu": Config(),
    "accel": Config(base=SFConfig(num_envs=64, total_steps=64_000), num_seeds=8),
}


def stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def greedy_returns(sf, config, params, library, w, env_params, key, num_episodes):
    """Mean return ``[S]`` of each seed's greedy GPI policy on ``w[S, K]`` (same episode keys)."""
    keys = jax.random.split(key, num_episodes)

    def one_seed(p, lib, w_s):
        act = lambda k, obs: sf.gpi_act(config, p, lib, w_s, obs)  # noqa: E731
        return jnp.mean(jax.vmap(lambda k: episode_return(act, sf.env, k, env_params))(keys))

    return jax.vmap(one_seed)(params, library, w)


def warm_start(sf, config, state, base_params, start):
    """``state`` (``[S]``) with its own SF network (and target) a copy of the library member
    whose greedy value ``max_a psi_i(start, a) . w_hat`` is highest at the start position
    (``w_hat``: still the prior). A freshly initialized network's values are near 0 where it has
    no data, and as soon as TD lifts them anywhere, GPI starts to follow them there; a copy of a
    stored policy's SFs starts at that policy's values, which GPI already counted."""
    w = jax.vmap(sf.w_hat, in_axes=(0, None))(state, config)  # [S, K]
    net = sf.network(config)
    psi0 = jax.vmap(jax.vmap(net.apply, in_axes=(0, None)), in_axes=(0, None))(base_params, start)
    best = jnp.argmax(jnp.max(jnp.einsum("slak,sk->sla", psi0, w), axis=-1), axis=-1)  # [S]
    own = jax.tree.map(lambda x: x[jnp.arange(x.shape[0]), best], base_params)
    return state.replace(params=own, target_params=own)




def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    env = FeatureNav2D()
    sf = SFLearner(env, 4)
    S, K = config.num_seeds, 4
    task_params = lambda w: env.default_params().replace(w=jnp.asarray(w, jnp.float32))  # noqa
    evaluate = jax.jit(greedy_returns, static_argnums=(0, 1, 7))
    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)

    # Phase 1: the base tasks e_1..e_4, every (seed, task) one row of a [S * K] stacked state.
    base_keys = jax.random.split(jax.random.PRNGKey(seed), S * K)
    base_spaces = [fixed_space(task_params(w)) for w in np.eye(K)]
    base_init = lambda: stack([sf.init(base_keys[s * K + k], config.base, base_spaces[k])  # noqa
                               for s in range(S) for k in range(K)])
    template = jax.eval_shape(base_init).params  # [S * K, ...]
    empty = Library(jax.tree.map(lambda x: jnp.zeros(x.shape[:1] + (1,) + x.shape[1:], x.dtype),
                                 template),
                    jnp.zeros((S * K, 1), jnp.bool_))
    base = train_phase(
        run_dir, "base", init=base_init,
        chunk=lambda s, n: sf.train_chunk_seeds(s, config.base, n, empty,
                                                log_every=config.log_every),
        num_updates=config.base.num_updates // config.log_every,
        updates_per_chunk=config.base_updates_per_chunk,
        steps_per_update=config.base.num_envs * config.log_every * S * K, show=("episode_return",))
    base_params = jax.tree.map(lambda x: x.reshape((S, K) + x.shape[1:]), base.params)
    base_returns = []
    for k in range(K):  # each base policy on its own task (its true w, not w_hat)
        idx = np.arange(S) * K + k
        own = jax.tree.map(lambda x: x[idx], base.params)
        lib = jax.tree.map(lambda x: x[idx, :0], empty)
        base_returns.append(evaluate(sf, config.base, own, lib, jnp.tile(np.eye(K)[k], (S, 1)),
                                     task_params(np.eye(K)[k]), eval_key, config.eval_episodes))

    # Phase 2: each new task, each method, budget segment by budget segment.
    results = {m: {} for m in METHODS}
    w_error = {}
    lines = lambda steps: steps // (config.new.num_envs * config.log_every)  # noqa: E731
    for j, w_new in enumerate(config.new_tasks):
        params_j = task_params(w_new)
        true_w = jnp.tile(jnp.asarray(w_new, jnp.float32), (S, 1))
        for method in METHODS:
            library = Library(base_params, jnp.full((S, K), method == "sf_gpi"))
            keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 100 + j), S)
            state = stack([sf.init(k, config.new, fixed_space(params_j)) for k in keys])
            if method == "sf_gpi" and config.warm_start:
                state = warm_start(sf, config.new, state, base_params, params_j.start)
            given_w = evaluate(sf, config.new, state.params, library, true_w, params_j,
                               eval_key, config.eval_episodes)
            w_hat = jax.vmap(sf.w_hat, in_axes=(0, None))(state, config.new)  # the prior
            curve = {0: evaluate(sf, config.new, state.params, library, w_hat, params_j,
                                 eval_key, config.eval_episodes)}
            done = 0
            for b in config.budgets:
                state = train_phase(
                    run_dir, f"task{j}_{method}_{b}", init=lambda s=state: s,
                    chunk=lambda s, n, lib=library: sf.train_chunk_seeds(
                        s, config.new, n, lib, log_every=config.log_every),
                    num_updates=lines(b - done), updates_per_chunk=config.updates_per_chunk,
                    steps_per_update=config.new.num_envs * config.log_every * S)
                w_hat = jax.vmap(sf.w_hat, in_axes=(0, None))(state, config.new)
                curve[b] = evaluate(sf, config.new, state.params, library, w_hat, params_j,
                                    eval_key, config.eval_episodes)
                done = b
            by_budget = {str(b): stats.seed_summary(r) for b, r in curve.items()}
            results[method][f"task{j}"] = dict(
                w=list(w_new), zero_shot_given_w=stats.seed_summary(given_w),
                return_by_budget=by_budget,
                return_at_budget=by_budget[str(config.budget)])
            if method == "sf_gpi":
                w_error[f"task{j}"] = stats.seed_summary(jnp.max(jnp.abs(w_hat - true_w), axis=-1))

    results["w_regression_error"] = w_error
    results["base_return"] = {f"e{k + 1}": stats.seed_summary(r)
                              for k, r in enumerate(base_returns)}
    plot(run_dir / "curves.png", results, config)
    rows = [dict(task=f"task{j}", method=m,
                 given_w_0=results[m][f"task{j}"]["zero_shot_given_w"]["mean"],
                 w_hat_0=results[m][f"task{j}"]["return_by_budget"]["0"]["mean"],
                 at_budget=results[m][f"task{j}"]["return_at_budget"]["mean"],
                 ci95=results[m][f"task{j}"]["return_at_budget"]["ci95"])
            for j in range(len(config.new_tasks)) for m in METHODS]
    return finish(run_dir, {"results": results, "budget": config.budget}, format_table(rows))


def plot(path, results, config):
    tasks = [f"task{j}" for j in range(len(config.new_tasks))]
    fig = Figure(figsize=(4.2 * len(tasks), 3.8), layout="constrained")
    for i, task in enumerate(tasks):
        ax = fig.add_subplot(1, len(tasks), i + 1)
        for method in METHODS:
            r = results[method][task]
            x = [0] + list(config.budgets)
            y = [r["return_by_budget"][str(b)]["mean"] for b in x]
            ci = [r["return_by_budget"][str(b)]["ci95"] or 0.0 for b in x]
            (line,) = ax.plot(x, y, marker="o", label=method)
            ax.fill_between(x, np.subtract(y, ci), np.add(y, ci), alpha=0.2,
                            color=line.get_color(), linewidth=0)
        ax.axvline(config.budget, color="grey", lw=0.8, ls="--")
        ax.set(title=f"{task}: w' = {results['sf_gpi'][task]['w']}", xlabel="env steps per seed",
               ylabel="greedy return" if i == 0 else None)
        ax.grid(True, alpha=0.3)
        ax.legend()
    plots._save(fig, path)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
