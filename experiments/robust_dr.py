"""Robust and adaptive domain randomization: DR vs EPOpt vs MRPO vs ADR (Pendulum / MJX cheetah).

    python -m experiments.robust_dr --preset quick|cpu|accel [--seed N] [--out DIR] [field=value]
    python -m experiments.robust_dr --preset cpu env=halfcheetah ...   # the MJX robot instead
    python -m experiments.robust_dr --resume runs/robust_dr/<timestamp>

Story: five PPO arms with the same seeds, network and sample budget, differing only in how
physics (pendulum mass and length) enter training. ``dr`` draws them uniformly from a box every
episode; ``epopt`` (Rajeswaran et al. 2017) does the same but, after a warm start, updates only on
the worst epsilon-fraction of episodes; ``mrpo`` (Jiang et al. 2021) keeps the worst 10% plus the
episodes whose return beats them by more than a parameter-distance penalty; ``adr`` (OpenAI et
al. 2019) starts from the nominal physics and widens each range while the policy copes at its
boundary, up to the DR box; ``epopt_adapt`` is EPOpt with the paper's source adaptation (its sec.
3.2): after every chunk of ``updates_per_chunk`` updates (a round) the current policy plays
``adapt_episodes`` episodes on the hidden target physics (``target_scale``) and the box becomes
the posterior given them (``experiments/_robust_arms.py``), so later rounds train on physics
consistent with the target. The arm is data (``_robust_arms``): all five train through ONE
compiled program, and the selection rules and range updates run inside it. All are then
evaluated, deterministically, on a held-out (mass x length) grid that reaches outside the
training box (``heldout_cvar10``: mean of the worst 10% of cells, robustness) and on the target
physics (``target_return``, what the adaptation is for).

Envs (``env=``): ``pendulum`` (pure JAX; axes: the pendulum's mass ``m`` and length ``l``) and
``halfcheetah`` (MJX; axes: one mass factor on every body, ``body_mass_scale`` as a scalar, and
the global friction factor ``friction_scale``; one episode = ``ppo.num_steps`` steps, so every env
still plays exactly one episode per update, as the selection hooks need).

Presets: ``quick`` (tests, ~1 min), ``cpu`` (Pendulum, dr / epopt / mrpo / adr, 5 paired seeds
vmapped x 5.12M steps per method, 256 envs x 100 updates; ADR thresholds -1000 / -700, step 0.1;
see docs/robust_dr.md for its wall time; ``methods=dr,epopt,epopt_adapt`` adds the adaptation arm),
``accel`` (MJX HalfCheetah for a GPU: 2048 envs x 250-step episodes, 4 seeds, 61M steps per
method; its ADR thresholds and MRPO coefficient are scaled to HalfCheetah's returns but untuned;
not run yet), ``accel_pendulum`` (the large pure-JAX run: 2048 envs, 8 seeds, 49M steps per
method), ``quick_mjx`` (tests: the MJX path with EPOpt only, tiny; ADR's range updates are
env-agnostic and tested on Pendulum).

Writes: ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.<method>`` with
``heldout_mean`` / ``heldout_worst`` / ``heldout_cvar10`` over the whole grid (of the seed-mean
cells), ``inbox_grid`` (the same over the grid cells inside the training box), ``over_seeds``:
each of ``SEED_METRICS`` as mean / ci95 / per_seed over seeds -- ``inbox_mean`` and
``inbox_cvar10`` are EPOpt's objective, the mean and the worst 10% of ``inbox_episodes``
episodes on physics drawn uniformly from the training box (the same draws for every method and
seed), ``heldout_*`` each seed's grid numbers --, per-seed grid numbers, per-cell returns, the
training ``curve`` and ``target_return`` (mean, ci95, per_seed); ``adr``: its final ranges per
seed, whether each reached the box and when; ``epopt_adapt.posterior``: the box after each
round (seed means), the target and whether each seed's final box holds it; ``vs_dr``: every
method minus DR per seed on each metric (mean, ci95, per_seed) with the paired verdict and the
verdict of the two methods' own CIs; ``target_comparison``: epopt_adapt's target return against
epopt's and dr's (CI verdicts);
``grid``; ``compiles``: traces of the one training program and its init), ``curves.png``
(training return, mean and worst 10%), ``heatmap.png``, ``policies/<method>.npz|json``
(deterministic policies, numpy forward pass; ``<method>_seed<i>`` with several seeds) and
``checkpoints/`` (``metarl_jax.load_run`` reads them back through ``policies(config)``).
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.pendulum import Pendulum
from experiments import _robust_arms as arms
from metarl_jax import stats
from metarl_jax.algos.epopt import EPOpt, SourceAdaptation
from metarl_jax.algos.mrpo import MRPO
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.randomization.adr import make_adr_space
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.transfer.evaluation import (
    check_grid_axis,
    grid_params,
    seed_evaluator,
    summarize_grid,
    summarize_seeds,
)
from metarl_jax.transfer.phases import export_policies

NAME = "robust_dr"
METHODS = arms.ARMS  # ("dr", "epopt", "mrpo", "adr", "epopt_adapt")
ENVS = ("pendulum", "halfcheetah")


@dataclasses.dataclass(frozen=True)
class Config:
    env: str = "pendulum"  # or "halfcheetah" (MJX; without epopt_adapt)
    methods: Tuple[str, ...] = METHODS
    # num_steps must be the episode length (200): every env plays one whole episode per update.
    # 256 envs = 256 sampled physics per iteration, close to EPOpt's N = 240, so that the
    # epsilon = 0.1 tail holds ~26 trajectories (with 128 envs, 13: too few, see docs/robust_dr.md).
    ppo: PPOConfig = PPOConfig(num_envs=256, num_steps=200, total_steps=2_560_000, num_epochs=10,
                               num_minibatches=32, learning_rate=1e-3, reward_scale=0.1)
    num_seeds: int = 2
    updates_per_chunk: int = 10
    mass_scale: Tuple[float, float] = (0.5, 2.0)  # training box, scales of the nominal mass
    length_scale: Tuple[float, float] = (0.6, 1.5)  # pendulum: length
    friction_scale: Tuple[float, float] = (0.5, 1.5)  # halfcheetah: friction
    epopt_epsilon: float = 0.1
    epopt_warmup_frac: float = 0.4  # fraction of updates with epsilon = 1 (EPOpt's warm start)
    # MRPO's discrepancy coefficient, return units per unit of range-normalized L1 distance (the
    # authors' kappa0 = 1 keeps every Pendulum episode: MRPO would be DR; see algos/mrpo.py).
    mrpo_kappa0: float = 100.0
    mrpo_growth: float = 1.01
    adr_t_low: float = -800.0  # return thresholds at a boundary: shrink below, widen above
    adr_t_high: float = -400.0
    adr_delta: float = 0.05  # boundary step, as a fraction of the nominal value
    adr_p_boundary: float = 0.5
    adr_buffer: int = 16
    eval_mass_scales: Tuple[float, ...] = (0.3, 0.7, 1.0, 1.5, 2.0, 2.5)
    eval_length_scales: Tuple[float, ...] = (0.4, 0.8, 1.2, 1.5, 1.8)
    eval_friction_scales: Tuple[float, ...] = (0.25, 0.5, 1.0, 1.5, 2.0)
    eval_episodes: int = 8
    # In-box evaluation, EPOpt's objective: physics drawn uniformly from the training box (one
    # episode each, the same draws and resets for every method and seed), per seed the mean and
    # the CVaR10 over these episodes (the worst 10% of 2000: 200 episodes).
    inbox_episodes: int = 2000
    # EPOpt's source adaptation (epopt_adapt): one round per chunk of updates_per_chunk updates.
    target_scale: Tuple[float, float] = (1.6, 0.8)  # the hidden target, x nominal, in the box
    adapt_episodes: int = 4  # target episodes of the current policy per round and seed
    adapt_particles: int = 256  # physics weighted per round
    adapt_ess: float = 0.2  # tempering: effective sample size / particles
    adapt_min_width: float = 0.02  # narrowest posterior range (x nominal)
    adapt_horizon: int = 5  # prediction-loss windows (steps)
    adapt_noise_std: float = 0.01  # likelihood std, x each observation dimension's spread

    def __post_init__(self):
        self.ppo.validate()
        if self.env not in ENVS:
            raise ValueError(f"env must be one of {ENVS}, got {self.env!r}")
        if not self.methods or any(m not in METHODS for m in self.methods):
            raise ValueError(f"methods must be a non-empty subset of {METHODS}, "
                             f"got {self.methods}")
        if self.env == "pendulum" and self.ppo.num_steps != Pendulum().max_steps:
            raise ValueError(f"ppo.num_steps must be the episode length {Pendulum().max_steps} "
                             f"(one episode per env per update), got {self.ppo.num_steps}")
        check_at_least_one(self, ("num_seeds", "updates_per_chunk", "eval_episodes",
                                  "inbox_episodes", "adr_buffer",
                                  "adapt_episodes", "adapt_particles", "adapt_horizon"))
        if "epopt_adapt" in self.methods:
            if self.env != "pendulum":
                raise ValueError("epopt_adapt's likelihood is the Pendulum's: env=pendulum")
            if self.ppo.num_steps % self.adapt_horizon:
                raise ValueError(f"adapt_horizon={self.adapt_horizon} must divide the "
                                 f"episode's {self.ppo.num_steps} steps")
            boxes = (self.mass_scale, self.length_scale)
            if not all(lo <= t <= hi for t, (lo, hi) in zip(self.target_scale, boxes)):
                raise ValueError(f"target_scale {self.target_scale} must lie in the training "
                                 f"box {boxes} (the posterior lives in it)")
            if not 0 < self.adapt_ess <= 1 or not self.adapt_noise_std > 0 \
                    or not self.adapt_min_width >= 0:
                raise ValueError("need 0 < adapt_ess <= 1, adapt_noise_std > 0 and "
                                 "adapt_min_width >= 0")
        if self.ppo.num_updates % self.updates_per_chunk:
            raise ValueError(f"updates_per_chunk={self.updates_per_chunk} must divide the "
                             f"{self.ppo.num_updates} updates (one compile per method)")
        for name in ("mass_scale", "length_scale", "friction_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= 1.0 <= high:
                raise ValueError(f"{name} must be a range 0 < low <= 1 <= high, got {low},{high}")
        if not 0 < self.epopt_epsilon <= 1 or not 0 <= self.epopt_warmup_frac <= 1:
            raise ValueError("need 0 < epopt_epsilon <= 1 and 0 <= epopt_warmup_frac <= 1")
        for name in ("eval_mass_scales", "eval_length_scales", "eval_friction_scales"):
            check_grid_axis(name, getattr(self, name), "scale")
        if not self.adr_t_low < self.adr_t_high:
            raise ValueError(f"need adr_t_low < adr_t_high, got {self.adr_t_low}, "
                             f"{self.adr_t_high}")


PRESETS = {
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=32, total_steps=32 * 200 * 8,
                                            num_minibatches=8),
                    num_seeds=1, updates_per_chunk=4, eval_mass_scales=(0.5, 2.5),
                    eval_length_scales=(0.6, 1.8), eval_episodes=2, inbox_episodes=32,
                    adapt_episodes=2, adapt_particles=64),
    # 5 paired seeds x 100 updates (DR's curve still climbed at 50 and its failing seeds set the
    # CIs); ADR's thresholds below the box's own boundary returns (-650 / -530 for DR's policy
    # at m = 2 / l = 1.5 in a 50-update run), so that it can reach the box; see docs/robust_dr.md.
    "cpu": Config(methods=METHODS[:4],
                  ppo=dataclasses.replace(Config.ppo, total_steps=256 * 200 * 100),
                  num_seeds=5, adr_delta=0.1, adr_t_low=-1000.0, adr_t_high=-700.0),
    "accel_pendulum": Config(ppo=dataclasses.replace(Config.ppo, num_envs=2048,
                                                     num_minibatches=32,
                                                     total_steps=2048 * 200 * 120),
                             num_seeds=8, updates_per_chunk=20, adr_buffer=64, eval_episodes=32),
    "accel": Config(env="halfcheetah", methods=METHODS[:4],
                    ppo=dataclasses.replace(Config.ppo, num_envs=2048, num_steps=250,
                                            total_steps=2048 * 250 * 120, num_minibatches=32,
                                            learning_rate=3e-4, init_log_std=-0.5),
                    num_seeds=4, updates_per_chunk=5, mass_scale=(0.7, 1.5),
                    mrpo_kappa0=100.0, adr_t_low=300.0, adr_t_high=700.0, adr_buffer=64,
                    eval_mass_scales=(0.5, 0.75, 1.0, 1.5, 2.0), eval_episodes=4),
    "quick_mjx": Config(env="halfcheetah", methods=("epopt",),
                        ppo=dataclasses.replace(Config.ppo, num_envs=8, num_steps=20,
                                                total_steps=8 * 20 * 4, num_epochs=2,
                                                num_minibatches=2),
                        num_seeds=1, updates_per_chunk=2, eval_mass_scales=(0.5, 2.0),
                        eval_friction_scales=(0.5,), eval_episodes=1, inbox_episodes=2),
}


def make_env(config: Config):
    """``(env, nominal params, {field: (training box, held-out values)})`` for ``config.env``.

    Both axes are scale factors of scalar ``Params`` fields. HalfCheetah's per-body mass vector
    is replaced by one scalar factor (``apply_physics`` broadcasts it over the bodies): the
    robust-selection hooks and ADR act on scalar fields."""
    if config.env == "pendulum":
        env = Pendulum()
        axes = {"m": (config.mass_scale, config.eval_mass_scales),
                "l": (config.length_scale, config.eval_length_scales)}
        return env, env.default_params(), axes
    from envs.half_cheetah import HalfCheetah  # MuJoCo loads only for this env

    env = HalfCheetah(max_steps=config.ppo.num_steps, ls_iterations=8)
    nominal = env.default_params().replace(body_mass_scale=jnp.float32(1.0))
    axes = {"body_mass_scale": (config.mass_scale, config.eval_mass_scales),
            "friction_scale": (config.friction_scale, config.eval_friction_scales)}
    return env, nominal, axes


def build(config: Config, nominal, axes):
    """``(hook, {method: ArmSpace})``: the one ``ArmHook`` every arm trains with and each arm's
    training distribution (the DR box as a relative-uniform ``ParamSpace``, ADR's ranges in
    value units, the arm's index)."""
    box = {f: training_box for f, (training_box, _) in axes.items()}
    space = make_param_space(nominal, {f: uniform(*box[f], relative=True) for f in box})
    base = {f: float(getattr(nominal, f)) for f in box}
    width = [(box[f][1] - box[f][0]) * base[f] for f in box]
    adr_space = make_adr_space(
        nominal, {f: (box[f][0] * base[f], box[f][1] * base[f]) for f in box},
        delta={f: config.adr_delta * base[f] for f in box}, p_boundary=config.adr_p_boundary,
        t_low=config.adr_t_low, t_high=config.adr_t_high, buffer_size=config.adr_buffer)
    warmup = int(round(config.epopt_warmup_frac * config.ppo.num_updates))
    hook = arms.ArmHook(epopt=EPOpt(config.epopt_epsilon, warmup),
                        mrpo=MRPO(tuple(box), width, config.mrpo_kappa0, config.mrpo_growth))
    spaces = {m: arms.ArmSpace(arm=jnp.int32(arms.ARMS.index(m)), box=space, adr=adr_space)
              for m in config.methods}
    return hook, spaces


def policies(config: Config, env_nominal_axes=None):
    """The trained policies, rebuilt from ``config``: ``{method: (the one PPO, learner config,
    init args)}``. ``main`` trains exactly these; ``metarl_jax.load_run`` restores them.
    ``env_nominal_axes``: ``make_env(config)``'s result, if already built."""
    env, nominal, env_axes = env_nominal_axes or make_env(config)
    hook, spaces = build(config, nominal, env_axes)
    ppo = PPO(env, robust=hook)
    return {m: (ppo, config.ppo, (space,)) for m, space in spaces.items()}


def train_methods(run_dir, config: Config, trained, seed_keys, target, env_nominal_axes):
    """Every method as a resumable phase of the run: ``{method: final state [S, ...]}``. One
    PPO program for all; ``epopt_adapt``'s chunks end with its adaptation round."""
    env, nominal, env_axes = env_nominal_axes
    fields = tuple(env_axes)
    adapt = None
    if "epopt_adapt" in trained:
        ppo = trained["epopt_adapt"][0]
        adaptation = SourceAdaptation(config.adapt_episodes, config.ppo.num_steps,
                                      config.adapt_particles, config.adapt_ess,
                                      config.adapt_min_width)
        likelihood = arms.pendulum_log_likelihood(env, nominal, fields, config.adapt_horizon,
                                                  config.adapt_noise_std)
        adapt = arms.make_adapt_seeds(ppo, config.ppo, adaptation, target, likelihood, fields)

    def chunk_of(method, ppo):
        def chunk(states, n):
            states, metrics = ppo.train_chunk_seeds(states, config.ppo, n)
            metrics = arms.own_metrics(method, metrics)
            if method == "epopt_adapt":  # the round's end: data from the target, posterior
                states, info = adapt(states)
                metrics.update({k: jnp.broadcast_to(v[:, None], (len(seed_keys), n))
                                for k, v in info.items()})  # the box after the round
            return states, metrics
        return chunk

    show = ("train_return_mean", "train_return_cvar10")
    return {m: train_phase(run_dir, m, init=lambda: ppo.init_seeds(seed_keys, config.ppo, space),
                           chunk=chunk_of(m, ppo), num_updates=config.ppo.num_updates,
                           updates_per_chunk=config.updates_per_chunk,
                           steps_per_update=config.ppo.batch_size * len(seed_keys), show=show)
            for m, (ppo, _, (space,)) in trained.items()}


def posterior_rounds(run_dir, config: Config, state, fields, target) -> dict:
    """epopt_adapt's box after each round (seed means, from ``metrics.jsonl``), the target, and
    whether each seed's final box holds it."""
    lines = [line for line in phase_metrics(run_dir, "epopt_adapt")
             if line["update"] % config.updates_per_chunk == 0]
    support = jax.vmap(lambda s: s.box.support())(state.space)  # {f: ([S], [S])}
    holds = np.ones(np.shape(state.update_step), bool)
    for f in fields:
        low, high = (np.asarray(x) for x in support[f])
        value = float(getattr(target, f))
        holds &= (low <= value + 1e-6) & (value - 1e-6 <= high)
    return {"update": [line["update"] for line in lines],
            "low": {f: [line[f"posterior_low_{f}"] for line in lines] for f in fields},
            "high": {f: [line[f"posterior_high_{f}"] for line in lines] for f in fields},
            "ess": [line["posterior_ess"] for line in lines],
            "target": {f: float(getattr(target, f)) for f in fields},
            "target_in_final_box_per_seed": holds.tolist()}


SEED_METRICS = ("inbox_mean", "inbox_cvar10", "heldout_mean", "heldout_cvar10", "heldout_worst")


def per_seed_metrics(grid_returns: np.ndarray, inbox_returns: np.ndarray) -> dict:
    """``{metric: [S]}`` (``SEED_METRICS``) from one method's held-out grid returns ``[S, C]``
    (each cell's mean over its episodes) and in-box episode returns ``[S, N]``: each seed's
    mean and CVaR10 over its N in-box episodes, and its grid summary (``summarize_grid``)."""
    grid = [summarize_grid(row) for row in np.asarray(grid_returns)]
    out = {k: np.array([g[k] for g in grid]) for k in SEED_METRICS if k.startswith("heldout")}
    inbox_returns = np.asarray(inbox_returns, np.float64)
    out["inbox_mean"] = inbox_returns.mean(1)
    out["inbox_cvar10"] = np.array([stats.cvar(row, 0.1) for row in inbox_returns])
    return {k: out[k] for k in SEED_METRICS}


def compare_to(seed_metrics: dict, reference: str) -> dict:
    """Every other method against ``reference`` on each metric, from ``{method: {metric:
    [S]}}`` (the seeds paired: seed i of every method starts from the same key):
    ``{method: {metric: {mean, ci95, per_seed}}}`` of the per-seed difference (method minus
    reference), with ``paired_verdict`` (the difference's 95% CI against 0) and ``ci_verdict``
    (the two methods' own 95% CIs: "better" / "worse" only when they do not overlap, else
    "tie"); both None with one seed."""
    ref = seed_metrics[reference]
    return {method: {k: stats.paired_comparison(values, ref[k]) for k, values in metrics.items()}
            for method, metrics in seed_metrics.items() if method != reference}


def adr_ranges(adr, lines) -> dict:
    """ADR's final ranges per seed (value units, ``[[low, high]] * S`` per field) and their
    seed means, whether each seed's ranges are the whole DR box (its hard limits), and
    ``full_box_update``: the first update whose seed-mean ranges are the box (then every seed's
    are), None if never."""
    low, high = np.asarray(adr.low), np.asarray(adr.high)  # [S, D]
    hard_low, hard_high = np.asarray(adr.hard_low)[0], np.asarray(adr.hard_high)[0]  # [D]
    tol = 1e-4 * (hard_high - hard_low)
    full = np.all((low <= hard_low + tol) & (high >= hard_high - tol), axis=1)
    first = next((line["update"] for line in lines
                  if all(line[f"adr_low_{f}"] <= hard_low[i] + tol[i]
                         and line[f"adr_high_{f}"] >= hard_high[i] - tol[i]
                         for i, f in enumerate(adr.fields))), None)
    return {"final_ranges_per_seed": {f: np.stack([low[:, i], high[:, i]], 1).tolist()
                                      for i, f in enumerate(adr.fields)},
            "final_ranges": {f: [float(low[:, i].mean()), float(high[:, i].mean())]
                             for i, f in enumerate(adr.fields)},
            "reached_box_per_seed": full.tolist(), "full_box_update": first}


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    env, nominal, env_axes = make_env(config)
    (name1, (box1, values1)), (name2, (box2, values2)) = env_axes.items()
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    axes = {name1: values1, name2: values2}
    grid, cells = grid_params(nominal, axes, relative=(name1, name2))
    target = nominal.replace(**{f: jnp.asarray(getattr(nominal, f) * t, jnp.float32)
                                for f, t in zip((name1, name2), config.target_scale)})
    # The target physics is one more evaluation cell (one evaluation program for all).
    cells_and_target = jax.tree.map(lambda g, t: jnp.concatenate([g, t[None]]), grid, target)
    eval_key = jax.random.fold_in(jax.random.PRNGKey(seed), 1)
    inbox = ((cells[name1] >= box1[0]) & (cells[name1] <= box1[1])
             & (cells[name2] >= box2[0]) & (cells[name2] <= box2[1]))

    trained = policies(config, (env, nominal, env_axes))
    states = train_methods(run_dir, config, trained, seed_keys, target, (env, nominal, env_axes))
    ppo = next(iter(trained.values()))[0]
    export_policies(run_dir, states, config.ppo, env.action_space,
                    metadata={"env": config.env, "experiment": NAME, "seed": seed})
    policy_of = lambda s: ppo.make_policy(s, config.ppo, deterministic=True)
    evaluator = seed_evaluator(policy_of, env, cells_and_target, config.eval_episodes, eval_key)
    # The in-box draws: the DR box, one episode each; the same draws and resets for everyone.
    inbox_key, draws_key = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(seed), 2))
    draws = trained[config.methods[0]][2][0].box.sample(draws_key, (config.inbox_episodes,))
    inbox_evaluator = seed_evaluator(policy_of, env, draws, 1, inbox_key)
    results, heatmaps, curves, seed_metrics = {}, {}, {}, {}
    for method in config.methods:
        state = states[method]
        returns = np.asarray(jax.device_get(evaluator(state)))  # [S, C + 1]
        per_seed, on_target = returns[:, :-1], returns[:, -1]
        cell_mean = per_seed.mean(0)
        seed_metrics[method] = per_seed_metrics(per_seed, np.asarray(inbox_evaluator(state)))
        lines = phase_metrics(run_dir, method)
        curve = {k: [line[k] for line in lines] for k in ("step", "train_return_mean",
                                                    "train_return_cvar10")}
        results[method] = dict(summarize_seeds(per_seed),
                               over_seeds={k: stats.seed_summary(v)
                                           for k, v in seed_metrics[method].items()},
                               inbox_grid=summarize_grid(cell_mean[inbox]),
                               curve=curve, final_train_return=curve["train_return_mean"][-1],
                               target_return=stats.seed_summary(on_target))
        if method == "adr":
            results[method].update(adr_ranges(state.space.adr, lines))
        if method == "epopt_adapt":
            results[method]["posterior"] = posterior_rounds(run_dir, config, state,
                                                            (name1, name2), target)
        heatmaps[method] = cell_mean.reshape(len(values1), len(values2))
        curves[method] = (curve["step"], curve["train_return_mean"])
        curves[f"{method} worst 10%"] = (curve["step"], curve["train_return_cvar10"])
    target_comparison = {}
    adapted = results.get("epopt_adapt", {}).get("target_return")
    for other in ("epopt", "dr"):
        if adapted is None or other not in results or adapted["ci95"] is None:
            continue
        theirs = results[other]["target_return"]
        target_comparison[f"epopt_adapt_vs_{other}"] = stats.ci_verdict(
            adapted["mean"], adapted["ci95"], theirs["mean"], theirs["ci95"])

    title = "Pendulum" if config.env == "pendulum" else "HalfCheetah (MJX)"
    plots.plot_heatmaps(run_dir / "heatmap.png", heatmaps, x_values=values2, y_values=values1,
                        xlabel=f"{name2} (x nominal)", ylabel=f"{name1} (x nominal)",
                        title=f"{title}: held-out return per cell",
                        colorbar_label="episode return")
    # A method's worst-10% curve: its mean curve's colour, dashed.
    styles = {f"{m} worst 10%": {"color": f"C{i}", "linestyle": "--"}
              for i, m in enumerate(config.methods)}
    styles.update({m: {"color": f"C{i}"} for i, m in enumerate(config.methods)})
    plots.plot_curves(run_dir / "curves.png", curves, xlabel="env steps (all seeds)",
                      ylabel="training episode return",
                      title=f"{title}: mean and worst-10% training return", styles=styles)
    grid_info = {name: values.tolist() for name, values in cells.items()}
    grid_info["relative"] = [name1, name2]
    # Traces of the one program every method trains through (0: finished before a resume).
    compiles = {k: ppo.traces.get(k, 0) for k in ("train_chunk_seeds", "init")}
    vs_dr = compare_to(seed_metrics, "dr") if "dr" in seed_metrics else {}
    ci = lambda m, k: (results[m]["over_seeds"][k]["mean"], results[m]["over_seeds"][k]["ci95"]
                       or 0.0)
    table = format_table([dict(method=m, heldout_mean=ci(m, "heldout_mean"),
                               heldout_cvar10=ci(m, "heldout_cvar10"),
                               inbox_mean=ci(m, "inbox_mean"), inbox_cvar10=ci(m, "inbox_cvar10"),
                               target=results[m]["target_return"]["mean"],
                               final_train_return=results[m]["final_train_return"])
                          for m in config.methods])
    if vs_dr:
        table += "\n" + format_table([dict(
            method=f"{m} - dr", **{k: (d["mean"], d["ci95"] or 0.0) for k, d in diffs.items()},
            inbox_cvar10_verdict=diffs["inbox_cvar10"]["ci_verdict"])
            for m, diffs in vs_dr.items()])
    return finish(run_dir, {"results": results, "grid": grid_info, "compiles": compiles,
                            "target_comparison": target_comparison, "vs_dr": vs_dr}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
