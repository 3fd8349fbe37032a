"""Domain-randomized MJX rollouts: per-episode resampling vs brax's DomainRandomizationVmapWrapper.

Usage (from the repo root)::

    python -m benchmarks.dr_throughput [--envs 1,16,64,256] [--steps N] [--quick] [--out PATH]
                                       [--append]

``--append`` keeps the cells already in ``--out`` (a cell measured again replaces its old row), so
a slow machine can measure the env counts in several invocations; the JSON is rewritten after
every cell.

Both sides step the same MJX model (``envs/assets/half_cheetah.xml``, the solver caps of
``HalfCheetah()``), 5 substeps per env step, random actions drawn inside the compiled scan, and
randomize the same fields with the same relative ranges (``RANGES``: per-body mass and inertia,
global friction, per-dof damping and armature, per-actuator gear, gravity):

* ``ours``: ``AutoReset(HalfCheetah(max_steps=episode_length))`` under a ``ParamSpace``: every
  episode of every env draws fresh physics inside the compiled program; the env state holds only
  ``qpos, qvel, qacc_warmstart`` and the episode's scale factors; each step rebuilds the env's
  model from the shared one (``apply_physics``), so only the randomized fields are per-env.
* ``brax``: a brax ``PipelineEnv`` (backend ``mjx``) with the same observation and reward, wrapped
  by ``brax.envs.training.wrap(env, episode_length, randomization_fn=...)`` -- brax's
  ``EpisodeWrapper`` + ``DomainRandomizationVmapWrapper`` + ``AutoResetWrapper``. Its physics
  are drawn once, at wrapper construction (one model per env for the whole run); its state holds
  full ``mjx.Data`` (twice: current and first, for the auto-reset).

Per cell: compile seconds, best-of-repeats env-steps/s (one step of N envs counts N), and memory
from XLA's ``compiled.memory_analysis()`` (argument = the batched state carried through the scan,
temp = scratch) plus the bytes of the per-env state and of the batched model fields. Timings on
a shared CPU are noisy: compare within one run only.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import pathlib
import time
from typing import Callable, Dict, NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from brax.envs import training as brax_training
from brax.envs.base import PipelineEnv
from brax.envs.base import State as BraxState
from brax.io import mjcf

from benchmarks.env_throughput import machine_info
from envs.half_cheetah import HalfCheetah
from envs.mjx_physics import batched_models
from metarl_jax.core.wrappers import AutoReset
from metarl_jax.randomization.distributions import uniform
from metarl_jax.randomization.param_space import ParamSpace, make_param_space

# Relative ranges (x nominal) of the randomized PhysicsParams fields, shared by both sides.
RANGES: Dict[str, Tuple[float, float]] = {
    "body_mass_scale": (0.7, 1.3), "friction_scale": (0.5, 1.5), "damping_scale": (0.7, 1.3),
    "armature_scale": (0.7, 1.3), "gear_scale": (0.8, 1.2), "gravity_scale": (0.9, 1.1),
}


@dataclasses.dataclass(frozen=True)
class Config:
    env_counts: Tuple[int, ...] = (1, 16, 64, 256)
    steps_per_call: int = 20_000  # env-steps per jitted call: T = steps_per_call // N, in [8, 1000]
    episode_length: int = 1000
    seconds: float = 2.0  # timed per repeat
    repeats: int = 3


QUICK = Config(env_counts=(1, 4), steps_per_call=40, episode_length=16, seconds=0.01, repeats=1)


class BraxHalfCheetah(PipelineEnv):
    """The same robot as ``envs.half_cheetah.HalfCheetah`` as a brax ``PipelineEnv`` (mjx
    backend): obs ``[qpos[1:], qvel]``, reward ``v_x - 0.1 |a|^2``, reset noise as gymnasium."""

    def __init__(self, mj_model):
        super().__init__(sys=mjcf.load_model(mj_model), backend="mjx", n_frames=5)
        self._init_q = jnp.asarray(mj_model.qpos0, jnp.float32)

    def reset(self, rng: jax.Array) -> BraxState:
        pos_key, vel_key = jax.random.split(rng)
        q = self._init_q + jax.random.uniform(pos_key, self._init_q.shape, minval=-0.1, maxval=0.1)
        qd = 0.1 * jax.random.normal(vel_key, (self.sys.nv,))
        pipeline_state = self.pipeline_init(q, qd)
        zero = jnp.zeros(())
        return BraxState(pipeline_state, self._obs(pipeline_state), zero, zero,
                         {"x_velocity": zero})

    def step(self, state: BraxState, action: jax.Array) -> BraxState:
        pipeline_state = self.pipeline_step(state.pipeline_state, jnp.clip(action, -1.0, 1.0))
        x_velocity = (pipeline_state.qpos[0] - state.pipeline_state.qpos[0]) / self.dt
        reward = x_velocity - 0.1 * jnp.sum(jnp.square(action))
        state.metrics.update(x_velocity=x_velocity)
        return state.replace(pipeline_state=pipeline_state, obs=self._obs(pipeline_state),
                             reward=reward, done=jnp.zeros(()))

    @staticmethod
    def _obs(data) -> jax.Array:
        return jnp.concatenate([data.qpos[1:], data.qvel])


def randomization_space(env: HalfCheetah) -> ParamSpace:
    dists = {name: uniform(low, high, relative=True) for name, (low, high) in RANGES.items()}
    return make_param_space(env.default_params(), dists)


def brax_randomization_fn(space: ParamSpace, num_envs: int, key: jax.Array) -> Callable:
    """brax's ``randomization_fn(sys) -> (sys_v, in_axes)``: the same fields, drawn once."""

    def randomize(sys):
        return batched_models(sys, space.sample(key, (num_envs,)))

    return randomize


class Carry(NamedTuple):
    key: jax.Array
    state: object
    reward_sum: jax.Array  # [N]; consumed so XLA keeps the reward computation


def _nbytes(tree) -> int:
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree)))


def _memory(compiled) -> dict:
    stats = compiled.memory_analysis()
    if stats is None:
        return {}
    return {k: int(getattr(stats, f"{k}_size_in_bytes")) for k in ("argument", "output", "temp")}


class Prepared(NamedTuple):
    """A compiled rollout program and its first carry, plus what the report says about it."""

    run: Callable
    carry: Carry
    info: dict


def _prepare(run, carry, num_envs: int, num_steps: int, state_bytes: int, model_bytes: int
             ) -> Prepared:
    start = time.perf_counter()
    compiled = jax.jit(run).lower(carry).compile()
    compile_s = time.perf_counter() - start
    carry = jax.block_until_ready(compiled(carry))  # warm-up
    return Prepared(compiled, carry, {
        "compile_s": compile_s, "scan_length": num_steps, "num_envs": num_envs,
        "memory": _memory(compiled), "state_bytes_per_env": state_bytes // num_envs,
        "batched_model_bytes": model_bytes})


def time_interleaved(programs: Dict[str, Prepared], cfg: Config) -> Dict[str, dict]:
    """Best-of-``repeats`` env-steps/s of each program, timing them in turn within every repeat
    (so a load change on a shared machine hits both sides, not one)."""
    calls, best, carries = {}, {}, {}
    for name, p in programs.items():
        start = time.perf_counter()
        carries[name] = jax.block_until_ready(p.run(p.carry))
        calls[name] = max(1, math.ceil(cfg.seconds / max(time.perf_counter() - start, 1e-9)))
        best[name] = math.inf
    for _ in range(cfg.repeats):
        for name, p in programs.items():
            start = time.perf_counter()
            carry = carries[name]
            for _ in range(calls[name]):
                carry = p.run(carry)
            carries[name] = jax.block_until_ready(carry)
            best[name] = min(best[name], (time.perf_counter() - start) / calls[name])
    out = {}
    for name, p in programs.items():
        finite = np.all(np.isfinite(np.asarray(carries[name].reward_sum)))
        assert finite, f"{name}: non-finite rewards"
        steps = p.info["num_envs"] * p.info["scan_length"]
        out[name] = dict(p.info, steps_per_s=steps / best[name], calls_timed=calls[name])
    return out


def prepare_ours(env: HalfCheetah, space: ParamSpace, num_envs: int, num_steps: int,
                 key: jax.Array) -> Prepared:
    wrapped = AutoReset(env)
    reset_key, run_key = jax.random.split(key)
    states, _ = jax.jit(jax.vmap(wrapped.reset, in_axes=(0, None)))(
        jax.random.split(reset_key, num_envs), space)
    step = jax.vmap(wrapped.step, in_axes=(0, 0, 0, None))

    def run(carry: Carry) -> Carry:
        def one(c: Carry, _):
            key, action_key, step_key = jax.random.split(c.key, 3)
            actions = jax.random.uniform(action_key, (num_envs, env.action_size),
                                         minval=-1, maxval=1)
            keys = jax.random.split(step_key, num_envs)
            state, _, reward, _, _ = step(keys, c.state, actions, space)
            return Carry(key, state, c.reward_sum + reward), None

        return jax.lax.scan(one, carry, None, length=num_steps)[0]

    carry = Carry(run_key, states, jnp.zeros((num_envs,)))
    # Per-env models exist only inside the step; what is batched between steps are the factors.
    return _prepare(run, carry, num_envs, num_steps, _nbytes(states), _nbytes(states.params))


def prepare_brax(env: HalfCheetah, space: ParamSpace, num_envs: int, num_steps: int,
                 episode_length: int, key: jax.Array) -> Prepared:
    sample_key, reset_key, run_key = jax.random.split(key, 3)
    base = BraxHalfCheetah(env.mj_model)
    randomize = brax_randomization_fn(space, num_envs, sample_key)
    wrapped = brax_training.wrap(base, episode_length=episode_length, randomization_fn=randomize)
    states = jax.jit(wrapped.reset)(jax.random.split(reset_key, num_envs))

    def run(carry: Carry) -> Carry:
        def one(c: Carry, _):
            key, action_key = jax.random.split(c.key)
            actions = jax.random.uniform(action_key, (num_envs, env.action_size),
                                         minval=-1, maxval=1)
            state = wrapped.step(c.state, actions)
            return Carry(key, state, c.reward_sum + state.reward), None

        return jax.lax.scan(one, carry, None, length=num_steps)[0]

    carry = Carry(run_key, states, jnp.zeros((num_envs,)))
    sys_v = wrapped.env._sys_v  # EpisodeWrapper -> DomainRandomizationVmapWrapper
    axes = wrapped.env._in_axes
    batched = [x for x, a in zip(jax.tree.leaves(sys_v), jax.tree.leaves(
        axes, is_leaf=lambda a: a is None)) if a is not None]
    return _prepare(run, carry, num_envs, num_steps, _nbytes(states), _nbytes(batched))


def benchmark_cell(num_envs: int, cfg: Config, seed: int = 0) -> dict:
    env = HalfCheetah(max_steps=cfg.episode_length)
    space = randomization_space(env)
    num_steps = int(np.clip(cfg.steps_per_call // num_envs, 8, 1000))
    key = jax.random.PRNGKey(seed)
    timed = time_interleaved({
        "ours": prepare_ours(env, space, num_envs, num_steps, key),
        "brax": prepare_brax(env, space, num_envs, num_steps, cfg.episode_length, key)}, cfg)
    ours, brax = timed["ours"], timed["brax"]
    mem = lambda r: r["memory"].get("argument", 0) + r["memory"].get("temp", 0)
    return {"num_envs": num_envs, "ours": ours, "brax": brax,
            "throughput_ratio": ours["steps_per_s"] / brax["steps_per_s"],
            "memory_ratio": mem(ours) / max(mem(brax), 1)}


def _kb(x: int) -> str:
    return f"{x / 1024:.1f}"


def markdown_table(rows: Sequence[dict]) -> str:
    lines = ["| num_envs | ours steps/s | brax steps/s | ours / brax | ours compile s "
             "| brax compile s | state B/env (ours / brax) | arg+temp KiB (ours / brax) "
             "| mem ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        o, b = r["ours"], r["brax"]
        om = o["memory"].get("argument", 0) + o["memory"].get("temp", 0)
        bm = b["memory"].get("argument", 0) + b["memory"].get("temp", 0)
        lines.append(
            f"| {r['num_envs']} | {o['steps_per_s']:.0f} | {b['steps_per_s']:.0f} "
            f"| {r['throughput_ratio']:.2f}x | {o['compile_s']:.1f} | {b['compile_s']:.1f} "
            f"| {o['state_bytes_per_env']} / {b['state_bytes_per_env']} | {_kb(om)} / {_kb(bm)} "
            f"| {r['memory_ratio']:.2f} |")
    return "\n".join(lines)


def parse_args(argv) -> Tuple[Config, pathlib.Path, bool]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--envs", type=str, default=None, help="comma-separated env counts")
    parser.add_argument("--steps", type=int, default=None, help="env-steps per jitted call")
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test")
    parser.add_argument("--out", type=pathlib.Path,
                        default=pathlib.Path("benchmarks/results/dr_throughput.json"))
    parser.add_argument("--append", action="store_true", help="keep the cells already in --out")
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else Config()
    if args.envs:
        cfg = dataclasses.replace(cfg, env_counts=tuple(int(n) for n in args.envs.split(",")))
    if args.steps:
        cfg = dataclasses.replace(cfg, steps_per_call=args.steps)
    return cfg, args.out, args.append


def main(argv: Sequence[str] | None = None) -> dict:
    cfg, out, append = parse_args(argv)
    info = machine_info()
    rows = json.loads(out.read_text())["results"] if append and out.exists() else []
    out.parent.mkdir(parents=True, exist_ok=True)
    for n in cfg.env_counts:
        row = dict(benchmark_cell(n, cfg), date=machine_info()["date"])
        rows = sorted([r for r in rows if r["num_envs"] != n] + [row], key=lambda r: r["num_envs"])
        report = {"machine": info, "config": dataclasses.asdict(cfg), "ranges": RANGES,
                  "results": rows}
        out.write_text(json.dumps(report, indent=2))
        print(markdown_table([row]).splitlines()[-1], flush=True)
    print(f"\njax {info['jax']} ({info['backend']}), {info['cpu_count']} CPUs "
          f"({info['cpu_model']}), {info['date']}\n")
    print(markdown_table(rows))
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
