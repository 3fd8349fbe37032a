"""System identification through MJX, then train on the calibrated simulator: does the gap close?

    python -m experiments.calibrate_cheetah --preset quick|cpu|accel [--seed N] [--out DIR] [f=v]
    python -m experiments.calibrate_cheetah --resume runs/calibrate_cheetah/<timestamp>
    python -m experiments.calibrate_cheetah --devices all   # PPO's seeds/envs split (fits: 1)

Story: "the real world" is gymnasium's HalfCheetah-v5 (MuJoCo C, float64, full solver) with
hidden physics drawn once from ``hidden_seed``: a mass scale per body, a friction scale, a
damping scale per joint, a strength scale per actuator, and an actuation latency. Record
``record_episodes`` trajectories of scripted open-loop actions there (observations only), then
identify the physics in MJX (``metarl_jax.sim2real.calibrate``): the latency first (the candidate
0..max_delay of lowest prediction loss at nominal physics), then Levenberg-Marquardt on the
``horizon``-step prediction residuals (1 step by default: the full state is observed, and
longer windows are rough, see ``Config.horizon``; ``optimizer="lm"``, Jacobian by central
differences through the simulator; ``optimizer="adam"``: first-order descent on the loss), and
CEM as the gradient-free baseline.
EPOpt's source adaptation (``metarl_jax.randomization.posterior``) turns the wide DR space into
a posterior from the same data. Then PPO, same seeds and budget, on four training
distributions (one compiled program):

    nominal     the simulator's nominal physics, no latency
    calibrated  the gradient estimate (and its latency) +- ``calibrated_width`` relative
    posterior   EPOpt's posterior space (the screened latency)
    wide_dr     sim2real_cheetah's earlier per-element ranges around nominal, latency 0-1

and evaluate every exported policy (numpy forward pass) in the hidden real world.

Identifiability: the masked elements (the world body's mass, the root joints' damping: 0 in the
model, ``calibrate.acting_elements``; ``results.not_identifiable``) do not exist in the
dynamics, are not fitted and are left out of ``param_error``. Scaling every mass, damping and
gear by one factor leaves the accelerations unchanged except through what is not scaled
(joint stiffness, armature): that common factor, and trades such as less friction against more
damping, are weakly identified by short windows, so each field's error is reported per element.

Writes: ``config.json``, ``metrics.jsonl`` (PPO phases), ``summary.json`` (``results.hidden``,
``results.calibration.<gradient|cem>``: ``param_error`` per field (relative: mean, max,
per_element), ``estimate``, ``delay`` (and the screen's ``loss_per_delay``), ``loss`` (final,
at nominal, at the truth), ``loss_history``, ``wall_s``; the gradient fit's ``optimizer`` and,
for LM, ``lm_history`` (per iteration: ``damping``, ``ratio`` rho, ``step_norm``,
``accepted``) and ``identifiability`` (singular values of the column-normalized Jacobian at
the estimate and its weakest directions, ``calibrate.identifiability``); ``results.posterior``;
``results.timing_s`` (wall seconds per stage);
``results.policy.<variant>.real_return`` (mean, ci95 over seeds, per_seed); ``results.comparison``),
``calibration.png`` (estimate / truth per element over iterations, both methods), ``curves.png``,
``policies/``, ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

import envs
from metarl_jax.algos.learner import select_seed
from metarl_jax.algos.ppo import PPO, PPOConfig
from metarl_jax.core.wrappers import ActionDelay
from metarl_jax.io import plots
from metarl_jax.io.cli import supports_devices
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.randomization.distributions import int_uniform, uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.randomization.posterior import posterior_rounds
from metarl_jax.scale import is_primary, mesh_size, run_mesh, sync
from metarl_jax.sim2real import calibrate as cal
from metarl_jax.sim2real.export import export_ppo, load_policy
from metarl_jax.stats import seed_summary
from metarl_jax.transfer.phases import phase_curves, train_ppo_phases

NAME = "calibrate_cheetah"
FIELDS = ("body_mass_scale", "friction_scale", "damping_scale", "gear_scale")
VARIANTS = ("nominal", "calibrated", "posterior", "wide_dr")


@dataclasses.dataclass(frozen=True)
class Config:
    ppo: PPOConfig = PPOConfig(num_envs=32, num_steps=128, total_steps=163_840, num_epochs=10,
                               num_minibatches=32, learning_rate=3e-4, reward_scale=0.1,
                               init_log_std=-0.5)
    num_seeds: int = 3
    updates_per_chunk: int = 8
    max_steps: int = 1000  # episode horizon in MJX and in the real engine
    max_delay: int = 2  # latency candidates 0..max_delay (calibration) and MJX buffer size
    # The hidden real world: per-element scales drawn uniformly from these ranges.
    hidden_seed: int = 0
    hidden_mass: Tuple[float, float] = (1.0, 1.5)
    hidden_friction: Tuple[float, float] = (0.5, 0.8)
    hidden_damping: Tuple[float, float] = (0.7, 1.4)
    hidden_gear: Tuple[float, float] = (0.6, 0.9)
    hidden_delay: int = 1
    # Data and calibration.
    record_episodes: int = 8
    record_steps: int = 100
    # One-step prediction windows: the observation is the full state, so one step holds the
    # dynamics' information, and short windows keep the residuals smooth enough for LM (2
    # steps converged too, in 12 iterations against 6). Over 8 steps chaos (contacts, float32)
    # makes a window's late residuals rough at every scale: step 8's difference quotient along
    # the path to the truth grew from 25 over the whole path to 1840 over 0.1% of it (step 1:
    # 11-18), so the central-difference Jacobian measured roughness and LM crawled (docs/sysid.md).
    horizon: int = 1
    stride: int = 2
    # The gradient calibration: "lm" (Levenberg-Marquardt on the residuals, forward-mode
    # Jacobian; lm_iterations) or "adam" (first order on the loss; grad_iterations).
    optimizer: str = "lm"
    lm_iterations: int = 10
    # LM's Jacobian: "central" differences (2n + 1 batched forward passes) or "forward" mode
    # (n jvps; ~30x slower through MJX on CPU, measured).
    lm_jacobian: str = "central"
    lm_batch: int = 1  # central differences' evaluations vmapped at once (each: every window)
    grad_iterations: int = 150
    learning_rate: float = 0.05
    cem_iterations: int = 20
    cem_population: int = 24
    cem_batch: int = 1  # CEM candidates per lax.map step (the whole population vmapped wedged)
    particles: int = 48  # EPOpt posterior, per round
    posterior_batch: int = 1  # particles per lax.map step (32 vmapped particles wedged XLA:CPU)
    posterior_rounds: int = 3
    noise_std: float = 0.01  # likelihood's std, in units of each observation dimension's spread
    calibrated_width: float = 0.05  # calibrated DR: estimate x U[1 - w, 1 + w]
    # Wide DR (sim2real_cheetah's per-element training ranges before #18), also EPOpt's prior.
    wide_mass: Tuple[float, float] = (0.6, 1.5)
    wide_friction: Tuple[float, float] = (0.4, 1.5)
    wide_damping: Tuple[float, float] = (0.7, 1.3)
    wide_gear: Tuple[float, float] = (0.7, 1.3)
    wide_delay: Tuple[int, int] = (0, 1)
    eval_episodes: int = 2  # per seed, in the real engine

    def __post_init__(self):
        self.ppo.validate()
        for name in ("num_seeds", "updates_per_chunk", "max_steps", "record_episodes",
                     "record_steps", "horizon", "stride", "lm_iterations", "lm_batch",
                     "grad_iterations", "cem_iterations", "cem_population", "cem_batch",
                     "particles", "posterior_batch", "posterior_rounds", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.optimizer not in ("lm", "adam"):
            raise ValueError(f"optimizer must be 'lm' or 'adam', got {self.optimizer!r}")
        if self.lm_jacobian not in ("central", "forward"):
            raise ValueError(f"lm_jacobian must be 'central' or 'forward', got "
                             f"{self.lm_jacobian!r}")
        if self.horizon > self.record_steps:
            raise ValueError(f"horizon={self.horizon} exceeds record_steps={self.record_steps}")
        if self.cem_batch > self.cem_population:
            raise ValueError(f"cem_batch={self.cem_batch} exceeds cem_population="
                             f"{self.cem_population}")
        if self.posterior_batch > self.particles:
            raise ValueError(f"posterior_batch={self.posterior_batch} exceeds particles="
                             f"{self.particles}")
        if self.record_steps >= self.max_steps:
            raise ValueError("record_steps must be < max_steps (episodes must not end)")
        for name in ("hidden_mass", "hidden_friction", "hidden_damping", "hidden_gear",
                     "wide_mass", "wide_friction", "wide_damping", "wide_gear"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be a range 0 < low <= high, got {low},{high}")
        if not 0 <= self.hidden_delay <= self.max_delay or not (
                0 <= self.wide_delay[0] <= self.wide_delay[1] <= self.max_delay):
            raise ValueError(f"hidden_delay and wide_delay must lie in [0, max_delay="
                             f"{self.max_delay}]")
        if not 0 <= self.calibrated_width < 1 or not self.noise_std > 0:
            raise ValueError("need 0 <= calibrated_width < 1 and noise_std > 0")


PRESETS = {
    "quick": Config(ppo=dataclasses.replace(Config.ppo, num_envs=8, num_steps=32,
                                            total_steps=8 * 32 * 4, num_epochs=2,
                                            num_minibatches=2),
                    num_seeds=2, updates_per_chunk=2, max_steps=50, record_episodes=2,
                    record_steps=24, horizon=4, lm_iterations=3, grad_iterations=10,
                    cem_iterations=3,
                    cem_population=8, particles=8, posterior_rounds=1, eval_episodes=1),
    # Sized to finish in < 30 min on 2 idle cores (the defaults' 150 Adam iterations, 20 x 24
    # CEM, 3 x 48 particles and 163,840 PPO steps per policy did not finish in 37 min on the
    # loaded machine): 400 one-step windows (stride 2), 10 LM iterations (each 41 forward
    # passes over the 400 windows; on this recording LM reached the loss at the truth, 4e-11,
    # in 6: docs/sysid.md), 10 x 16 CEM, 2 x 32 particles, 98,304 PPO steps per policy (24 updates);
    # every MJX program compiles once.
    "cpu": Config(ppo=dataclasses.replace(Config.ppo, total_steps=98_304), lm_iterations=10,
                  grad_iterations=50, cem_iterations=10, cem_population=16, particles=32,
                  posterior_rounds=2),
    "accel": Config(ppo=dataclasses.replace(Config.ppo, num_envs=2048, num_steps=64,
                                            total_steps=50_000_000),
                    num_seeds=8, record_episodes=32, grad_iterations=400, cem_iterations=60,
                    cem_population=256, particles=1024, eval_episodes=8),
}


def hidden_physics(config: Config, robot) -> dict:
    """The real world's scales (``PhysicsParams`` layout), drawn once from ``hidden_seed``."""
    rng = np.random.default_rng(config.hidden_seed)
    m = robot.mj_model
    draw = lambda r, n: rng.uniform(*r, n)
    return {"body_mass_scale": np.r_[1.0, draw(config.hidden_mass, m.nbody - 1)],
            "friction_scale": np.float64(draw(config.hidden_friction, 1)[0]),
            "damping_scale": draw(config.hidden_damping, m.nv),
            "gear_scale": draw(config.hidden_gear, m.nu)}


def dr_space(env, center, ranges, delay):
    """A relative-uniform space around ``center`` (``Params``), full-shaped bounds, so every
    variant's space has one structure and PPO compiles once. ``ranges``: ``{field: (lo, hi)}``."""
    dists = {f: uniform(np.full(np.shape(getattr(center, f)), lo, np.float32),
                        np.full(np.shape(getattr(center, f)), hi, np.float32), relative=True)
             for f, (lo, hi) in ranges.items()}
    dists["action_delay"] = int_uniform(*delay)
    return make_param_space(center, dists)


def wide_ranges(config: Config) -> dict:
    return {"body_mass_scale": config.wide_mass, "friction_scale": config.wide_friction,
            "damping_scale": config.wide_damping, "gear_scale": config.wide_gear}


def calibrate(config: Config, robot, obs, actions, truth_theta):
    """Latency screen, then gradient and CEM fits and EPOpt's posterior at the chosen latency."""
    scale = log_scale(robot)
    per_delay = [cal.make_windows(obs, actions, config.horizon, config.stride, d)
                 for d in range(config.max_delay + 1)]
    std = cal.obs_scale(per_delay[0])
    loss = cal.prediction_loss(robot, cal.cheetah_state_from_obs(robot), scale, std)
    loss_at = jax.jit(loss)
    # Latency screen: a wrong delay misaligns every action with its effect, which costs far more
    # than any of the continuous fields' errors (0.64 / 0.10 / 0.54 at nominal physics for
    # delays 0 / 1 / 2 with a hidden delay of 1, against 1e-4 at the truth): one forward pass
    # per candidate picks it; every method then fits at that delay.
    start = time.time()
    screen = [float(loss_at(scale.init(), w)) for w in per_delay]
    _stage("latency screen", start)
    delay = cal.select_delay(screen)
    windows = per_delay[delay]
    key = jax.random.PRNGKey(config.hidden_seed)
    if config.optimizer == "lm":
        residuals = cal.prediction_residuals(robot, cal.cheetah_state_from_obs(robot), scale,
                                             std, reverse=config.lm_jacobian == "central")
        gradient = cal.least_squares_fit(residuals, config.lm_iterations, mask=scale.mask(),
                                         jacobian=config.lm_jacobian, batch_size=config.lm_batch)
    else:
        gradient = cal.gradient_fit(loss, config.grad_iterations, config.learning_rate)
    fits = {"gradient": lambda: gradient(scale.init(), windows),
            "cem": lambda: cal.cem_fit(loss, config.cem_iterations, config.cem_population,
                                       mask=scale.mask(), batch_size=config.cem_batch
                                       )(key, scale.init(), windows)}
    out = {}
    for method, fit in fits.items():
        start = time.time()
        theta, history = jax.block_until_ready(fit())
        out[method] = dict(delay=delay, loss_per_delay=screen, theta=theta, history=history,
                           wall_s=time.time() - start,
                           param_error=cal.relative_error(scale, theta, truth_theta),
                           loss=float(loss_at(theta, windows)),
                           loss_nominal=screen[delay],
                           loss_truth=float(loss_at(truth_theta, windows)))
        if history.jacobian is not None:
            out[method]["identifiability"] = cal.identifiability(
                np.asarray(history.jacobian), cal.active_names(scale))
        _stage(f"{method} fit", start)
        errors = "  ".join(f"{f} {e['mean']:.1%}/{e['max']:.1%}"
                           for f, e in out[method]["param_error"].items())
        print(f"[{NAME}] {method}: loss {out[method]['loss']:.3g} (nominal "
              f"{out[method]['loss_nominal']:.3g}, truth {out[method]['loss_truth']:.3g}); "
              f"relative error mean/max: {errors}", flush=True)
    out["gradient"]["optimizer"] = config.optimizer
    # EPOpt: the wide DR space updated by the trajectories' likelihood (Gaussian, std
    # noise_std in units of each observation dimension's spread).
    # The particles' losses in a lax.map of posterior_batch at a time (the whole vmapped batch
    # wedged XLA:CPU, as CEM's population did: docs/sysid.md).
    n = windows.targets.size
    batched = lambda thetas: jax.lax.map(lambda t: loss(t, windows), thetas,
                                         batch_size=config.posterior_batch)
    prior = dr_space(robot, robot.default_params(), wide_ranges(config), (0, 0))
    log_likelihood = lambda p: (-0.5 * n / config.noise_std ** 2) * batched(
        jax.vmap(scale.of_params)(p))
    start = time.time()
    space, info = jax.block_until_ready(jax.jit(lambda k: posterior_rounds(
        k, prior, log_likelihood, config.particles, config.posterior_rounds))(key))
    out["posterior"] = dict(delay=delay, space=space, ess=np.asarray(info["ess"]).tolist(),
                            temperature=np.asarray(info["temperature"]).tolist(),
                            wall_s=time.time() - start)
    _stage("posterior", start)
    return scale, out


def _stage(name: str, start: float) -> float:
    """Print that a stage ended (flushed: a run cut short still says how far it got and what
    each stage cost) and return its wall time in seconds."""
    seconds = time.time() - start
    print(f"[{NAME}] {name}: {seconds:.0f} s", flush=True)
    return seconds


def log_scale(robot) -> cal.LogScale:
    """The fitted fields in log-scale, the elements that do nothing in the model frozen."""
    return cal.LogScale(robot.default_params(), FIELDS,
                        active=cal.acting_elements(robot.mj_model))


def plot_estimates(path, scale, fits, truth_theta):
    fig = Figure(figsize=(4.2 * len(FIELDS), 3.6))
    for i, f in enumerate(FIELDS):
        ax = fig.add_subplot(1, len(FIELDS), i + 1)
        mask = np.asarray(scale.mask()[f], bool).reshape(-1)
        truth = np.asarray(truth_theta[f]).reshape(-1)[mask]
        for method, style in (("gradient", "-"), ("cem", "--")):
            theta = np.asarray(fits[method]["history"].theta[f])
            ratio = np.exp(theta.reshape(len(theta), -1)[:, mask] - truth)
            x = np.linspace(0, 1, len(theta))  # fraction of each method's iterations
            for j in range(ratio.shape[1]):
                ax.plot(x, ratio[:, j], style, lw=1, color=f"C{j}",
                        label=method if j == 0 else None)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set(title=f, xlabel="fraction of iterations", ylabel="estimate / truth",
               ylim=(0.4, 1.8))
        ax.legend(fontsize=7)
    plots._save(fig, path)


def policies(config: Config, robot=None, spaces=None):
    """``{variant: (PPO, learner config, (space,))}``; without ``spaces`` (``load_run``), every
    variant gets the wide space's structure (the checkpoint holds the trained one)."""
    robot = robot or make_robot(config)
    env = ActionDelay(robot, config.max_delay)
    wide = dr_space(env, env.default_params(), wide_ranges(config), config.wide_delay)
    ppo = PPO(env)
    spaces = spaces or {v: wide for v in VARIANTS}
    return {v: (ppo, config.ppo, (spaces[v],)) for v in VARIANTS}


def make_robot(config: Config):
    return envs.make("HalfCheetah", max_steps=config.max_steps, solver_iterations=4,
                     ls_iterations=8)


@supports_devices
def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    robot = make_robot(config)
    hidden = hidden_physics(config, robot)
    world = cal.PhysicsWorld(robot.gym_id, hidden, config.hidden_delay,
                             max_episode_steps=config.max_steps)
    scripted = cal.scripted_actions(seed, config.record_episodes, config.record_steps,
                                    robot.mj_model.nu)
    timing, start = {}, time.time()
    obs, actions = world.record(scripted, seed)
    timing["record"] = _stage("record real trajectories", start)

    nominal = robot.default_params()
    truth = nominal.replace(**{f: jnp.asarray(getattr(nominal, f)) * jnp.asarray(
        hidden[f], jnp.float32) for f in FIELDS})
    start = time.time()
    scale, fits = calibrate(config, robot, obs, actions,
                            log_scale(robot).of_params(truth))
    timing["calibration"] = time.time() - start

    env = ActionDelay(robot, config.max_delay)
    ones = {f: (1.0, 1.0) for f in FIELDS}
    width = (1 - config.calibrated_width, 1 + config.calibrated_width)
    estimate = scale.to_params(fits["gradient"]["theta"])
    post = fits["posterior"]
    spaces = {
        "nominal": dr_space(env, env.default_params(), ones, (0, 0)),
        "calibrated": dr_space(env, env.default_params().replace(
            **{f: getattr(estimate, f) for f in FIELDS}), {f: width for f in FIELDS},
            (fits["gradient"]["delay"],) * 2),
        "posterior": post["space"].replace(dists=dict(
            post["space"].dists, action_delay=int_uniform(post["delay"], post["delay"]))),
        "wide_dr": dr_space(env, env.default_params(), wide_ranges(config), config.wide_delay),
    }
    trained = policies(config, robot, spaces)
    ppo = trained["nominal"][0]
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    start = time.time()
    mesh = run_mesh(args.devices)  # --devices N: the PPO phases' seeds (or envs) split over N
    states = train_ppo_phases(run_dir, {v: (ppo, spaces[v]) for v in VARIANTS}, config.ppo,
                              seed_keys, config.updates_per_chunk, mesh=mesh)
    timing["ppo"] = _stage("PPO, all variants (0 if resumed after it)", start)
    start = time.time()

    returns = {}
    for variant in VARIANTS:
        per_seed = []
        paths = [run_dir / "policies" / f"{variant}_seed{s}" for s in range(config.num_seeds)]
        for s, path in enumerate(paths):
            if is_primary():  # one writer; every process evaluates what was written
                export_ppo(path, select_seed(states[variant], s), config.ppo, robot.action_space,
                           obs_layout=robot.observation_structure,
                           metadata={"experiment": NAME, "variant": variant, "seed": seed + s})
        sync(f"{NAME}/{variant}/policies")
        for path in paths:
            cell = world.evaluate(load_policy(path), [world.real()], config.eval_episodes, seed)
            per_seed.append(float(cell.mean()))
        returns[variant] = seed_summary(per_seed)
    world.close()
    timing["real_evaluation"] = _stage("export + real-engine evaluation", start)

    def verdict(a, b):
        ra, rb = returns[a], returns[b]
        if ra["ci95"] is None:
            return "one seed: no comparison"
        if ra["mean"] - ra["ci95"] > rb["mean"] + rb["ci95"]:
            return f"{a} above {b} (95% CIs disjoint)"
        if ra["mean"] + ra["ci95"] < rb["mean"] - rb["ci95"]:
            return f"{a} below {b} (95% CIs disjoint)"
        return f"tie: {a} and {b} 95% CIs overlap"

    plot_estimates(run_dir / "calibration.png", scale, fits,
                   log_scale(robot).of_params(truth))
    plots.plot_curves(run_dir / "curves.png", phase_curves(run_dir, VARIANTS),
                      xlabel="env steps (all seeds)", ylabel="episode return (MJX)",
                      title="PPO on HalfCheetah: training distributions")
    calibration = {m: {k: v for k, v in fits[m].items() if k not in ("theta", "history")}
                   for m in ("gradient", "cem")}
    for m in calibration:
        calibration[m]["estimate"] = {f: np.exp(np.asarray(fits[m]["theta"][f])).tolist()
                                      for f in FIELDS}
        calibration[m]["loss_history"] = np.asarray(fits[m]["history"].loss).tolist()
        if fits[m]["history"].damping is not None:  # LM's per-iteration diagnostics
            calibration[m]["lm_history"] = {  # non-finite (after convergence) -> None: JSON
                k: [v if np.isfinite(v) else None for v in np.asarray(
                    getattr(fits[m]["history"], k)).tolist()]
                for k in ("damping", "ratio", "step_norm", "accepted")}
    post_space = post["space"]
    results = {
        "hidden": {k: np.asarray(v).tolist() for k, v in hidden.items()}
        | {"action_delay": config.hidden_delay},
        "calibration": calibration,
        # Elements no data can identify (their model quantity is 0), excluded from param_error.
        "not_identifiable": {f: np.flatnonzero(np.asarray(scale.mask()[f]).reshape(-1) == 0)
                             .tolist() for f in FIELDS},
        "posterior": {"delay": post["delay"], "ess": post["ess"],
                      "temperature": post["temperature"], "wall_s": post["wall_s"],
                      "ranges": {f: [np.asarray(post_space.dists[f].low).tolist(),
                                     np.asarray(post_space.dists[f].high).tolist()]
                                 for f in FIELDS}},
        "policy": {v: {"real_return": returns[v]} for v in VARIANTS},
        "comparison": {f"calibrated_vs_{b}": verdict("calibrated", b)
                       for b in ("nominal", "wide_dr", "posterior")},
        # Wall seconds per stage of this process (compiles included; a resumed run times only
        # what it redid). The fits' own wall_s are under calibration.<method>.
        "timing_s": timing,
    }
    table = format_table([dict(variant=v, real_return=returns[v]["mean"],
                               ci95=returns[v]["ci95"] or float("nan")) for v in VARIANTS]
                         + [dict(variant=f"sysid {m}", real_return=float("nan"),
                                 ci95=float("nan"), delay=fits[m]["delay"],
                                 **{f: fits[m]["param_error"][f]["mean"] for f in FIELDS})
                            for m in ("gradient", "cem")])
    return finish(run_dir, {"results": results, "devices": mesh_size(mesh)}, table)


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
