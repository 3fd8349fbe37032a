"""``python -m experiments`` lists the experiments; ``python -m experiments <name> [args]``
runs one.

An unknown name exits with status 2 and suggests the closest experiment.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import runpy
import sys
from pathlib import Path


def available() -> list:
    """Names of the experiment modules (every module in this package but this one)."""
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = available()
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m experiments <name> [--preset quick|cpu|accel] [...]\n")
        for name in names:
            try:
                doc = (importlib.import_module(f"experiments.{name}").__doc__ or "").strip()
                doc = doc.splitlines()[0] if doc else ""
            except Exception as e:  # list the others even if one cannot be imported here
                doc = f"(cannot be imported here: {type(e).__name__}: {e})"
            print(f"  {name:<24} {doc}")
        return 0
    name = argv[0]
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        print(f"experiments: error: unknown experiment '{name}'.{hint} "
              f"Available: {', '.join(names)}.", file=sys.stderr)
        return 2
    sys.argv = [f"experiments.{name}", *argv[1:]]
    runpy.run_module(f"experiments.{name}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
