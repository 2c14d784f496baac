"""`nemo-r1 bench NAME [flags]`: run one of the side-by-side benchmarks in tools/bench_NAME.py."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in TOOLS.glob("bench_*.py"))


def main(args: argparse.Namespace) -> int:
    rest = list(getattr(args, "rest", []) or [])
    if not rest or rest[0] in ("-h", "--help"):
        print(f"usage: nemo-r1 bench {{{','.join(available())}}} [flags]  (each takes --help)")
        return 0 if rest else 2
    name, flags = rest[0], rest[1:]
    script = TOOLS / f"bench_{name}.py"
    if not script.exists():
        print(f"nemo-r1 bench: no benchmark {name!r}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    sys.argv = [str(script), *flags]
    runpy.run_path(str(script), run_name="__main__")
    return 0
