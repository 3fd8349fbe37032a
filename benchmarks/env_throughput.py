"""Env throughput: pure-JAX envs with per-episode randomization vs a batched numpy twin and
gymnasium's fastest vector env, timed in interleaved rounds.

Usage (from the repo root)::

    python -m benchmarks.env_throughput [--preset smoke|quick|full] [--envs 1024,4096]
                                        [--rounds R] [--out PATH]

(``--quick`` is ``--preset smoke``: tiny sizes, for the test suite.) ``run(preset) -> dict`` is
what ``benchmarks.run`` calls. For Pendulum and CartPole (discrete) at each env count N, the
programs below run in rounds (``benchmarks.timing.interleave``: A, B, C, ... then again), so a
burst of load hits every side; each reports env-steps/s per round, and every ratio is taken per
round and summarized by its median and min-max:

* ``jax_randomized``: ``AutoReset(env)`` with a ``ParamSpace`` that draws four physics fields
  (relative uniform ranges in ``CASES``) at every episode start; the batch-level
  ``AutoReset.step_batch`` (what ``rollout`` and the learners use). One jitted call is a
  ``lax.scan`` over T steps; one env key per step for the batch, as ``rollout`` passes it
  (``step_batch`` hashes only the per-env keys it needs). Compile time is reported separately.
* ``jax_fixed``: the same program under ``fixed_space(nominal)``.
* ``jax_randomized_vmap`` (``full`` only): the randomized program as ``vmap(AutoReset.step)``,
  the per-env step that ``step_batch`` replaces (same bits, for the speed-up).
* ``jax_randomized_batched`` / ``jax_fixed_batched``: ``AutoReset(env, batched_draws=True)``,
  the opt-in that draws the batch's params from one key per step (other random streams than
  the default, same per-episode semantics); its ratios are prefixed ``batched``.
* ``numpy_batched``: ``benchmarks.numpy_envs``: the same dynamics and the same per-episode redraw,
  vectorized over envs with numpy (float32). Actions pre-sampled, outside the timing.
* ``gymnasium``: gymnasium's fastest vectorization of the env: ``vector_entry_point`` (numpy
  ``CartPoleVectorEnv``) for CartPole, ``sync`` for Pendulum (it has no vector entry point; no
  randomization). Actions pre-sampled.

Every side steps the same pre-sampled uniform random actions (a block of ``ACTION_BLOCK`` steps
drawn before timing, reused cyclically): the comparison is of env stepping, not of action
sampling. (Until 2026-12-02 the JAX programs drew their actions inside the scan with threefry
while the peers' were pre-sampled: ``RESULTS.md`` figures before then include that cost.)

Each program is sized by a probe to last about ``seconds`` per round. Reading: ``rand / fixed``
is the cost of randomization (1.0 = free); ``rand / numpy`` and ``rand / gym`` > 1 mean the
randomized JAX env is faster. Shared-CPU timings are noisy: compare ratios from one run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import pathlib
import platform
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.numpy_envs import NumpyCartPole, NumpyPendulum
from benchmarks.timing import interleave, spread
from envs import CartPole, Pendulum
from metarl_jax.core.env import Env, is_discrete
from metarl_jax.core.wrappers import AutoReset
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import ParamSpace, fixed_space, make_param_space


@dataclasses.dataclass(frozen=True)
class Case:
    """One env: its JAX constructor, the fields randomized (relative ranges), its numpy twin and
    its gym twin."""

    name: str
    make_env: Callable[[], Env]
    randomized: Dict[str, Tuple[float, float]]
    make_numpy: Callable
    gym_id: str
    gym_mode: str


CASES = (
    Case("Pendulum", Pendulum,
         {"m": (0.5, 2.0), "l": (0.7, 1.3), "g": (0.8, 1.2), "max_torque": (0.8, 1.2)},
         NumpyPendulum, "Pendulum-v1", "sync"),
    Case("CartPole", CartPole,
         {"masscart": (0.5, 2.0), "masspole": (0.5, 2.0), "length": (0.7, 1.3),
          "force_mag": (0.8, 1.2)},
         NumpyCartPole, "CartPole-v1", "vector_entry_point"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    env_counts: Tuple[int, ...] = (1, 64, 1024, 4096)
    envs: Tuple[str, ...] = ("Pendulum", "CartPole")  # names of CASES to run
    steps_per_call: int = 1_000_000  # env-steps per jitted call: T = steps_per_call // N,
    max_scan_length: int = 10_000  # clipped to [1, max_scan_length]
    rounds: int = 7  # interleaved rounds per cell
    seconds: float = 1.0  # each program's time per round (sized by a probe)
    include_vmap: bool = True  # also time vmap(AutoReset.step), the pre-step_batch path
    include_batched: bool = True  # also time AutoReset(batched_draws=True) (opt-in streams)


PRESETS = {
    # The test suite's run: one small CartPole cell (the env whose episodes end at staggered
    # steps, so the subset redraw runs), one round. CI time is compile time: 2 programs.
    "smoke": Config(env_counts=(8,), envs=("CartPole",), steps_per_call=256,
                    max_scan_length=256, rounds=1, seconds=0.01, include_vmap=False,
                    include_batched=False),
    "quick": Config(env_counts=(1024, 4096), steps_per_call=400_000, rounds=5, seconds=0.25,
                    include_vmap=False),
    "full": Config(),
}
QUICK = PRESETS["smoke"]  # what ``--quick`` runs
# Targets of issue #13 (ratios in one interleaved run, 2-core CPU).
TARGETS = {("rand/fixed", "Pendulum", 1024): 0.9, ("rand/fixed", "CartPole", 1024): 0.9,
           ("rand/gym", "CartPole", 1024): 3.0, ("rand/gym", "CartPole", 4096): 3.0,
           ("rand/numpy", "Pendulum", 1024): 1.0}


class Carry(NamedTuple):
    key: jax.Array
    env_state: object
    obs: jax.Array  # [N, obs_size]
    reward_sum: jax.Array  # [N]; consumed so XLA cannot drop the reward computation


ACTION_BLOCK = 64  # steps of pre-sampled actions, reused cyclically (every side)


def make_random_rollout(env: AutoReset, num_envs: int, num_steps: int,
                        per_env_vmap: bool = False) -> Callable:
    """``run(carry, space, actions) -> carry``: ``num_steps`` steps of ``num_envs`` envs through
    ``env.step_batch`` (or ``vmap(env.step)`` with ``per_env_vmap``), step ``t`` taking
    ``actions[t % ACTION_BLOCK]`` (pre-sampled, as the numpy and gymnasium peers' are). One env
    key per step for the batch, as ``core.rollout.rollout`` passes it (env ``i``'s key is
    ``split(key, N)[i]``; ``step_batch`` hashes only the keys it uses, ``vmap(step)`` all)."""
    if per_env_vmap:
        step = lambda key, *args: jax.vmap(env.step, in_axes=(0, 0, 0, None))(
            jax.random.split(key, num_envs), *args)
    else:
        step = env.step_batch

    def run(carry: Carry, param_space: ParamSpace, actions: jax.Array) -> Carry:
        def one_step(carry: Carry, t):
            key, step_key = jax.random.split(carry.key)
            action = actions[t % actions.shape[0]]
            env_state, obs, reward, _, _ = step(step_key, carry.env_state, action, param_space)
            return Carry(key, env_state, obs, carry.reward_sum + reward), None

        return jax.lax.scan(one_step, carry, jnp.arange(num_steps))[0]

    return jax.jit(run)


def jax_actions(space, num_envs: int, key: jax.Array) -> jax.Array:
    """``[ACTION_BLOCK, num_envs, *action_shape]`` uniform random actions of ``space``."""
    if is_discrete(space):
        return jax.random.randint(key, (ACTION_BLOCK, num_envs), 0, space.n)
    return jax.random.uniform(key, (ACTION_BLOCK, num_envs) + tuple(space.shape),
                              minval=space.low, maxval=space.high)


class Program(NamedTuple):
    """A timed program: ``call()`` runs ``steps`` env-steps (all envs) and returns seconds."""

    call: Callable[[], float]
    steps: int
    info: dict


def _sized(step_once: Callable[[], None], steps_once: int, seconds: float) -> Program:
    """Repeat ``step_once`` (``steps_once`` env-steps) enough times to last ~``seconds``."""
    start = time.perf_counter()
    step_once()  # warm-up and probe
    reps = max(1, math.ceil(seconds / max(time.perf_counter() - start, 1e-9)))

    def call() -> float:
        start = time.perf_counter()
        for _ in range(reps):
            step_once()
        return time.perf_counter() - start

    return Program(call, reps * steps_once, {"calls_per_round": reps})


def jax_program(env: AutoReset, space: ParamSpace, num_envs: int, cfg: Config,
                per_env_vmap: bool = False, seed: int = 0) -> Program:
    num_steps = int(np.clip(cfg.steps_per_call // num_envs, 1, cfg.max_scan_length))
    reset_key, run_key, action_key = jax.random.split(jax.random.key(seed), 3)
    reset_keys = jax.random.split(reset_key, num_envs)
    env_state, obs = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(reset_keys, space)
    carry = [Carry(run_key, env_state, obs, jnp.zeros((num_envs,), jnp.float32))]
    actions = jax.block_until_ready(jax_actions(env.action_space, num_envs, action_key))
    start = time.perf_counter()
    run = make_random_rollout(env, num_envs, num_steps, per_env_vmap).lower(
        carry[0], space, actions).compile()
    compile_s = time.perf_counter() - start

    def step_once():
        carry[0] = jax.block_until_ready(run(carry[0], space, actions))

    program = _sized(step_once, num_steps * num_envs, cfg.seconds)
    program.info.update(compile_s=compile_s, scan_length=num_steps)
    return program


def numpy_program(case: Case, num_envs: int, cfg: Config, seed: int = 0) -> Program:
    rng = np.random.default_rng(seed)
    env = case.make_numpy(num_envs, case.randomized, rng)
    block = ACTION_BLOCK  # pre-sampled actions, reused cyclically
    if case.name == "CartPole":
        actions = rng.integers(0, 2, (block, num_envs))
    else:
        actions = rng.uniform(-2.0, 2.0, (block, num_envs)).astype(np.float32)
    sums = np.zeros(num_envs, np.float32)

    def step_once():
        nonlocal sums
        for a in actions:
            sums = sums + env.step(a)[1]

    return _sized(step_once, block * num_envs, cfg.seconds)


def numpy_actions(space: gym.Space, shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions of ``[*shape, *space.shape]`` for one env's action ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=shape)
    return rng.uniform(space.low, space.high, size=shape + space.shape).astype(space.dtype)


def gym_program(case: Case, num_envs: int, cfg: Config, seed: int = 0) -> Tuple[Program, Any]:
    """gymnasium's vector env of ``case`` (and the env, to close after the rounds)."""
    envs = gym.make_vec(case.gym_id, num_envs=num_envs, vectorization_mode=case.gym_mode)
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    # 8 steps per call (sync-mode Pendulum steps ~60k env-steps/s: a call must stay short).
    actions = numpy_actions(envs.single_action_space, (8, num_envs), rng)

    def step_once():
        for action in actions:  # [T, N, *action_shape]
            envs.step(action)

    program = _sized(step_once, len(actions) * num_envs, cfg.seconds)
    program.info.update(mode=case.gym_mode)
    return program, envs


def benchmark_cell(case: Case, num_envs: int, cfg: Config) -> dict:
    """All programs of one (env, N) cell in ``cfg.rounds`` interleaved rounds."""
    env = AutoReset(case.make_env())
    batched_env = AutoReset(case.make_env(), batched_draws=True)
    nominal = env.unwrapped.default_params()
    dists = {name: uniform(low, high, relative=True)
             for name, (low, high) in case.randomized.items()}
    space = make_param_space(nominal, dists)
    programs = {"jax_randomized": jax_program(env, space, num_envs, cfg),
                "jax_fixed": jax_program(env, fixed_space(nominal), num_envs, cfg)}
    if cfg.include_vmap:
        programs["jax_randomized_vmap"] = jax_program(env, space, num_envs, cfg,
                                                      per_env_vmap=True)
    if cfg.include_batched:
        programs["jax_randomized_batched"] = jax_program(batched_env, space, num_envs, cfg)
        programs["jax_fixed_batched"] = jax_program(batched_env, fixed_space(nominal), num_envs,
                                                    cfg)
    programs["numpy_batched"] = numpy_program(case, num_envs, cfg)
    programs["gymnasium"], gym_envs = gym_program(case, num_envs, cfg)
    # Each call reports seconds per 1M env-steps, so per-round ratios compare equal work.
    timed = {name: (lambda p=p: p.call() * 1e6 / p.steps) for name, p in programs.items()}
    rounds = interleave(timed, cfg.rounds)
    gym_envs.close()
    row = {"env": case.name, "num_envs": num_envs, "rounds": rounds.complete}
    for name, p in programs.items():
        secs = rounds.seconds[name]
        row[name] = dict(p.info, steps_per_s=float(np.median([1e6 / x for x in secs])),
                         steps_per_s_spread=spread([1e6 / x for x in secs]))
    ratios = {"rand/fixed": rounds.ratios("jax_fixed")["jax_randomized"],
              "rand/numpy": rounds.ratios("numpy_batched")["jax_randomized"],
              "rand/gym": rounds.ratios("gymnasium")["jax_randomized"]}
    if cfg.include_vmap:
        ratios["step_batch/vmap"] = rounds.ratios("jax_randomized_vmap")["jax_randomized"]
    if cfg.include_batched:
        ratios["batched rand/fixed"] = rounds.ratios("jax_fixed_batched")[
            "jax_randomized_batched"]
        ratios["batched rand/numpy"] = rounds.ratios("numpy_batched")["jax_randomized_batched"]
        ratios["batched rand/gym"] = rounds.ratios("gymnasium")["jax_randomized_batched"]
    row["ratios"] = {k: spread(v) for k, v in ratios.items()}
    row["ratio_jax_randomized_over_gym"] = row["ratios"]["rand/gym"]["median"]
    row["ratio_jax_randomized_over_numpy"] = row["ratios"]["rand/numpy"]["median"]
    row["randomization_overhead"] = row["ratios"]["rand/fixed"]["median"]
    return row


def headline(rows: Sequence[dict]) -> List[dict]:
    """The targeted ratios (``TARGETS``) found in ``rows``, for ``benchmarks.run``."""
    out = []
    targets = dict(TARGETS)
    targets.update({(f"batched {ratio}", env, n): t for (ratio, env, n), t in TARGETS.items()})
    for (ratio, env, n), target in targets.items():
        for r in rows:
            if r["env"] == env and r["num_envs"] == n and ratio in r["ratios"]:
                got = r["ratios"][ratio]
                note = "met" if got["median"] >= target else (
                    f"missed by {100 * (1 - got['median'] / target):.0f}%")
                out.append({"label": f"{env} {n} envs: {ratio}", "ratio": got,
                            "target": target, "note": note})
    return out


def run(preset: str = "quick", env_counts: Optional[Sequence[int]] = None,
        rounds: Optional[int] = None) -> dict:
    """Every cell of ``PRESETS[preset]`` (optionally other env counts / rounds): JSON-ready."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = PRESETS[preset]
    if env_counts:
        cfg = dataclasses.replace(cfg, env_counts=tuple(int(n) for n in env_counts))
    if rounds:
        cfg = dataclasses.replace(cfg, rounds=int(rounds))
    unknown = set(cfg.envs) - {case.name for case in CASES}
    if unknown:
        raise ValueError(f"unknown env(s) {sorted(unknown)}; known: {[c.name for c in CASES]}")
    rows = [benchmark_cell(case, n, cfg) for case in CASES if case.name in cfg.envs
            for n in cfg.env_counts]
    return {"preset": preset, "config": dataclasses.asdict(cfg), "machine": machine_info(),
            "results": rows, "headline": headline(rows)}


def markdown(result: dict) -> str:
    return markdown_table(result["results"])


def machine_info() -> dict:
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return {"jax": jax.__version__, "backend": jax.default_backend(),
            "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
            "cpu_model": models[0] if models else platform.processor() or "unknown",
            "gymnasium": gym.__version__, "numpy": np.__version__,
            "python": platform.python_version(),
            "date": datetime.datetime.now().isoformat(timespec="seconds")}


def _si(x: float) -> str:
    """``3_560_000.0 -> "3.56M"``."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:.2f}{suffix}"
    return f"{x:.2f}"


def _ratio(r: dict, name: str) -> str:
    got = r["ratios"][name]
    return f"{got['median']:.2f} ({got['min']:.2f}-{got['max']:.2f})"


def markdown_table(rows: Sequence[dict]) -> str:
    """Median env-steps/s per program and per-round ratios (median, min-max over rounds)."""
    vmap = any("jax_randomized_vmap" in r for r in rows)
    batched = any("jax_randomized_batched" in r for r in rows)
    lines = ["| env | N | jax randomized | jax fixed | numpy batched | gymnasium (mode) "
             "| rand / fixed | rand / numpy | rand / gym "
             + ("| step_batch / vmap " if vmap else "")
             + ("| batched: rand / fixed, / numpy, / gym " if batched else "")
             + "| compile s (rand / fixed) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if vmap else "")
             + ("---:|" if batched else "") + "---:|"]
    for r in rows:
        rand, fixed, g = r["jax_randomized"], r["jax_fixed"], r["gymnasium"]
        lines.append(
            f"| {r['env']} | {r['num_envs']} | {_si(rand['steps_per_s'])} "
            f"| {_si(fixed['steps_per_s'])} | {_si(r['numpy_batched']['steps_per_s'])} "
            f"| {_si(g['steps_per_s'])} ({g['mode']}) "
            f"| {_ratio(r, 'rand/fixed')} | {_ratio(r, 'rand/numpy')} | {_ratio(r, 'rand/gym')} "
            + (f"| {_ratio(r, 'step_batch/vmap')} " if vmap else "")
            + (f"| {_ratio(r, 'batched rand/fixed')}, {_ratio(r, 'batched rand/numpy')}, "
               f"{_ratio(r, 'batched rand/gym')} " if batched else "")
            + f"| {rand['compile_s']:.2f} / {fixed['compile_s']:.2f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--quick", action="store_true", help="the same as --preset smoke")
    parser.add_argument("--envs", type=str, default=None,
                        help="comma-separated env counts, e.g. 1,64,1024,4096")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds per cell")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/env_throughput.json"))
    args = parser.parse_args(argv)
    if args.quick:
        args.preset = "smoke"
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    envs = args.envs.split(",") if args.envs else None
    report = run(args.preset, env_counts=envs, rounds=args.rounds)
    info = report["machine"]
    print(f"jax {info['jax']} ({info['backend']}: {info['device']}), {info['cpu_count']} CPUs "
          f"({info['cpu_model']}), gymnasium {info['gymnasium']}, {info['date']}\n")
    print(markdown_table(report["results"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out}")
    return report


if __name__ == "__main__":
    main()
