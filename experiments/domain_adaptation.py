"""Domain adaptation for RL: align what the policy sees (DANN), correct for how it moves (DARC),
share a feature space across bodies (IFS).

    python -m experiments.domain_adaptation [--method dann|darc|ifs|all] [--preset quick|cpu|accel]
    python -m experiments.domain_adaptation --resume runs/domain_adaptation/<timestamp>

DANN and DARC use ``envs.DomainNav2D`` (a point steering to a goal, reward = -distance).

**DANN** -- the target is the same task seen through an unknown sensor: ``obs = G p + b`` with a
positive per-axis gain ``G`` and an offset ``b``, plus two distractor entries of noise (the
source sensor is the identity, distractors silent). Why this shift: marginal alignment can only
undo a map that is pinned down by the marginals. A per-axis gain and offset are, up to the sign
of each gain -- and the sign too once the state distribution is not mirror-symmetric, which is
why starts are a truncated normal skewed towards ``(-start_skew, -start_skew)`` in ``[-1, 1]^2``
rather than uniform (a symmetric box lets DANN align onto the mirror image and steer the wrong
way). A permutation or rotation of the axes is not identifiable from marginals of such symmetric-
ish distributions in general, so it is not used.
Methods (same compiled program, ``domain_coef`` and the spaces are data): ``no_adaptation`` (SAC
on source, encoder not aligned), ``dann`` (SAC on source + adversarial alignment on unlabelled
target observations), ``target_oracle`` (SAC trained on the target with its rewards).

**DARC** -- the target has a wall across the straight path (``x = 0.5, |y| <= wall_half``) that
the source simulator lacks: the source-optimal policy steers straight and gets stuck on it in the
target, so source-only fails there and a policy that goes around is needed. Methods at the same
target-data budget: ``source_only`` (DARC's program with ``delta_r_coef = 0``: the target data is
collected but unused), ``darc`` and ``target_only_same_budget`` (SAC on the target with only that
budget, and as many gradient steps as DARC's SAC; ``target_only=False`` skips it, as the
quick preset does, to compile one SAC program fewer). Target data (DARC's and target-only's) is
collected by the current policy from starts anywhere in the arena (``x in [-0.1, collect_x]``),
not only from the task's starts: a policy that is stuck at the wall in the target never shows the
classifiers the target beyond it, and there DARC's Δr was measured at -4 (the policy then stops
short of the wall in the source too). The classifiers train once per SAC gradient step and use
``transfer.darc``'s shared noise (the wall changes a step's displacement by at most 0.1).

**IFS** (Gupta et al. 2017) -- a 2-link source arm and a 3-link target arm (``envs.PlanarArm``,
overdamped joints), both starting with the end effector at the same point. Proxy task: both track
the same straight end-effector reaches to ``num_proxy_goals`` goals with a scripted IK controller;
states at the same time step are pairs (time alignment; no DTW needed since both track one clock).
Encoders f, g (+ decoders) are trained on the pairs, per seed. New skill: the source's scripted
reach to ``NEW_GOAL`` (``experiments._ifs_arms``, which runs IFS), a region no proxy goal
comes within 0.3 of. The target learns it with PPO
on the sparse task reward (1 per step inside the goal region) plus ``-alpha ||g(s_T,t) -
f(s_S,t)|| / scale``: ``ifs`` (trained f, g), ``random_features`` (untrained f, g of the same
sizes), ``no_transfer`` (``alpha = 0``); one compiled PPO program for the three. ``target_return``
is the task reward of one deterministic episode (the arm is deterministic).

Writes ``config.json``, ``metrics.jsonl``, ``summary.json`` (``results.<method>.target_return``
with ``ci95`` and per-seed values; ``comparisons``: a method is "better" only when the 95% CIs
do not overlap, else "tie"), ``features_pca.png`` and ``dann_accuracy.png`` (DANN),
``darc_curves.png`` (DARC), ``checkpoints/``.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from envs.domain_nav import DomainNav2D
from experiments._ifs_arms import train_ifs_methods
from metarl_jax import stats
from metarl_jax.algos.ppo import PPOConfig
from metarl_jax.algos.sac import SAC, SACConfig
from metarl_jax.io import plots
from metarl_jax.io.config import check_at_least_one
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.progress import format_table
from metarl_jax.io.training_loop import phase_metrics, train_phase
from metarl_jax.randomization.distributions import truncated_normal, uniform
from metarl_jax.randomization.param_space import make_param_space
from metarl_jax.transfer import ifs as ifs_lib
from metarl_jax.transfer.dann import DANN, DANNConfig
from metarl_jax.transfer.darc import DARC, DARCConfig
from metarl_jax.transfer.evaluation import seed_evaluator

NAME = "domain_adaptation"
METHODS = ("dann", "darc", "ifs")
_SAC = SACConfig(num_envs=8, total_steps=8000, hidden_sizes=(64, 64), batch_size=128,
                 buffer_size=50_000, learning_starts=1000)


@dataclasses.dataclass(frozen=True)
class Config:
    method: str = "all"  # dann | darc | ifs | all (also --method)
    dann: DANNConfig = DANNConfig(sac=_SAC, domain_steps=16)
    darc: DARCConfig = DARCConfig(sac=_SAC.replace(total_steps=16_000), target_envs=1,
                                  classifier_steps=8, classifier_lr=1e-3, shared_noise=True)
    ifs: ifs_lib.IFSConfig = ifs_lib.IFSConfig()
    target_gain: Tuple[float, float] = (1.6, 0.6)  # DANN's target sensor: obs = G p + b
    target_bias: Tuple[float, float] = (0.6, -0.5)
    distractor_std: float = 0.5
    start_skew: float = 0.5  # DANN's starts: N(-start_skew, 0.6^2) per axis, truncated to +-1
    wall_half: float = 0.25  # DARC's target wall: x = 0.5, |y| <= wall_half
    start_spread: float = 0.8  # DARC's starts: x in +-0.1, y in +-start_spread; goal (1, 0)
    collect_x: float = 1.0  # DARC's target data starts: x in [-0.1, collect_x], same y
    target_only: bool = True  # DARC's target_only_same_budget baseline (its own SAC program)
    skill_radius: float = 0.05  # IFS's new skill: reach within this of NEW_GOAL (sparse reward)
    ifs_seeds: int = 8  # IFS's seeds (cheap runs, bimodal no-transfer returns: more seeds)
    num_seeds: int = 3
    log_every: int = 50  # updates averaged into one metrics line
    updates_per_chunk: int = 8  # metrics lines per compiled chunk
    eval_episodes: int = 64

    def __post_init__(self):
        if self.method not in METHODS + ("all",):
            raise ValueError(f"method must be one of {'|'.join(METHODS + ('all',))}, "
                             f"got {self.method!r}")
        self.dann.validate(), self.darc.validate(), self.ifs.validate()
        check_at_least_one(self, ("num_seeds", "log_every", "updates_per_chunk", "eval_episodes"))
        if min(self.num_seeds, self.ifs_seeds) < 2:
            raise ValueError(f"num_seeds and ifs_seeds must be >= 2 for confidence intervals, "
                             f"got {self.num_seeds}, {self.ifs_seeds}")
        for name, cfg in (("dann", self.dann), ("darc", self.darc), ("ifs", self.ifs)):
            if cfg.num_updates % self.log_every:
                raise ValueError(f"{name}: {cfg.num_updates} updates is not a multiple of "
                                 f"log_every={self.log_every}")
        if not (min(self.target_gain) > 0 and self.distractor_std >= 0 and self.wall_half > 0):
            raise ValueError("need target_gain > 0, distractor_std >= 0 and wall_half > 0")

    @property
    def methods(self) -> Tuple[str, ...]:
        return METHODS if self.method == "all" else (self.method,)


# quick: compile-bound (tests/CI); small buffers keep the per-phase checkpoint cheap, one chunk
# per phase saves once, and every method's programs compile once (shared evaluators).
_QUICK_SAC = _SAC.replace(total_steps=400, learning_starts=100, batch_size=32, buffer_size=800,
                          hidden_sizes=(32, 32))
PRESETS = {
    "quick": Config(dann=Config.dann.replace(sac=_QUICK_SAC, domain_steps=4, domain_batch=32,
                                             obs_buffer_size=800),
                    darc=Config.darc.replace(sac=_QUICK_SAC, classifier_batch=32,
                                             classifier_steps=2, target_buffer_size=400,
                                             delta_r_warmup=200),
                    ifs=ifs_lib.IFSConfig(
                        encoder=ifs_lib.EncoderConfig(hidden_sizes=(16,), num_steps=50,
                                                      batch_size=32),
                        ppo=PPOConfig(num_envs=4, num_steps=40, total_steps=4 * 40 * 10,
                                      num_epochs=1, num_minibatches=1, hidden_sizes=(16,)),
                        num_proxy_goals=4),
                    target_only=False, num_seeds=2, ifs_seeds=2, log_every=10,
                    updates_per_chunk=10, eval_episodes=8),
    "cpu": Config(),
    "accel": Config(dann=Config.dann.replace(sac=_SAC.replace(num_envs=64, total_steps=204_800)),
                    darc=Config.darc.replace(sac=_SAC.replace(num_envs=64, total_steps=409_600),
                                             target_envs=8),
                    ifs=Config.ifs.replace(ppo=Config.ifs.ppo.replace(
                        num_envs=256, total_steps=256 * 40 * 600)), num_seeds=8),
}


def compare(results: dict, a: str, b: str) -> dict:
    """``a`` vs ``b`` on mean target return: "better"/"worse" only if the 95% CIs are apart."""
    (ma, ca), (mb, cb) = ((results[m]["target_return"], results[m]["ci95"]) for m in (a, b))
    return dict(difference=ma - mb, verdict=stats.ci_verdict(ma, ca, mb, cb))


def summarize(per_seed: np.ndarray, **extra) -> dict:
    mean, half = stats.mean_ci95(per_seed)
    return dict(target_return=mean, ci95=half, per_seed=[float(x) for x in per_seed], **extra)


def train(run_dir, phase, learner, cfg, config, init_args, seed_keys, env_steps, show):
    """One checkpointed training phase of ``learner`` (all seeds in one program)."""
    return train_phase(
        run_dir, phase, init=lambda: learner.init_seeds(seed_keys, cfg, *init_args),
        chunk=lambda s, n: learner.train_chunk_seeds(s, cfg, n, log_every=config.log_every),
        num_updates=cfg.num_updates // config.log_every, updates_per_chunk=config.updates_per_chunk,
        steps_per_update=env_steps * config.log_every * config.num_seeds, show=show)


def run_dann(run_dir, config: Config, seed: int) -> Tuple[dict, dict]:
    env = DomainNav2D(num_distractors=2)
    source = env.default_params()
    target = source.replace(obs_matrix=jnp.diag(jnp.asarray(config.target_gain)),
                            obs_bias=jnp.asarray(config.target_bias),
                            distractor_std=jnp.float32(config.distractor_std))
    start = truncated_normal(-config.start_skew, 0.6, -1.0, 1.0)  # asymmetric: see module doc
    spaces = {d: make_param_space(p, {"start": start})
              for d, p in (("source", source), ("target", target))}
    dann = DANN(env)
    keys = jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    runs = {"no_adaptation": (0.0, "source"), "dann": (None, "source"),
            "target_oracle": (0.0, "target")}
    eval_params = spaces["target"].sample(jax.random.PRNGKey(seed + 7), (config.eval_episodes,))
    # One evaluator (one compile) for the three runs: the policy reads only static config.
    evaluate = seed_evaluator(lambda s: dann.make_policy(s, config.dann, True), env,
                              eval_params, 1, jax.random.PRNGKey(seed + 8))
    results, states = {}, {}
    for method, (coef, train_on) in runs.items():
        cfg = config.dann if coef is None else config.dann.replace(domain_coef=coef)
        states[method] = train(run_dir, method, dann, cfg, config,
                               (spaces[train_on], spaces["target"]), keys,
                               cfg.sac.steps_per_update, ("episode_return", "domain_accuracy"))
        returns = np.asarray(evaluate(states[method])).mean(-1)
        accuracy = [line["domain_accuracy"] for line in phase_metrics(run_dir, method)]
        results[method] = summarize(returns, domain_accuracy_curve=accuracy,
                                    final_domain_accuracy=float(np.mean(accuracy[-3:])))
    # Compilations of the training program in this process (all three runs share it).
    results["dann"]["compiles"] = dann.traces.get("train_chunk_seeds", 0)
    # Features of the same positions through both sensors (paired only here, for the figure).
    positions = jax.random.uniform(jax.random.PRNGKey(seed + 9), (300, 2), minval=-1, maxval=1)
    view = jax.vmap(env.observe, in_axes=(0, 0, None))
    obs_keys = jax.random.split(jax.random.PRNGKey(seed + 10), 300)
    obs = {d: view(obs_keys, positions, p) for d, p in (("source", source), ("target", target))}
    initial = dann.init(keys[0], config.dann, spaces["source"], spaces["target"])
    panels = {"initial encoder": initial.sac.params["actor"],
              **{m: jax.tree.map(lambda x: x[0], states[m].sac.params["actor"])
                 for m in ("no_adaptation", "dann")}}
    feats = {name: {d: np.asarray(dann.features(p, config.dann, o)) for d, o in obs.items()}
             for name, p in panels.items()}
    for m in ("no_adaptation", "dann"):  # paired distance / feature scale: 0 = perfectly aligned
        f = feats[m]
        results[m]["paired_feature_distance"] = float(
            np.linalg.norm(f["source"] - f["target"], axis=-1).mean()
            / np.linalg.norm(f["source"] - f["source"].mean(0), axis=-1).mean())
    plot_features(run_dir / "features_pca.png", feats)
    return results, {"dann_vs_no_adaptation": compare(results, "dann", "no_adaptation"),
                     "dann_vs_target_oracle": compare(results, "dann", "target_oracle")}


def run_darc(run_dir, config: Config, seed: int) -> Tuple[dict, dict]:
    env = DomainNav2D(max_steps=40)
    source = env.default_params().replace(goal=jnp.array([1.0, 0.0]),
                                          wall_low=jnp.float32(-config.wall_half),
                                          wall_high=jnp.float32(config.wall_half))
    target = source.replace(wall_on=jnp.float32(1.0))
    start = uniform((-0.1, -config.start_spread), (0.1, config.start_spread))
    spaces = {d: make_param_space(p, {"start": start})
              for d, p in (("source", source), ("target", target))}
    # Target data (DARC's and target-only's) starts anywhere in the arena: see the module doc.
    collect = make_param_space(target, {"start": uniform(
        (-0.1, -config.start_spread), (config.collect_x, config.start_spread))})
    darc, keys = DARC(env), jax.random.split(jax.random.PRNGKey(seed), config.num_seeds)
    eval_params = spaces["target"].sample(jax.random.PRNGKey(seed + 7), (config.eval_episodes,))
    # One evaluator (one compile) for the three runs, on the SAC actor's (params, obs stats).
    act = lambda p: (lambda k, obs: darc.sac.act(p[0], p[1], config.darc.sac, k, obs, True))
    evaluator = seed_evaluator(act, env, eval_params, 1, jax.random.PRNGKey(seed + 8))
    evaluate = lambda sac_states: np.asarray(evaluator(
        (sac_states.params["actor"], sac_states.obs_stats))).mean(-1)
    cfg, results = config.darc, {}
    budget = cfg.target_budget
    for method, coef in (("source_only", 0.0), ("darc", cfg.delta_r_coef)):
        c = cfg.replace(delta_r_coef=coef)
        states = train(run_dir, method, darc, c, config, (spaces["source"], collect),
                       keys, c.sac.steps_per_update, ("episode_return",
                                                      "target_episode_return"))
        results[method] = summarize(evaluate(states.sac), target_steps=budget)
    results["darc"]["compiles"] = darc.traces.get("train_chunk_seeds", 0)
    comparisons = {"darc_vs_source_only": compare(results, "darc", "source_only")}
    if not config.target_only:  # the quick preset: one SAC program fewer to compile
        return results, comparisons
    ratio = cfg.sac.num_envs / cfg.target_envs  # same data, same gradient steps as DARC's SAC
    target_sac = cfg.sac.replace(num_envs=cfg.target_envs, total_steps=budget,
                                 utd=cfg.sac.utd * ratio,
                                 learning_starts=int(cfg.sac.learning_starts / ratio))
    sac = SAC(env)
    states = train(run_dir, "target_only_same_budget", sac, target_sac, config,
                   (collect,), keys, target_sac.steps_per_update, ("episode_return",))
    results["target_only_same_budget"] = summarize(evaluate(states), target_steps=budget)
    comparisons["darc_vs_target_only"] = compare(results, "darc", "target_only_same_budget")
    return results, comparisons


def run_ifs(run_dir, config: Config, seed: int) -> Tuple[dict, dict]:
    runs, diagnostics = train_ifs_methods(run_dir, config.ifs, config.ifs_seeds,
                                          config.skill_radius, config.log_every,
                                          config.updates_per_chunk, seed)
    results = {m: summarize(per_seed, **extra) for m, (per_seed, extra) in runs.items()}
    results["ifs"].update(diagnostics)
    return results, {"ifs_vs_no_transfer": compare(results, "ifs", "no_transfer"),
                     "ifs_vs_random_features": compare(results, "ifs", "random_features")}


def plot_features(path, feats: dict):
    fig = Figure(figsize=(4.2 * len(feats), 4.0), layout="constrained")
    for i, (name, f) in enumerate(feats.items()):
        both = np.concatenate([f["source"], f["target"]])
        centred = both - both.mean(0)
        axes = np.linalg.svd(centred, full_matrices=False)[2][:2].T  # top-2 principal axes
        ax = fig.add_subplot(1, len(feats), i + 1)
        for d, colour in (("source", "tab:blue"), ("target", "tab:red")):
            xy = (f[d] - both.mean(0)) @ axes
            ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.5, color=colour, label=d)
        ax.set(title=name, xlabel="PC 1", ylabel="PC 2")
        ax.legend(loc="best", fontsize=8)
    plots._save(fig, path)


def main(args) -> dict:
    run_dir, config, seed = start_run(NAME, args)
    runners = {"dann": run_dann, "darc": run_darc, "ifs": run_ifs}
    results, comparisons = {}, {}
    for method in config.methods:
        r, c = runners[method](run_dir, config, seed)
        results.update(r)
        comparisons.update(c)
    curve = lambda phase, key: ([x["step"] for x in phase_metrics(run_dir, phase)],
                                [x[key] for x in phase_metrics(run_dir, phase)])
    if "dann" in config.methods:
        plots.plot_curves(run_dir / "dann_accuracy.png",
                          {p: curve(p, "domain_accuracy") for p in ("no_adaptation", "dann")},
                          xlabel="source env steps (all seeds)", ylabel="domain accuracy",
                          title="DANN: domain classifier on f(obs) (0.5 = chance)")
    if "darc" in config.methods:
        plots.plot_curves(run_dir / "darc_curves.png",
                          {p: curve(p, "target_episode_return") for p in ("source_only", "darc")},
                          xlabel="source env steps (all seeds)",
                          ylabel="target episode return (logged, not learned from)",
                          title="DARC: return of the data-collecting policy in the target")
    table = format_table([dict(method=m, target_return=r["target_return"], ci95=r["ci95"])
                          for m, r in results.items()])
    summary = {"results": results, "comparisons": comparisons}
    return finish(run_dir, summary, table)


def cli_argv(argv):
    """``--method X`` / ``--method=X`` -> the config override ``method=X``."""
    out, it = [], iter(argv)
    for a in it:
        if a == "--method":
            out.append(f"method={next(it, '')}")
        elif a.startswith("--method="):
            out.append("method=" + a.split("=", 1)[1])
        else:
            out.append(a)
    return out


if __name__ == "__main__":
    from metarl_jax.io.cli import cli

    sys.exit(cli(NAME, main, Config, PRESETS, __doc__, argv=cli_argv(sys.argv[1:])))
