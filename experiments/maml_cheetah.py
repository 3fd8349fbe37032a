"""MAML-RL (ProMP / TRPO outer step) on MJX HalfCheetah velocity / direction tasks vs a pretrained
policy (Finn 2017; Rothfuss 2019).

    python -m experiments.maml_cheetah --preset quick|cpu|accel [--task vel|dir] [--seed N]
                                       [--out DIR] [field=value ...]
    python -m experiments.maml_cheetah --resume runs/maml_cheetah/<timestamp>
    python -m experiments.maml_cheetah --preset accel --devices all   # meta-batch over devices
    python -m experiments.maml_cheetah --preset accel num_seeds=5     # 5 seeds in one program

Story (MAML paper, sec. 5.3): the cheetah must run at a target velocity ``~ U[0, 2]`` m/s
(``--task vel``: reward ``-|v_x - v*| - 0.05 |a|^2``; ``vel_target_range=0,3``: ProMP's
``U[0, 3]``) or in a direction ``+-1`` (``--task dir``:
``direction * v_x - 0.05 |a|^2``), a task drawn per meta-batch entry and hidden from the policy.
``maml``: MAML-RL (one inner policy-gradient step from ``episodes_per_task`` episodes; outer step
``maml.outer``: ``promp``, ProMP's clipped post-adaptation surrogate with the LVC inner
estimator, or ``trpo``, the MAML paper's trust region on the post-adaptation KL), the whole
meta-iteration -- MJX rollouts of every task, the inner step, post-adaptation rollouts, the outer
step -- one compiled program. ``pretrained``: the same network trained by the same outer
optimizer on all tasks at once (zero inner steps), adapted at test time with MAML's inner step.
Both are evaluated on ``eval_tasks`` held-out tasks after 0..``eval_steps`` inner steps. With
``maml.inner_lr_mode=scalar|per_param`` MAML also learns its inner rates (Meta-SGD, Li et al.
2017); the pretrained policy is then adapted both at the fixed initial rate and with MAML's
learned rates (``pretrained_at_maml_rate``), so that a gain cannot be just a larger step.
``pretrained_eval_rates=0.025,0.05,0.2`` also adapts the pretrained policy at each of those fixed
rates (``pretrained_at_lr_0p025`` ...: a step-size-tuned baseline; evaluation only).
``python -m metarl_jax.transfer.adapt_sweep RUN_DIR --rates ... --episodes ...`` re-adapts a
finished run's saved policies at other rates and sample sizes without training.

``num_seeds=S`` trains S seeds side by side in one program (every meta-iteration ``vmap``-ed over
seeds: on an accelerator one program fills the device where one seed's meta-batch may not; on a
2-core CPU separate processes are as fast) and evaluates each on its own held-out tasks. Seed i
is the run ``--seed <seed + i>`` would be (same keys, tasks and initial parameters; MJX's floats
can differ in the last digits under ``vmap``, which training amplifies, so the match is in
distribution, not bit for bit). Not with ``--devices`` (which splits one seed's tasks).

Presets: ``quick`` (tests: 2 iterations on 4 tasks x 2 episodes x 20 steps, 32x32 tanh, ProMP),
``cpu`` (8 tasks x 8 episodes x 100-step episodes, the paper's 2x100 ReLU policy, ProMP + LVC,
GAE lambda 0.95, 600 meta-iterations per method, 200 held-out tasks, the pretrained policy also
adapted at rates 0.025 / 0.05 / 0.2; about 2.5 hours on a 2-core CPU shared by five such runs;
at this size MAML-TRPO shows no adaptation gain, ProMP does: see docs/maml.md), ``accel`` (the
MAML paper: MAML-TRPO, 40 tasks x 20 episodes x 200 steps, 2x100 ReLU policy, 500 iterations).

Writes: ``summary.json`` (one seed: ``results.returns_by_steps.<method>``: mean return per
episode after 0..S inner steps; ``results.returns_ci95``; ``results.returns_per_task``
(``[G][S+1]``); ``results.paired_over_tasks`` (``paired_gains``, with
``maml_<s>_minus_best_pretrained``: against the pretrained evaluation with the highest mean
return, named in its ``baseline`` field); ``results.maml_inner_lr``
(learned rates: their mean); ``results.velocity_error_by_steps`` (vel: mean |v_x - v*| after
0..S steps); ``results.final_train``; ``results.task``. Several seeds: ``results.per_seed``, a
list of those; ``results.returns_by_steps`` / ``returns_ci95``, the mean over seeds and its 95%
t-CI; ``results.over_seeds.<gain>``, ``stats.seed_summary`` + ``verdict_vs_0`` of each paired
gain's per-seed mean), ``adaptation.png`` (mean
x-velocity per held-out task before and after adaptation, against the task's target; the first
seed's), ``curves.png``, ``metrics.jsonl``, ``config.json``, ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import ClassVar, Tuple

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from metarl_jax import stats
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.maml import mean_rate
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig
from metarl_jax.io.cli import UsageError, supports_devices
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.over_seeds import summary_vs_0
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics
from metarl_jax.scale import mesh_size, run_mesh
from metarl_jax.transfer.few_shot import (
    held_out_tasks,
    meta_phases,
    plot_meta_training,
    returns_by_steps,
    seed_keys,
    steps_table_rows,
    train_meta_phases,
)

NAME = "maml_cheetah"
METHODS = ("maml", "pretrained")
TASKS = ("vel", "dir")
X_VELOCITY = 8  # obs = (qpos[1:] [8], qvel [9]); qvel[0] is the root's forward velocity
_SHARED = dict(hidden_sizes=(32, 32), activation="tanh", init_log_std=-0.5, inner_lr=0.1,
               meta_batch_size=8, episodes_per_task=8, max_kl=0.01)


@dataclasses.dataclass(frozen=True)
class LocomotionMetaConfig:
    """What ``maml_cheetah`` and ``maml_ant`` share: the task family, both methods' configs, the
    run lengths and the evaluation."""

    TASKS: ClassVar[Tuple[str, ...]] = TASKS  # what ``task`` may be (maml_ant's are others)
    task: str = "vel"
    maml: MAMLRLConfig = MAMLRLConfig(outer="trpo", estimator="pg", **_SHARED)
    pretrained: MAMLRLConfig = MAMLRLConfig(outer="trpo", estimator="pg", num_inner_steps=0,
                                            **_SHARED)
    episode_steps: int = 100  # the paper: 200
    maml_iterations: int = 150
    pretrained_iterations: int = 150
    updates_per_chunk: int = 5
    eval_tasks: int = 40
    eval_steps: int = 2
    # extra fixed inner rates at which the pretrained policy is also adapted at evaluation (a
    # step-tuned baseline, ``pretrained_at_lr_<rate>``); read by the evaluation only
    pretrained_eval_rates: Tuple[float, ...] = ()
    # seeds trained side by side in one program (the meta-iteration vmapped over seeds); seed i
    # is the run ``--seed seed+i`` would be (few_shot.seed_keys); summary: per-seed results and
    # 95% t-CIs over seeds (``over_seeds``)
    num_seeds: int = 1

    def __post_init__(self):
        if self.task not in self.TASKS:
            raise ValueError(f"task must be one of {self.TASKS}, got {self.task!r}")
        for method in METHODS:
            getattr(self, method).validate()
        if self.pretrained.num_inner_steps != 0:
            raise ValueError("pretrained.num_inner_steps must be 0 (it is trained on all tasks)")
        if self.maml.num_inner_steps < 1:
            raise ValueError("maml.num_inner_steps must be >= 1")
        check_at_least_one(self, ("episode_steps", "maml_iterations", "pretrained_iterations",
                                  "updates_per_chunk", "eval_tasks", "eval_steps", "num_seeds"))
        for method in METHODS:
            if getattr(self, f"{method}_iterations") % self.updates_per_chunk:
                raise ValueError(f"updates_per_chunk={self.updates_per_chunk} must divide "
                                 f"{method}_iterations (one compile per method)")
        rates = self.pretrained_eval_rates
        if not all(np.isfinite(r) and r > 0 for r in rates) or len(set(rates)) != len(rates):
            raise ValueError(f"pretrained_eval_rates must be distinct finite rates > 0, got "
                             f"{rates}")


@dataclasses.dataclass(frozen=True)
class Config(LocomotionMetaConfig):
    # vel: target velocities ~ U[low, high] for training and held-out tasks (MAML: U[0, 2];
    # ProMP's HalfCheetahRandVel: U[0, 3])
    vel_target_range: Tuple[float, float] = (0.0, 2.0)

    def __post_init__(self):
        super().__post_init__()
        low, high = self.vel_target_range
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(f"vel_target_range must be finite (low, high) with low < high, got "
                             f"{self.vel_target_range}")


def _sized(config: MAMLRLConfig, **changes) -> MAMLRLConfig:
    return config.replace(**changes)


_TINY = dict(meta_batch_size=4, episodes_per_task=2, cg_iters=3, max_backtracks=5)
# ProMP's outer step (Rothfuss 2019) with its LVC inner estimator, for both methods: at the cpu
# size MAML-TRPO's meta-policy shows no gain from its inner step, ProMP's does (docs/maml.md, #19).
_PROMP = dict(outer="promp", estimator="lvc")
# The MAML paper's policy network (2 x 100 ReLU): the cpu and accel presets' for both methods.
_PAPER_NET = dict(hidden_sizes=(100, 100), activation="relu")
# The cpu preset (docs/maml.md, #19 parts J and K): ProMP + LVC, the paper's network and GAE
# lambda 0.95 for both methods; with it MAML's one step beats its 0-step and the same-network
# pretrained policy at its best step on vel and on dir (5 seeds each).
_CPU = dict(**_PROMP, **_PAPER_NET, gae_lambda=0.95)
_PAPER = dict(meta_batch_size=40, episodes_per_task=20, **_PAPER_NET)
PRESETS = {
    "quick": Config(maml=_sized(Config.maml, **_TINY, **_PROMP),
                    pretrained=_sized(Config.pretrained, **_TINY, **_PROMP),
                    episode_steps=20, maml_iterations=2, pretrained_iterations=2,
                    updates_per_chunk=1, eval_tasks=4, eval_steps=1),
    "cpu": Config(maml=_sized(Config.maml, **_CPU), pretrained=_sized(Config.pretrained, **_CPU),
                  maml_iterations=600, pretrained_iterations=600, eval_tasks=200,
                  pretrained_eval_rates=(0.025, 0.05, 0.2)),
    "accel": Config(maml=_sized(Config.maml, **_PAPER), pretrained=_sized(Config.pretrained,
                                                                          **_PAPER),
                    episode_steps=200, maml_iterations=500, pretrained_iterations=500,
                    updates_per_chunk=10, eval_tasks=200, eval_steps=3),
}


def make_env(config: Config):
    """The MJX task env (imported here: MuJoCo loads only when the experiment runs)."""
    from envs.half_cheetah import HalfCheetahDir, HalfCheetahVel

    if config.task == "vel":
        return HalfCheetahVel(max_steps=config.episode_steps, target_range=config.vel_target_range)
    return HalfCheetahDir(max_steps=config.episode_steps)


def eval_config(config: Config, method: str) -> MAMLRLConfig:
    """The config a method adapts with at test time: MAML's own; for the baseline, MAML's inner
    step (estimator, rate) with a fixed rate. When MAML's rate is fixed this is exactly
    ``config.maml``, so both evaluations share one compiled program."""
    if method == "pretrained":
        return config.maml.replace(inner_lr_mode="fixed", inner_lr=config.maml.inner_lr)
    return config.maml


def task_values(tasks, task: str) -> np.ndarray:
    """``[G]`` the task field of each held-out task (target velocity or direction)."""
    return np.asarray(tasks.target_velocity if task == "vel" else tasks.direction)


def plot_adaptation(path, targets: np.ndarray, velocity: dict, task: str) -> None:
    """Mean forward velocity per held-out task (y) against its target / direction (x)."""
    fig = Figure(figsize=(4.2 * len(velocity), 3.8), layout="constrained")
    axes = fig.subplots(1, len(velocity), squeeze=False)[0]
    for ax, (method, v) in zip(axes, velocity.items()):  # v: [G, S+1]
        for step in range(v.shape[1]):
            ax.plot(targets, v[:, step], "o", ms=4, alpha=0.8,
                    label=f"{step} inner step{'s' if step != 1 else ''}")
        lo, hi = float(targets.min()), float(targets.max())
        ax.plot([lo, hi], [lo, hi] if task == "vel" else [0, 0], "k--", lw=1,
                label="target" if task == "vel" else "zero")
        ax.set_xlabel("target velocity" if task == "vel" else "direction")
        ax.set_ylabel("mean forward velocity (m/s)")
        ax.set_title(method)
        ax.legend(fontsize=7)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)


def policies(config: Config):
    """``{method: Phase(MAMLRL, method config, (task space,))}``: what ``main`` trains;
    ``metarl_jax.load_run`` restores them (``act`` is the pre-adaptation meta-policy)."""
    env = make_env(config)
    return meta_phases(MAMLRL(env), config, env.task_space(), METHODS)


AT_MAML_RATE = "pretrained_at_maml_rate"


def at_rate_name(rate: float) -> str:
    """``pretrained_at_lr_0p05`` for 0.05: the pretrained policy adapted at a fixed ``rate`` (no
    dot, so that ``over_seeds``' dotted keys can name it)."""
    return f"pretrained_at_lr_{rate:g}".replace(".", "p")


def evaluated_policies(config, states) -> dict:
    """``{name: (meta, adaptation config)}`` of what ``evaluate_methods`` adapts: each of
    ``METHODS`` (``eval_config``); when MAML learns its inner rate (``inner_lr_mode`` not
    ``fixed``: Meta-SGD), also ``AT_MAML_RATE``, the pretrained policy adapted with MAML's learned
    rate(s), so that MAML's gain cannot be only a larger step: the pretrained baseline gets both
    the initial rate and the learned one; and ``at_rate_name(r)`` for each of
    ``config.pretrained_eval_rates``: the pretrained policy adapted at the fixed rate ``r`` (the
    rate is a config leaf, so these reuse the one compiled evaluation)."""
    out = {m: (states[m].meta, eval_config(config, m)) for m in METHODS}
    if config.maml.inner_lr_mode != "fixed":
        learned = states["maml"].meta.inner_lr
        out[AT_MAML_RATE] = (states["pretrained"].meta.replace(inner_lr=learned), config.maml)
    for rate in config.pretrained_eval_rates:
        out[at_rate_name(rate)] = (states["pretrained"].meta,
                                   eval_config(config, "pretrained").replace(inner_lr=rate))
    return out


def evaluate_methods(run_dir, learner: MAMLRL, states, config, space, base_key, seed_index=0):
    """Adapt each of ``evaluated_policies`` to ``config.eval_tasks`` held-out tasks drawn from
    ``space`` for 0..``config.eval_steps`` inner steps (the same tasks and rollout keys for all).
    ``states``: one seed's (``base_key`` its key; ``seed_index`` its place in a several-seed run,
    for its training curve's last values). Returns ``(tasks, results, obs)``: ``results`` has
    ``returns_by_steps`` / ``returns_ci95`` (``{name: [S+1]}``, mean and 95% CI half-width over
    tasks), ``paired_over_tasks`` (``paired_gains``), ``final_train`` (each method's last
    training update's pre/post returns) and, when MAML learns its rate, ``maml_inner_lr`` (the
    mean learned rate); ``obs[name]``: ``[G, S+1, T, N, obs_size]`` observed trajectories."""
    tasks, rollout_key = held_out_tasks(space, base_key, config.eval_tasks)
    by_steps, ci95, observed, per_task = {}, {}, {}, {}
    for name, (meta, adapt_config) in evaluated_policies(config, states).items():
        returns, obs = learner.evaluate(meta, adapt_config, tasks, rollout_key, config.eval_steps)
        by_steps[name], ci95[name] = returns_by_steps(returns)  # returns: [G, S+1]
        per_task[name] = np.asarray(returns, np.float64)
        observed[name] = np.asarray(obs)
    final = {}
    for method in METHODS:
        last = phase_metrics(run_dir, method)[-1]
        final[method] = {k: last.get(f"{k}_per_seed", [last[k]])[seed_index]
                         for k in ("return_pre", "return_post")}
    results = {"task": config.task, "returns_by_steps": by_steps, "returns_ci95": ci95,
               "returns_per_task": {m: r.tolist() for m, r in per_task.items()},
               "paired_over_tasks": paired_gains(per_task), "final_train": final}
    if AT_MAML_RATE in per_task:
        results["maml_inner_lr"] = float(mean_rate(states["maml"].meta.inner_lr))
    return tasks, results, observed


BEST_PRETRAINED = "best_pretrained"


def paired_gains(per_task: dict) -> dict:
    """The adaptation gains, paired over the held-out tasks (every policy is evaluated on the
    same tasks with the same rollout keys, so the task-to-task spread cancels): for each inner
    step count s >= 1, ``maml_s_minus_maml_0``, ``maml_s_minus_pretrained_0`` (the pretrained
    policy not adapted: its best "step size" may be none), ``maml_s_minus_<baseline>_s`` for
    each other evaluated policy (``pretrained``, ``AT_MAML_RATE`` and ``at_rate_name(r)`` when
    present), each ``stats.paired_comparison`` (mean, 95% CI of the difference, verdicts), and
    ``maml_s_minus_best_pretrained``: against the pretrained evaluation with the highest mean
    return (un-adapted, or adapted s steps at any evaluated rate; named by its ``baseline``
    field, e.g. ``pretrained_at_lr_0p05_1``) -- chosen on the test tasks, which favours the
    baseline: issue #19's strict comparison. ``per_task[name]``: ``[G, S+1]`` returns."""
    maml = per_task["maml"]
    out = {}
    for s in range(1, maml.shape[1]):
        out[f"maml_{s}_minus_maml_0"] = stats.paired_comparison(maml[:, s], maml[:, 0])
        candidates = {"pretrained_0": per_task["pretrained"][:, 0]}
        out[f"maml_{s}_minus_pretrained_0"] = stats.paired_comparison(
            maml[:, s], candidates["pretrained_0"])
        for name, baseline in per_task.items():
            if name != "maml":
                out[f"maml_{s}_minus_{name}_{s}"] = stats.paired_comparison(maml[:, s],
                                                                            baseline[:, s])
            if name.startswith("pretrained"):
                candidates[f"{name}_{s}"] = baseline[:, s]
        best = max(candidates, key=lambda name: float(np.mean(candidates[name])))
        out[f"maml_{s}_minus_{BEST_PRETRAINED}"] = dict(
            stats.paired_comparison(maml[:, s], candidates[best]), baseline=best)
    return out


def over_seed_gains(per_seed: list) -> dict:
    """Each adaptation gain over the seeds of a several-seed run: ``{gain: stats.seed_summary +
    verdict_vs_0}`` of the per-seed means of ``paired_over_tasks[gain]`` (``per_seed[i]``: seed
    i's ``evaluate_methods`` results). For ``maml_<s>_minus_best_pretrained`` that is, per seed,
    the smallest of MAML's s-step gains over the pretrained policy's evaluations: a gain over
    the baseline at its best step size, chosen on each seed's test tasks."""
    return {key: summary_vs_0([seed["paired_over_tasks"][key]["mean"] for seed in per_seed])
            for key in per_seed[0]["paired_over_tasks"]}


def combine_seeds(per_seed: list, seeds: list) -> dict:
    """The ``results`` of a several-seed run from each seed's (``evaluate_methods`` plus what the
    experiment added): ``returns_by_steps`` / ``returns_ci95`` the mean over seeds of each
    seed's mean return and its 95% t-CI over seeds (``{name: [S+1]}``), ``over_seeds``
    (``over_seed_gains``), ``seeds`` (their ``--seed`` values) and ``per_seed`` (the list)."""
    names = list(per_seed[0]["returns_by_steps"])
    means = {n: np.array([seed["returns_by_steps"][n] for seed in per_seed]) for n in names}
    return {"task": per_seed[0]["task"], "num_seeds": len(per_seed), "seeds": seeds,
            "returns_by_steps": {n: m.mean(0).tolist() for n, m in means.items()},
            "returns_ci95": {n: stats.ci95(m, axis=0).tolist() for n, m in means.items()},
            "over_seeds": over_seed_gains(per_seed), "per_seed": per_seed}


def headline_rows(results: dict) -> list:
    """Table rows of the headline gains (1 inner step): mean, 95% CI, verdict against 0 -- over
    seeds for a several-seed run, paired over the held-out tasks for one seed."""
    if "over_seeds" in results:
        gains, label, verdict = results["over_seeds"], "gain over seeds", "verdict_vs_0"
    else:
        gains, label, verdict = (results["paired_over_tasks"], "gain paired over tasks",
                                 "paired_verdict")
    rows = []
    for gain in ("maml_1_minus_maml_0", "maml_1_minus_pretrained_1",
                 f"maml_1_minus_{BEST_PRETRAINED}"):
        s = gains.get(gain)
        if s is not None:
            name = f"{gain} ({s['baseline']})" if "baseline" in s else gain
            rows.append({label: name, "mean": s["mean"], "95% CI": s["ci95"], "vs 0": s[verdict]})
    return rows


def check_seeds_on_mesh(config, mesh) -> None:
    """``UsageError`` for several seeds on several devices (``ShardedMAMLRL`` splits one seed's
    meta-batch of tasks over devices, not seeds)."""
    if config.num_seeds > 1 and mesh_size(mesh) > 1:
        raise UsageError(f"num_seeds={config.num_seeds} trains its seeds in one program on one "
                         f"device; --devices splits one seed's meta-batch of tasks over devices. "
                         f"Use one of them.")


def train_and_evaluate(name: str, args, make_env_fn, describe):
    """Start the run, train ``METHODS`` as resumable phases on ``make_env_fn(config)``'s tasks
    (``--devices N``: each update's meta-batch of tasks split over N devices;
    ``config.num_seeds`` seeds in one program) and evaluate each seed (``evaluate_methods``).
    ``describe(tasks, results, obs)`` adds the experiment's own fields to one seed's
    ``results`` from its observed trajectories (dropped after it) and returns what the
    experiment plots. Returns ``(run_dir, config, results, shown)``: ``results`` one seed's, or
    ``combine_seeds``' for several, with ``devices``; ``shown``: ``describe``'s return for the
    first seed."""
    mesh = run_mesh(args.devices)
    check_seeds_on_mesh(args.config, mesh)  # a fresh run: before its folder exists
    run_dir, config, seed = start_run(name, args)
    check_seeds_on_mesh(config, mesh)  # a resumed run's saved config
    env = make_env_fn(config)
    phases = meta_phases(MAMLRL(env), config, env.task_space(), METHODS)
    learner, _, (space,) = phases[METHODS[0]][:3]
    keys = seed_keys(seed, config.num_seeds)
    several = config.num_seeds > 1
    states = train_meta_phases(run_dir, phases, keys if several else keys[0],
                               config.updates_per_chunk, mesh=mesh)
    per_seed, shown = [], None
    for i in range(config.num_seeds):
        seed_states = {m: select_seed(s, i) for m, s in states.items()} if several else states
        tasks, results, obs = evaluate_methods(run_dir, learner, seed_states, config, space,
                                               keys[i], seed_index=i)
        plotted = describe(tasks, results, obs)
        shown = plotted if i == 0 else shown
        per_seed.append(results)
        del obs  # [G, S+1, T, N, obs] per policy: one seed's at a time
    results = (combine_seeds(per_seed, [seed + i for i in range(config.num_seeds)]) if several
               else per_seed[0])
    results["devices"] = mesh_size(mesh)
    return run_dir, config, results, shown


def summary_table(results: dict) -> str:
    """The printed table: mean return after 0..S steps per policy (several seeds: the mean over
    seeds) and the headline gains with their CIs (``headline_rows``)."""
    return (format_table(steps_table_rows(results["returns_by_steps"])) + "\n\n"
            + format_table(headline_rows(results)))


@supports_devices
def main(args) -> dict:
    def describe(tasks, results, obs):
        targets = task_values(tasks, results["task"])
        # mean forward velocity per task and step count, over T and episodes: [G, S+1]
        velocity = {m: o[..., X_VELOCITY].mean(axis=(2, 3)) for m, o in obs.items()}
        if results["task"] == "vel":
            results["velocity_error_by_steps"] = {
                m: np.abs(v - targets[:, None]).mean(0).tolist() for m, v in velocity.items()}
        return targets, velocity

    run_dir, config, results, (targets, velocity) = train_and_evaluate(NAME, args, make_env,
                                                                       describe)
    plot_adaptation(run_dir / "adaptation.png", targets, velocity, config.task)
    plot_meta_training(run_dir / "curves.png", run_dir, METHODS, ylabel="mean episode return",
                       title=f"HalfCheetah-{config.task} (MJX) meta-training")
    return finish(run_dir, {"results": results, "eval_tasks": config.eval_tasks},
                  summary_table(results))


def task_flag_to_override(argv):
    """``--task X`` / ``--task=X`` -> the config override ``task=X`` (the issue's spelling)."""
    out, it = [], iter(argv)
    for item in it:
        if item == "--task":
            value = next(it, None)
            out.append(f"task={value}" if value is not None else item)
        elif item.startswith("--task="):
            out.append("task=" + item.split("=", 1)[1])
        else:
            out.append(item)
    return out


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__,
                 argv=task_flag_to_override(sys.argv[1:])))
