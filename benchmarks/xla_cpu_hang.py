"""Reproducer of the XLA:CPU hang (docs/xla_cpu_hang.md); a diagnostic, not a test.

    python -m benchmarks.xla_cpu_hang [--calls 8] [--particles 32] [--map 0] [--stall-s 40]
    XLA_FLAGS=... python -m benchmarks.xla_cpu_hang      # try a flag

Runs ``calibrate_cheetah``'s EPOpt-posterior computation (its cpu preset's 64 windows of 8 MJX
steps, the loss of ``--particles`` physics draws in one ``vmap``, or in a ``lax.map`` of
``--map`` at a time) ``--calls`` times, with fresh draws each call, one compiled program.
A watcher samples the process's CPU time; if it stays flat for ``--stall-s`` seconds the program
has hung (main thread in ``block_until_ready``, every XLA worker idle): it prints the Python
stacks and exits with status 3. Exit 0: every call finished. On the 2-core machine of
2026-12-03 most runs of 8 calls hung (docs/xla_cpu_hang.md has the counts per setting).
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import sys
import threading
import time

import jax

from experiments import calibrate_cheetah as cc
from metarl_jax.sim2real import calibrate as cal


def posterior_loss(particles: int, batch: int):
    """``(jitted loss of a [particles] physics batch, windows, prior)``: the cpu preset's data."""
    config = cc.PRESETS["cpu"]
    robot = cc.make_robot(config)
    world = cal.PhysicsWorld(robot.gym_id, cc.hidden_physics(config, robot), config.hidden_delay,
                             max_episode_steps=config.max_steps)
    scripted = cal.scripted_actions(0, config.record_episodes, config.record_steps,
                                    robot.mj_model.nu)
    obs, actions = world.record(scripted, 0)
    scale = cc.log_scale(robot)
    windows = cal.make_windows(obs, actions, config.horizon, config.stride, config.hidden_delay)
    loss = cal.prediction_loss(robot, cal.cheetah_state_from_obs(robot), scale,
                               cal.obs_scale(windows))
    prior = cc.dr_space(robot, robot.default_params(), cc.wide_ranges(config), (0, 0))
    one = lambda p, w: loss(scale.of_params(p), w)
    if batch:
        batched = lambda p, w: jax.lax.map(lambda q: one(q, w), p, batch_size=batch)
    else:
        batched = jax.vmap(one, in_axes=(0, None))
    return jax.jit(batched), windows, prior


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--particles", type=int, default=32)
    parser.add_argument("--map", type=int, default=0, help="lax.map batch size (0: one vmap)")
    parser.add_argument("--stall-s", type=float, default=40.0)
    args = parser.parse_args(argv)
    batched, windows, prior = posterior_loss(args.particles, args.map)
    finished = threading.Event()

    def watch():
        cpu, since = time.process_time(), time.time()
        while not finished.wait(2.0):
            if time.process_time() - cpu > 1.0:
                cpu, since = time.process_time(), time.time()
            elif time.time() - since > args.stall_s:
                print(f"HANG: no CPU time for {args.stall_s:.0f} s", flush=True)
                faulthandler.dump_traceback(all_threads=True)
                os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    key, start = jax.random.PRNGKey(0), time.time()
    for i in range(args.calls):
        key, draw = jax.random.split(key)
        params = jax.vmap(prior.sample)(jax.random.split(draw, args.particles))
        jax.block_until_ready(batched(params, windows))
        print(f"call {i} done at {time.time() - start:.1f} s", flush=True)
    finished.set()
    print(f"OK: {args.calls} calls; XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
