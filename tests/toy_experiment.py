"""A tiny two-phase experiment for the signal and run-folder tests (no compile worth waiting for).

    python -m tests.toy_experiment [--out DIR | --resume DIR]

Phases ``a`` then ``b``, 6 updates each in chunks of 2; the state counts updates and the metric
is the update index, so a resumed run's files can be compared with an uninterrupted one's.
``TOY_HOLD=<phase>:<update>:<until>`` makes the chunk that ends at ``<update>`` of ``<phase>``
write ``<run>/held`` and then block like a long compiled chunk: until a stop is requested
(``until=stop``), until the test deletes ``held`` (``until=release``) or for ever (``until=kill``).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax.numpy as jnp
import numpy as np

from metarl_jax.io.cli import cli
from metarl_jax.io.experiment import finish, start_run
from metarl_jax.io.stop_signals import current
from metarl_jax.io.training_loop import phase_metrics, train_phase

NAME = "toy_experiment"


@dataclasses.dataclass(frozen=True)
class Config:
    num_updates: int = 6
    updates_per_chunk: int = 2


PRESETS = {"quick": Config()}


def _chunk(run_dir, phase):
    hold = os.environ.get("TOY_HOLD", "")

    def chunk(state, n):
        first = int(state["n"]) + 1
        if hold:
            hold_phase, hold_update, until = hold.split(":")
            if hold_phase == phase and int(hold_update) == first + n - 1:
                held = run_dir / "held"
                held.touch()
                while (until == "kill" or (until == "stop" and not current().requested)
                       or (until == "release" and held.exists())):
                    time.sleep(0.01)
        idx = np.arange(first, first + n, dtype=np.float32)
        return {"n": state["n"] + n}, {"value": idx}

    return chunk


def main(args):
    run_dir, config, _ = start_run(NAME, args)
    for phase in ("a", "b"):
        train_phase(run_dir, phase, lambda: {"n": jnp.int32(0)}, _chunk(run_dir, phase),
                    config.num_updates, config.updates_per_chunk, steps_per_update=1,
                    show=("value",))
    return finish(run_dir, {"results": {p: phase_metrics(run_dir, p)[-1]["value"]
                                        for p in ("a", "b")}})


if __name__ == "__main__":
    sys.exit(cli(NAME, main, Config, PRESETS, __doc__))
