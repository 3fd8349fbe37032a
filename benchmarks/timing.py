"""Interleaved timing: programs run in rounds (A, B, A, B, ...), so load changes hit every side.

    rounds = interleave({"ours": run_ours, "peer": run_peer}, num_rounds=5)
    rounds.summary(baseline="peer")
    # {"ours": {"median": s, "q25": .., "q75": .., "min": .., "max": .., "values": [..]},
    #  "peer": {...}, "ratios": {"ours": {"median": .., "min": .., "max": .., "values": [..]}}}

Each program is called once per round, in the order given. Its time for that round is what the
timer measured around the call, unless it returns a number: then that number is its seconds (for
peers that time themselves, e.g. brax's ``training/sps``). When a peer drives the loop itself
(brax's ``train`` with a ``progress_fn``), record rounds by hand with ``Rounds.add``.

A ratio is computed per round, ``seconds[baseline] / seconds[name]`` (> 1: ``name`` is faster
for equal work), and summarized by its median; the median of per-round ratios is robust to a
round that a burst of load slowed on one side only.
"""

from __future__ import annotations

import time
from typing import Callable, Dict, List, Mapping, Optional

import numpy as np


def spread(values) -> Dict[str, object]:
    """``median``, ``q25``, ``q75``, ``min``, ``max`` of ``values[n]`` (n >= 1) and the values."""
    v = np.asarray(values, np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("spread needs at least one value")
    q25, median, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(median), "q25": float(q25), "q75": float(q75),
            "min": float(v.min()), "max": float(v.max()), "values": [float(x) for x in v]}


class Rounds:
    """Seconds per round per program; complete rounds only count towards ratios."""

    def __init__(self, names):
        self.names = list(names)
        if len(set(self.names)) != len(self.names) or not self.names:
            raise ValueError(f"Rounds needs distinct program names, got {self.names}")
        self.seconds: Dict[str, List[float]] = {n: [] for n in self.names}

    def add(self, name: str, seconds: float) -> None:
        if name not in self.seconds:
            raise ValueError(f"unknown program {name!r}; known: {self.names}")
        if not seconds > 0:
            raise ValueError(f"{name}: a round must take > 0 s, got {seconds}")
        self.seconds[name].append(float(seconds))

    @property
    def complete(self) -> int:
        """Rounds in which every program ran."""
        return min(len(s) for s in self.seconds.values())

    def ratios(self, baseline: str) -> Dict[str, List[float]]:
        """Per complete round, ``seconds[baseline] / seconds[name]`` for every other program."""
        n = self.complete
        base = self.seconds[baseline][:n]
        return {name: [b / s for b, s in zip(base, self.seconds[name][:n])]
                for name in self.names if name != baseline}

    def summary(self, baseline: Optional[str] = None, work: Optional[float] = None) -> dict:
        """``{name: spread(seconds)}`` plus ``ratios`` against ``baseline`` (default: the last
        program) and, with ``work`` (units per round, e.g. env steps), ``per_unit_s`` and
        ``units_per_s`` spreads per program."""
        baseline = baseline or self.names[-1]
        if self.complete < 1:
            raise ValueError("no complete round recorded")
        out: dict = {"rounds": self.complete, "order": self.names, "baseline": baseline}
        for name in self.names:
            s = self.seconds[name][: self.complete]
            out[name] = spread(s)
            if work:
                out[name]["per_unit_s"] = spread([x / work for x in s])
                out[name]["units_per_s"] = spread([work / x for x in s])
        out["ratios"] = {k: spread(v) for k, v in self.ratios(baseline).items()}
        return out


def interleave(programs: Mapping[str, Callable[[], Optional[float]]], num_rounds: int,
               timer: Callable[[], float] = time.perf_counter) -> Rounds:
    """Call every program once per round, in order, for ``num_rounds`` rounds (module doc)."""
    if num_rounds < 1:
        raise ValueError(f"num_rounds must be >= 1, got {num_rounds}")
    rounds = Rounds(programs)
    for _ in range(num_rounds):
        for name, program in programs.items():
            start = timer()
            reported = program()
            elapsed = timer() - start
            rounds.add(name, elapsed if reported is None else float(reported))
    return rounds
