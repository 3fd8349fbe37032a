"""Run a notebook top to bottom in a fresh Jupyter kernel and read back what it computed.

    python -m tests.notebook_runner notebooks/01_quickstart.ipynb [--size small|full]

Executed with nbclient in a real IPython kernel (the venv's Python), so a failing cell is the
kernel's own error (``nbclient.exceptions.CellExecutionError`` naming the cell) and magics or
inline plots behave as on Colab. Each notebook ends with a dict ``RESULTS``; after the last cell
the runner adds one more that prints ``RESULTS`` as JSON after a marker line, with the kernel's
CPU time, and parses it. The notebook file itself is never written.

The kernel gets ``METARL_NB_SIZE`` (the notebooks' size switch), the suite's persistent XLA
compilation cache, and ``--xla_backend_optimization_level=0``: small notebooks are all compile
and almost no compute, and the lower LLVM level cuts CPU compile time by about 40% (measured on
the PPO rollout program).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Tuple

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MARKER = "__METARL_NB_RESULTS__"
_READ_BACK = f"""
import json as _json, resource as _resource
_usage = _resource.getrusage(_resource.RUSAGE_SELF)
print({MARKER!r} + _json.dumps({{"results": RESULTS,
                                 "kernel_cpu_s": _usage.ru_utime + _usage.ru_stime}},
                                default=float))
"""


def kernel_env(size: str) -> Dict[str, str]:
    """The environment the kernel starts with (see the module docstring)."""
    env = dict(os.environ, METARL_NB_SIZE=size, MPLBACKEND="module://matplotlib_inline.backend_inline")
    env.setdefault("JAX_COMPILATION_CACHE_DIR",
                   os.environ.get("METARL_JAX_TEST_CACHE", str(ROOT / ".jax_cache")))
    env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "1.0")
    flags = env.get("XLA_FLAGS", "")
    if "xla_backend_optimization_level" not in flags:
        env["XLA_FLAGS"] = (flags + " --xla_backend_optimization_level=0").strip()
    return env


def execute(path: Path, size: str = "small", timeout: int = 600) -> Tuple[Any, Dict, Dict]:
    """Execute ``path`` in a new kernel. Returns ``(executed notebook, RESULTS, timing)`` with
    ``timing = {"wall_s", "kernel_cpu_s"}``. Raises ``CellExecutionError`` on a cell error and
    ``ValueError`` if the notebook defines no ``RESULTS``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(_READ_BACK))
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(Path(path).parent)}})
    start = time.time()
    client.execute(env=kernel_env(size))
    wall = time.time() - start
    for output in nb.cells[-1].outputs:
        text = output.get("text", "")
        if output.get("output_type") == "stream" and MARKER in text:
            payload = json.loads(text.split(MARKER, 1)[1])
            return nb, payload["results"], {"wall_s": wall,
                                            "kernel_cpu_s": payload["kernel_cpu_s"]}
    raise ValueError(f"{path.name}: the notebook printed no RESULTS")


def cell_seconds(nb) -> list:
    """``[(cell index, wall seconds, first line)]`` of the executed code cells (nbclient's
    timing metadata)."""
    from datetime import datetime

    out = []
    for i, cell in enumerate(nb.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "shell.execute_reply" in timing:
            start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            out.append((i, (end - start).total_seconds(), cell.source.splitlines()[0][:60]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path)
    parser.add_argument("--size", default="small", choices=("small", "full"))
    args = parser.parse_args()
    for path in args.paths:
        nb, results, timing = execute(path, args.size)
        print(f"{path.name}: wall {timing['wall_s']:.1f} s, kernel CPU "
              f"{timing['kernel_cpu_s']:.1f} s")
        for index, seconds, line in cell_seconds(nb):
            print(f"  cell {index:2d} {seconds:6.1f} s  {line}")
        print(json.dumps(results, indent=1, default=float)[:4000])


if __name__ == "__main__":
    main()
