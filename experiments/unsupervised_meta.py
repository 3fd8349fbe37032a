"""Unsupervised meta-RL (Gupta et al. 2018): meta-learn on tasks acquired by DIAYN, then adapt to
hand-designed goals the meta-learner never saw.

    python -m experiments.unsupervised_meta --preset quick|cpu|accel [--seed N] [--out DIR]
    python -m experiments.unsupervised_meta --resume runs/unsupervised_meta/<timestamp>

Story, ``num_seeds`` seeds vmapped through every phase (``skills.num_seeds``):

1. DIAYN on ``envs.PointNav2D`` without its reward (``experiments.diayn``'s ``train`` and
   ``evaluate``, phase ``diayn``): ``K`` skills and a discriminator ``q(z | x, y)``.
2. Acquired tasks (``metarl_jax.transfer.acquired_tasks``): task ``z`` rewards ``log q(z | s')``
   (floored at ``min_log_q``) with the seed's frozen discriminator; ``z ~ U{0..K-1}``. With
   ``task_reward="density"`` the discriminator is instead a spherical Gaussian per skill fitted
   to the skill's visited states (``SkillDensity``; DIAYN's rollouts of every skill), and the
   reward CARML's ``lambda log q(s'|z) - log q(s')`` with ``lambda = density_weight``: a bowl
   around the skill's states (goal-like) instead of a cone.
3. MAML-TRPO (``algos.maml_rl.MAMLRL``, the ``pg`` inner estimator, as ``experiments.maml_nav2d``)
   meta-trained on the acquired tasks (phase ``meta_acquired``) and, as the upper reference, on
   the true goal distribution ``U[-goal_range, goal_range]^2`` with PointNav2D's reward
   ``-distance`` (phase ``meta_true_goals``). Both phases are one compiled program: the reward
   kind is a task field, and they start from the same initial policy (paired seeds).
4. Meta-test on two hand-designed held-out families, reward ``-distance``: ``eval_goals`` goals
   evenly spaced on a circle of radius ``eval_goal_radius`` (offset by half a spacing), and as
   many on a circle of radius ``far_goal_radius`` (0: none), near the edge of what an episode
   reaches on those bearings and still inside the true task distribution -- the family where
   an untrained policy's constant-velocity adaptation is slow. Each method adapts with the same
   inner step 0..``eval_steps`` times: ``acquired`` (a), ``scratch`` (b: the shared initial
   policy, no meta-training), ``true_goals`` (c).

Writes: ``summary.json`` (``results.returns_by_steps.<method>[k]``: mean return on the held-out
goals after ``k`` inner steps, mean and 95% CI over seeds and per-seed values from
``metarl_jax.stats.seed_summary``; ``results.comparisons``: acquired vs scratch and vs
true_goals, and true_goals vs scratch (is meta-learning worth anything here at all?), at every
``k``, in improvement ``k=eval_steps`` minus ``k=0`` and in the adaptation curve's mean over
``k = 1..eval_steps`` (``results.mean_over_adapted_steps``), verdict "better" /
"worse" only when the CIs are apart, else "tie"; ``results.paired_acquired_minus_scratch``: the
per-seed difference (a) - (b) of the curve's mean and at every ``k``, mean and 95% CI over
seeds (the seeds share DIAYN's initial policy and the test keys); ``results.far_goals``: the same
for the far family; ``results.training_tasks``: the same on acquired training tasks
(``training_tasks_per_skill`` per skill; rewards ``log q``), a check of meta-training itself
rather than of transfer; ``results.diayn``: the skills' discriminator accuracy and pseudo-reward),
``diverged_chains`` (per family and method: adaptation chains, seed x task, whose return went
NaN or infinite at some inner step; such means are written as null, listed under the summary's
``nonfinite``, and their verdicts are "undefined"), ``results.skill_density`` (``density``
tasks: the fitted centres ``[S][K][2]`` and stds ``[S][K]``),
``trajectories.png`` / ``trajectories_far.png`` (seed 0's sampled paths to a few goals before
and after adaptation), ``skills.png`` (DIAYN's skills; not in ``quick``, see ``report_skills``),
``curves.png``, ``metrics.jsonl``, ``config.json``, ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

from envs.point_nav import PointNav2D
from experiments import diayn as diayn_experiment
from experiments.maml_nav2d import plot_trajectories
from metarl_jax import stats
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.maml_rl import MAMLRL, MAMLRLConfig
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.transfer.acquired_tasks import (
    AcquiredTasks,
    SkillDensity,
    acquired_task_space,
    fit_skill_density,
)
from metarl_jax.transfer.few_shot import plot_meta_training

NAME = "unsupervised_meta"
METHODS = ("acquired", "scratch", "true_goals")  # (a), (b), (c) of the module doc
PHASES = {"acquired": "meta_acquired", "true_goals": "meta_true_goals"}
TASK_REWARDS = ("discriminator", "density")  # what the acquired tasks reward (module doc)


@dataclasses.dataclass(frozen=True)
class Config:
    skills: diayn_experiment.Config = dataclasses.replace(diayn_experiment.Config(),
                                                          episode_steps=50)
    # inner_lr 0.01 as experiments.maml_nav2d (docs/unsupervised_meta.md: 0.02 and 0.05 were
    # also run).
    maml: MAMLRLConfig = MAMLRLConfig(outer="trpo", estimator="pg", hidden_sizes=(32, 32),
                                      init_log_std=-2.3, inner_lr=0.01, meta_batch_size=20,
                                      episodes_per_task=10)
    meta_iterations: int = 60
    updates_per_chunk: int = 5
    min_log_q: float = -10.0  # floor of the acquired reward log q(z|s')
    # "discriminator": DIAYN's log q(z|s'); "density": lambda log q(s'|z) - log q(s') with a
    # spherical Gaussian per skill fitted to its visited states (lambda = density_weight >= 1;
    # density_min_std floors each Gaussian's std).
    task_reward: str = "discriminator"
    density_weight: float = 2.0
    density_min_std: float = 0.1
    goal_range: float = 4.0  # true task distribution: goals ~ U[-goal_range, goal_range]^2
    eval_goals: int = 8
    eval_goal_radius: float = 3.0
    # The far family (0: none): 4.25 * cos(22.5 deg) = 3.93 < goal_range, so (c) trained on it;
    # at the 0.108 top speed along those bearings the goal is 39 of the 50 steps away.
    far_goal_radius: float = 4.25
    eval_steps: int = 10
    # Also adapt every method to this many acquired TRAINING tasks per skill (results.
    # training_tasks; 0: none): does meta-training give a faster learner on its own tasks?
    training_tasks_per_skill: int = 2
    plot_goals: int = 4
    # Roll out DIAYN's skills for their accuracy and skills.png (experiments.diayn.evaluate; its
    # own tests cover it, so the quick preset skips its compile).
    report_skills: bool = True

    def __post_init__(self):
        self.maml.validate()
        if self.skills.num_seeds < 2:
            raise ValueError(f"skills.num_seeds must be >= 2 (CIs over seeds), got "
                             f"{self.skills.num_seeds}")
        for name in ("meta_iterations", "updates_per_chunk", "eval_goals", "eval_steps",
                     "plot_goals"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.maml.num_inner_steps < 1:
            raise ValueError("maml.num_inner_steps must be >= 1 (meta-learning adapts)")
        for name in ("goal_range", "eval_goal_radius"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.training_tasks_per_skill < 0:
            raise ValueError(f"training_tasks_per_skill must be >= 0, got "
                             f"{self.training_tasks_per_skill}")
        if not self.far_goal_radius >= 0:
            raise ValueError(f"far_goal_radius must be >= 0 (0: none), got "
                             f"{self.far_goal_radius}")
        if not self.min_log_q <= 0:
            raise ValueError(f"min_log_q must be <= 0 (log q <= 0), got {self.min_log_q}")
        check_task_reward(self)


def check_task_reward(config) -> None:
    """``ValueError`` unless ``config.task_reward`` is one of ``TASK_REWARDS``, ``density_weight``
    a finite number >= 1 and ``density_min_std`` > 0 (this Config and ``unsupervised_rl2``'s)."""
    if config.task_reward not in TASK_REWARDS:
        raise ValueError(f"task_reward must be one of {TASK_REWARDS}, got {config.task_reward!r}")
    if not (math.isfinite(config.density_weight) and config.density_weight >= 1):
        raise ValueError(f"density_weight must be a finite number >= 1, got "
                         f"{config.density_weight}")
    if not config.density_min_std > 0:
        raise ValueError(f"density_min_std must be > 0, got {config.density_min_std}")


_SKILLS = diayn_experiment.Config.diayn
# Every preset meta-learns on the density (goal-like) tasks, lambda = 2 and no floor: with
# DIAYN's own log q(z|s') the meta-learner never adapted faster than scratch
# (docs/unsupervised_meta.md, #17 runs 1-3); with these it does (run 5, 8 seeds). The floor is
# off because the bowl is smooth and a floor at -10 would turn it back into a plateau.
_DENSITY = dict(task_reward="density", density_weight=2.0, min_log_q=-1e30)
# cpu: K = 12 skills (finer directions than 6), 100 meta-iterations, 10-step adaptation curves,
# 8 seeds (3 left the CI too wide to separate (a) from (b): run 4).
_CPU = Config(skills=dataclasses.replace(Config.skills, num_skills=12, num_seeds=8),
              meta_iterations=100, **_DENSITY)
PRESETS = {
    "quick": Config(
        skills=dataclasses.replace(
            Config.skills, num_skills=4, num_seeds=2, rollouts_per_skill=2, updates_per_chunk=5,
            diayn=dataclasses.replace(_SKILLS, sac=dataclasses.replace(
                _SKILLS.sac, total_steps=800, learning_starts=400, hidden_sizes=(32, 32)),
                disc_hidden=(32, 32)),
            finetune=dataclasses.replace(Config.skills.finetune, hidden_sizes=(32, 32))),
        # First order without remat: the same TRPO outer step, a third less to compile.
        maml=dataclasses.replace(Config.maml, meta_batch_size=4, episodes_per_task=4,
                                 hidden_sizes=(16, 16), cg_iters=3, first_order=True,
                                 remat=False),
        meta_iterations=2, updates_per_chunk=1, eval_goals=4, eval_steps=1, plot_goals=2,
        report_skills=False, **_DENSITY),
    "cpu": _CPU,
    "accel": Config(
        skills=dataclasses.replace(diayn_experiment.PRESETS["accel"], episode_steps=50),
        maml=dataclasses.replace(Config.maml, meta_batch_size=40, episodes_per_task=20,
                                 hidden_sizes=(64, 64)),
        meta_iterations=500, updates_per_chunk=10, eval_goals=16, **_DENSITY),
}


def eval_goals(config: Config, radius: float | None = None) -> jax.Array:
    """The hand-designed held-out goals ``[G, 2]``: evenly spaced on a circle of ``radius``
    (default ``config.eval_goal_radius``), offset by half a spacing (none on an axis or a
    diagonal)."""
    radius = config.eval_goal_radius if radius is None else radius
    angles = 2 * np.pi * (np.arange(config.eval_goals) + 0.5) / config.eval_goals
    return jnp.asarray(radius * np.stack([np.cos(angles), np.sin(angles)], 1), jnp.float32)


def families(config: Config) -> dict:
    """``{family: radius}`` of the held-out families: ``near`` and, unless 0, ``far``."""
    out = {"near": config.eval_goal_radius}
    if config.far_goal_radius > 0:
        out["far"] = config.far_goal_radius
    return out


def task_model(config: Config, diayn, diayn_states, skill_paths):
    """What scores the acquired tasks: ``(module, params stacked over seeds, density_weight)``.
    ``discriminator``: DIAYN's own (weight 1, the reward is ``log q(z|s')``); ``density``:
    ``SkillDensity`` fitted per seed to ``skill_paths[S, K*R, T+1, F]`` (``experiments.diayn.
    evaluate``'s rollouts, skill-major; the visited states ``1..T``)."""
    num_skills = config.skills.num_skills
    if config.task_reward == "discriminator":
        return diayn.discriminator(config.skills.diayn), diayn_states.disc_params, 1.0
    num_seeds, rollouts, steps, size = np.shape(skill_paths)
    if rollouts % num_skills:
        raise ValueError(f"skill_paths has {rollouts} rollouts, not a multiple of "
                         f"{num_skills} skills")
    visited = np.asarray(skill_paths)[:, :, 1:].reshape(num_seeds, num_skills, -1, size)
    fits = [fit_skill_density(visited[s], config.density_min_std) for s in range(num_seeds)]
    return (SkillDensity(num_skills), jax.tree.map(lambda *x: jnp.stack(x), *fits),
            config.density_weight)


def density_summary(task_params, density_weight: float) -> dict:
    """``results.skill_density``: the fitted bowls' centres ``[S][K][F]``, stds ``[S][K]`` and
    ``density_weight``."""
    fitted = task_params["params"]
    return dict(mean=np.asarray(fitted["mean"]).tolist(),
                std=np.exp(0.5 * np.asarray(fitted["log_var"])).tolist(),
                density_weight=density_weight)


def task_spaces(config: Config, env: PointNav2D, disc_params, density_weight: float = 1.0):
    """``{method: AcquiredTaskSpace stacked over seeds}`` for the two meta-trained methods; the
    goal distribution is the same in both (the acquired tasks ignore it)."""
    goals = make_param_space(env.default_params(),
                             {"goal": uniform(-config.goal_range, config.goal_range)})
    num_seeds = config.skills.num_seeds

    def stacked(acquired: bool):
        spaces = [acquired_task_space(goals, select_seed(disc_params, i), config.skills.num_skills,
                                      acquired, config.min_log_q, density_weight)
                  for i in range(num_seeds)]
        return jax.tree.map(lambda *x: jnp.stack(x), *spaces)

    return {"acquired": stacked(True), "true_goals": stacked(False)}


def meta_train(run_dir, config: Config, learner: MAMLRL, spaces, seed: int):
    """Both meta-training phases (resumable) from the same initial states; returns
    ``{method: MAMLRLState[S]}`` with ``scratch``, the untrained initial states."""
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 2),
                            config.skills.num_seeds)
    cfg = config.maml

    def init(space):
        return learner.init_seeds(keys, cfg, select_seed(space, 0)).replace(space=space)

    states = {"scratch": init(spaces["acquired"])}
    samples = 2 * cfg.meta_batch_size * cfg.episodes_per_task * learner.env.max_steps
    for method, phase in PHASES.items():
        states[method] = train_phase(
            run_dir, phase, init=lambda: init(spaces[method]),
            chunk=lambda s, n: learner.train_chunk_seeds(s, cfg, n),
            num_updates=config.meta_iterations, updates_per_chunk=config.updates_per_chunk,
            steps_per_update=samples * config.skills.num_seeds,
            show=("return_pre", "return_post"))
    return states


def meta_test(config: Config, learner: MAMLRL, states, spaces, key):
    """Adapt every method's seeds to the held-out goals of every family (``families``, in
    order, ``G`` goals each) and to the acquired training tasks (``training_tasks_per_skill``
    per skill, skills in turn, ``A`` tasks): ``(returns[M, S, F*G + A, k+1],
    positions[M, S, F*G + A, k+1, T, N, 2])`` for ``METHODS``; one key per seed, the same for
    every method (common random numbers)."""
    goals = jnp.concatenate([eval_goals(config, r) for r in families(config).values()])
    num_goals, num_skills = goals.shape[0], config.skills.num_skills
    num_acquired = num_skills * config.training_tasks_per_skill
    metas = jax.tree.map(lambda *x: jnp.stack(x), *[states[m].meta for m in METHODS])

    def one(meta, space, seed_key):
        def batch(n):
            return jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + jnp.shape(x)),
                                space.nominal)

        goal_tasks = batch(num_goals).replace(acquired=jnp.zeros(num_goals, jnp.bool_))
        goal_tasks = goal_tasks.replace(inner=goal_tasks.inner.replace(goal=goals))
        acquired_tasks = batch(num_acquired).replace(
            acquired=jnp.ones(num_acquired, jnp.bool_),
            skill=jnp.arange(num_acquired, dtype=jnp.int32) % num_skills)
        tasks = jax.tree.map(lambda a, b: jnp.concatenate([a, b]), goal_tasks, acquired_tasks)
        # The held-out goals' keys as MAMLRL._evaluate draws them; the training tasks' apart.
        keys = jnp.concatenate([jax.random.split(seed_key, num_goals),
                                jax.random.split(jax.random.fold_in(seed_key, 1),
                                                 num_acquired)])
        chains = jax.vmap(lambda t, k: learner.sample_chain(meta, config.maml, t, k,
                                                            config.eval_steps))(tasks, keys)
        return chains.episode_return.mean(-1), chains.obs

    program = jax.jit(jax.vmap(jax.vmap(one), in_axes=(0, None, None)))
    returns, positions = program(metas, spaces["acquired"],
                                 jax.random.split(key, config.skills.num_seeds))
    return np.asarray(returns), np.asarray(positions)


def compare(a: dict, b: dict) -> dict:
    """``a`` vs ``b`` (``seed_summary`` dicts): the difference of means and a verdict that is
    "better"/"worse" only when the two 95% CIs do not overlap, else "tie"."""
    return dict(difference=a["mean"] - b["mean"],
                verdict=stats.ci_verdict(a["mean"], a["ci95"], b["mean"], b["ci95"]))


def summarize(returns: np.ndarray, config: Config) -> dict:
    """One family's ``returns[M, S, G, k+1]`` (``meta_test``) -> its part of ``results``."""
    per_seed = returns.mean(axis=2)  # [M, S, k+1]: mean over the held-out goals
    by_steps = {m: [stats.seed_summary(per_seed[i, :, k]) for k in range(config.eval_steps + 1)]
                for i, m in enumerate(METHODS)}
    gain = {m: stats.seed_summary(per_seed[i, :, -1] - per_seed[i, :, 0])
            for i, m in enumerate(METHODS)}
    # The adaptation curve's mean over 1..eval_steps inner steps (Gupta et al. compare whole
    # learning curves on the test tasks, not one step count).
    curve = {m: stats.seed_summary(per_seed[i, :, 1:].mean(-1)) for i, m in enumerate(METHODS)}
    comparisons = {}
    for method, other in (("acquired", "scratch"), ("acquired", "true_goals"),
                          ("true_goals", "scratch")):
        rows = {f"{k}_steps": compare(by_steps[method][k], by_steps[other][k])
                for k in range(config.eval_steps + 1)}
        rows["improvement"] = compare(gain[method], gain[other])
        rows["mean_over_adapted_steps"] = compare(curve[method], curve[other])
        comparisons[f"{method}_vs_{other}"] = rows
    # Paired over seeds: (a) and (b) share each seed's initial policy and test keys.
    diff = per_seed[METHODS.index("acquired")] - per_seed[METHODS.index("scratch")]
    paired = dict(mean_over_adapted_steps=stats.seed_summary(diff[:, 1:].mean(-1)),
                  by_steps=[stats.seed_summary(diff[:, k]) for k in range(diff.shape[1])])
    # Adaptation chains (seed, task) whose return went NaN/inf at some step: the plain `pg`
    # inner step has no trust region, and a meta-learned small log-std can make it diverge.
    # Their means are then NaN (written as null; finish lists them) and verdicts "undefined".
    diverged = {m: int((~np.isfinite(returns[i])).any(-1).sum()) for i, m in enumerate(METHODS)}
    return dict(returns_by_steps=by_steps, improvement=gain, mean_over_adapted_steps=curve,
                comparisons=comparisons, paired_acquired_minus_scratch=paired,
                diverged_chains=diverged)


def skill_rollouts(config, diayn, diayn_states, seed: int, needed: bool):
    """``experiments.diayn.evaluate``'s ``(metrics, paths, random_paths)`` of ``config.skills``
    when ``needed`` (the report or the density tasks use them), else None (no compile)."""
    if not needed:
        return None
    return diayn_experiment.evaluate(diayn, diayn_states, config.skills,
                                     jax.random.fold_in(jax.random.PRNGKey(seed), 1))


def acquired_setup(config, diayn, diayn_states, seed: int):
    """Everything both routes (this one and ``unsupervised_rl2``) build from the trained DIAYN:
    ``(env, spaces, rollouts, skill_density)``: the ``AcquiredTasks`` PointNav2D env scored by
    ``task_model``, its ``task_spaces``, ``skill_rollouts`` (None when neither the report nor the
    density fit needs them) and ``results.skill_density`` (None for ``discriminator`` tasks)."""
    density = config.task_reward == "density"
    rollouts = skill_rollouts(config, diayn, diayn_states, seed, config.report_skills or density)
    module, task_params, density_weight = task_model(
        config, diayn, diayn_states, None if rollouts is None else rollouts[1])
    inner = PointNav2D(max_steps=config.skills.episode_steps)
    spaces = task_spaces(config, inner, task_params, density_weight)
    summary = density_summary(task_params, density_weight) if density else None
    return AcquiredTasks(inner, module, 2), spaces, rollouts, summary


def report_skills(run_dir, config: Config, rollouts) -> dict:
    """DIAYN's last training line (discriminator accuracy and pseudo-reward on replayed states,
    mean over seeds) and, with ``config.report_skills``, the per-seed metrics of ``rollouts``
    (``skill_rollouts``, fresh rollouts) and ``skills.png``."""
    last = phase_metrics(run_dir, diayn_experiment.PHASE)[-1]
    out = dict(train_disc_accuracy=last["disc_accuracy"], train_pseudo_reward=last["pseudo_reward"],
               chance_accuracy=1 / config.skills.num_skills,
               pseudo_reward_ceiling=math.log(config.skills.num_skills))
    if not config.report_skills:
        return out
    metrics, paths, random_paths = rollouts
    titles = [f"seed {s}: accuracy {metrics['discriminator_accuracy'][s]:.2f}"
              for s in range(config.skills.num_seeds)]
    diayn_experiment.plot_skills(run_dir / "skills.png", paths, random_paths, config.skills,
                                 titles)
    out.update({k: stats.seed_summary(metrics[k]) for k in (
        "discriminator_accuracy", "mean_pseudo_reward", "state_coverage")})
    return out


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    diayn, diayn_states = diayn_experiment.train(run_dir, config.skills, seed)

    env, spaces, rollouts, skill_density = acquired_setup(config, diayn, diayn_states, seed)
    learner = MAMLRL(env)
    states = meta_train(run_dir, config, learner, spaces, seed)
    returns, positions = meta_test(config, learner, states, spaces,
                                   jax.random.fold_in(jax.random.PRNGKey(seed), 3))

    num_goals, num_plot = config.eval_goals, min(config.plot_goals, config.eval_goals)
    results = {}
    for f, (family, radius) in enumerate(families(config).items()):
        part = slice(f * num_goals, (f + 1) * num_goals)
        family_results = summarize(returns[:, :, part], config)
        family_results.update(radius=radius,
                              eval_goals=np.asarray(eval_goals(config, radius)).tolist())
        if family == "near":  # the top level of results, as before the far family existed
            results.update(family_results)
        else:
            results[f"{family}_goals"] = family_results
        plot_trajectories(run_dir / ("trajectories.png" if family == "near" else
                                     f"trajectories_{family}.png"),
                          np.asarray(eval_goals(config, radius))[:num_plot],
                          {m: positions[i, 0, part][:num_plot] for i, m in enumerate(METHODS)},
                          config.eval_steps)
    if config.training_tasks_per_skill:
        results["training_tasks"] = summarize(returns[:, :, len(families(config)) * num_goals:],
                                              config)
    results["diayn"] = report_skills(run_dir, config, rollouts)
    if skill_density is not None:
        results["skill_density"] = skill_density
    plot_meta_training(run_dir / "curves.png", run_dir, tuple(PHASES.values()),
                       ylabel="mean return (acquired: log q; true goals: -distance)",
                       title="MAML meta-training, mean over seeds")
    shown = sorted({0, 1, 2, 3, 5, config.eval_steps} & set(range(config.eval_steps + 1)))
    rows = []
    for family in families(config):
        part = results if family == "near" else results[f"{family}_goals"]
        for m in METHODS:
            by_k = part["returns_by_steps"][m]
            curve = part["mean_over_adapted_steps"][m]
            rows.append(dict(goals=family, method=m,
                             **{f"{k} steps": f"{by_k[k]['mean']:.1f} +- {by_k[k]['ci95']:.1f}"
                                for k in shown},
                             **{"mean 1..k": f"{curve['mean']:.1f} +- {curve['ci95']:.1f}"}))
    return finish(run_dir, {"results": results, "num_seeds": config.skills.num_seeds},
                  format_table(rows))


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
