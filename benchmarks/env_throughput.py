"""Env throughput: pure-JAX envs with per-episode randomization vs gymnasium's vector envs.

Usage (from the repo root)::

    python -m benchmarks.env_throughput [--envs 1,64,1024,4096] [--steps N] [--quick] [--out PATH]

For Pendulum and CartPole (discrete) at each env count N, one run measures:

* ``jax_randomized``: ``AutoReset(env)`` with a ``ParamSpace`` that draws four physics fields
  (relative uniform ranges in ``CASES``) at every episode start. One jitted call is a
  ``lax.scan`` over T steps of ``jax.vmap(env.step)``, with random actions drawn inside the scan.
  Compile time (``lower().compile()``) is reported separately. After a warm-up call, each repeat
  times enough calls to last ~``jax_seconds``, and the best repeat is kept.
* ``jax_fixed``: the same program under ``fixed_space(nominal)``.
* ``gymnasium``: gymnasium's fastest vectorization of the env: ``vector_entry_point`` (numpy
  ``CartPoleVectorEnv``) for CartPole, ``sync`` for Pendulum (it has none). Actions are
  pre-sampled with numpy. The loop runs ~``gym_seconds``, sized by a 3-step probe. Best repeat.

Reading: env-steps/s, where one step of N envs counts as N. ``jax rand / gym`` > 1 means the
randomized JAX env is faster. ``rand / fixed`` is the cost of randomization (1.0 = free, 0.8 =
20% fewer steps/s). Shared-CPU timings are noisy, so compare numbers from the same run only.
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
from typing import Callable, Dict, NamedTuple, Sequence, Tuple

import gymnasium as gym
import jax
import jax.numpy as jnp
import numpy as np

from envs import CartPole, Pendulum
from metarl_jax.core.env import Env, is_discrete
from metarl_jax.core.wrappers import AutoReset
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import ParamSpace, fixed_space, make_param_space


@dataclasses.dataclass(frozen=True)
class Case:
    """One env: its JAX constructor, the fields randomized (relative ranges) and its gym twin."""

    name: str
    make_env: Callable[[], Env]
    randomized: Dict[str, Tuple[float, float]]
    gym_id: str
    gym_mode: str


CASES = (
    Case("Pendulum", Pendulum,
         {"m": (0.5, 2.0), "l": (0.7, 1.3), "g": (0.8, 1.2), "max_torque": (0.8, 1.2)},
         "Pendulum-v1", "sync"),
    Case("CartPole", CartPole,
         {"masscart": (0.5, 2.0), "masspole": (0.5, 2.0), "length": (0.7, 1.3),
          "force_mag": (0.8, 1.2)},
         "CartPole-v1", "vector_entry_point"),
)


@dataclasses.dataclass(frozen=True)
class Config:
    env_counts: Tuple[int, ...] = (1, 64, 1024, 4096)
    steps_per_call: int = 1_000_000  # env-steps per jitted call: T = steps_per_call // N,
    max_scan_length: int = 10_000  # clipped to [1, max_scan_length]
    jax_seconds: float = 0.5
    jax_repeats: int = 3
    gym_seconds: float = 1.0
    gym_repeats: int = 2


QUICK = Config(env_counts=(1, 8), steps_per_call=2_000, max_scan_length=2_000,
               jax_seconds=0.02, jax_repeats=1, gym_seconds=0.02, gym_repeats=1)


class Carry(NamedTuple):
    key: jax.Array
    env_state: object
    obs: jax.Array  # [N, obs_size]
    reward_sum: jax.Array  # [N]; consumed so XLA cannot drop the reward computation


def make_random_rollout(env: Env, num_envs: int, num_steps: int) -> Callable:
    """``run(carry, space) -> carry``: ``num_steps`` steps of ``num_envs`` envs, random actions."""
    step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    space = env.action_space

    def random_actions(key):
        if is_discrete(space):
            return jax.random.randint(key, (num_envs,), 0, space.n)
        return jax.random.uniform(key, (num_envs,) + tuple(space.shape), minval=space.low,
                                  maxval=space.high)

    def run(carry: Carry, param_space: ParamSpace) -> Carry:
        def one_step(carry: Carry, _):
            key, action_key, step_key = jax.random.split(carry.key, 3)
            env_keys = jax.random.split(step_key, num_envs)
            actions = random_actions(action_key)
            env_state, obs, reward, _, _ = step(env_keys, carry.env_state, actions, param_space)
            return Carry(key, env_state, obs, carry.reward_sum + reward), None

        return jax.lax.scan(one_step, carry, None, length=num_steps)[0]

    return jax.jit(run)


def time_jax(env: Env, space: ParamSpace, num_envs: int, cfg: Config, seed: int = 0) -> dict:
    """Compile time and best-of-repeats env-steps/s of ``make_random_rollout`` under ``space``."""
    num_steps = int(np.clip(cfg.steps_per_call // num_envs, 1, cfg.max_scan_length))
    reset_key, run_key = jax.random.split(jax.random.key(seed))
    reset_keys = jax.random.split(reset_key, num_envs)
    env_state, obs = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(reset_keys, space)
    carry = Carry(run_key, env_state, obs, jnp.zeros((num_envs,), jnp.float32))

    start = time.perf_counter()
    run = make_random_rollout(env, num_envs, num_steps).lower(carry, space).compile()
    compile_s = time.perf_counter() - start

    start = time.perf_counter()
    carry = jax.block_until_ready(run(carry, space))  # warm-up; also sizes the timed loop
    calls = max(1, math.ceil(cfg.jax_seconds / (time.perf_counter() - start)))
    best = math.inf
    for _ in range(cfg.jax_repeats):
        start = time.perf_counter()
        for _ in range(calls):
            carry = run(carry, space)
        jax.block_until_ready(carry)
        best = min(best, time.perf_counter() - start)
    assert np.all(np.isfinite(np.asarray(carry.reward_sum))), "non-finite rewards in the rollout"
    return {"steps_per_s": calls * num_steps * num_envs / best, "compile_s": compile_s,
            "scan_length": num_steps, "calls_timed": calls}


def numpy_actions(space: gym.Space, shape: Tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Uniform random actions of ``[*shape, *space.shape]`` for one env's action ``space``."""
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(space.start, space.start + space.n, size=shape)
    return rng.uniform(space.low, space.high, size=shape + space.shape).astype(space.dtype)


def _seconds_to_step(envs: gym.vector.VectorEnv, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for action in actions:  # actions: [T, N, *action_shape]
        envs.step(action)
    return time.perf_counter() - start


def time_gym(case: Case, num_envs: int, cfg: Config, seed: int = 0) -> dict:
    """Best-of-repeats env-steps/s of gymnasium's vector env of ``case`` with random actions."""
    envs = gym.make_vec(case.gym_id, num_envs=num_envs, vectorization_mode=case.gym_mode)
    rng = np.random.default_rng(seed)
    envs.reset(seed=seed)
    probe_s = _seconds_to_step(
        envs, numpy_actions(envs.single_action_space, (3, num_envs), rng)) / 3
    num_steps = max(3, int(cfg.gym_seconds / probe_s))
    best = min(
        _seconds_to_step(envs, numpy_actions(envs.single_action_space, (num_steps, num_envs), rng))
        for _ in range(cfg.gym_repeats))
    envs.close()
    return {"steps_per_s": num_steps * num_envs / best, "mode": case.gym_mode,
            "steps_timed": num_steps}


def benchmark_cell(case: Case, num_envs: int, cfg: Config) -> dict:
    env = AutoReset(case.make_env())
    nominal = env.unwrapped.default_params()
    dists = {name: uniform(low, high, relative=True)
             for name, (low, high) in case.randomized.items()}
    rand = time_jax(env, make_param_space(nominal, dists), num_envs, cfg)
    fixed = time_jax(env, fixed_space(nominal), num_envs, cfg)
    gym_result = time_gym(case, num_envs, cfg)
    return {"env": case.name, "num_envs": num_envs, "jax_randomized": rand, "jax_fixed": fixed,
            "gymnasium": gym_result,
            "ratio_jax_randomized_over_gym": rand["steps_per_s"] / gym_result["steps_per_s"],
            "randomization_overhead": rand["steps_per_s"] / fixed["steps_per_s"]}


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


def markdown_table(rows: Sequence[dict]) -> str:
    lines = ["| env | num_envs | jax randomized (steps/s) | jax fixed (steps/s) "
             "| gymnasium (steps/s, mode) | jax rand / gym | rand / fixed "
             "| jax compile s (rand / fixed) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        rand, fixed, g = r["jax_randomized"], r["jax_fixed"], r["gymnasium"]
        lines.append(
            f"| {r['env']} | {r['num_envs']} | {_si(rand['steps_per_s'])} "
            f"| {_si(fixed['steps_per_s'])} "
            f"| {_si(g['steps_per_s'])} ({g['mode']}) "
            f"| {r['ratio_jax_randomized_over_gym']:.2f}x "
            f"| {r['randomization_overhead']:.2f} "
            f"| {rand['compile_s']:.2f} / {fixed['compile_s']:.2f} |")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> Tuple[Config, pathlib.Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=str, default=None,
                        help="comma-separated env counts, e.g. 1,64,1024,4096")
    parser.add_argument("--steps", type=int, default=None,
                        help="env-steps per jitted JAX call (T = steps // N)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (envs 1,8) for a smoke test")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/env_throughput.json"))
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    if args.envs:
        cfg = dataclasses.replace(cfg, env_counts=tuple(int(n) for n in args.envs.split(",")))
    if args.steps:
        cfg = dataclasses.replace(cfg, steps_per_call=args.steps)
    return cfg, args.out


def main(argv: Sequence[str] | None = None) -> dict:
    cfg, out = parse_args(argv)
    info = machine_info()
    rows = [benchmark_cell(case, n, cfg) for case in CASES for n in cfg.env_counts]
    print(f"jax {info['jax']} ({info['backend']}: {info['device']}), {info['cpu_count']} CPUs "
          f"({info['cpu_model']}), gymnasium {info['gymnasium']}, {info['date']}\n")
    print(markdown_table(rows))
    report = {"machine": info, "config": dataclasses.asdict(cfg), "results": rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
