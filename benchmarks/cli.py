"""What every benchmark's own ``python -m benchmarks.<name>`` shares: a ``--preset`` / ``--out``
parser and writing the result JSON before printing its markdown table. (``benchmarks.run``
runs them all and regenerates ``RESULTS.md``; these are for running one by hand.)"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Callable, Mapping


def preset_parser(doc: str, presets: Mapping, default_out: str | pathlib.Path
                  ) -> argparse.ArgumentParser:
    """``--preset`` (one of ``presets``, default ``quick``) and ``--out`` (the JSON path)."""
    parser = argparse.ArgumentParser(description=(doc or "").strip().splitlines()[0])
    parser.add_argument("--preset", choices=sorted(presets), default="quick")
    parser.add_argument("--out", default=str(default_out))
    return parser


def save_and_print(result: dict, out: str | pathlib.Path,
                   markdown: Callable[[dict], str]) -> dict:
    """Write ``result`` to ``out`` (JSON, parents created), print ``markdown(result)``."""
    out = pathlib.Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(markdown(result))
    return result
