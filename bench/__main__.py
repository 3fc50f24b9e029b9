"""Run every benchmark side by side: `python -m bench [--quick] [NAME…]`.

Each `bench/bench_*.py` module exposes `main(quick: bool) -> str`, returning a markdown
section; the sections are printed and written to bench/out/results.md.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from pathlib import Path

import bench


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    parser.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    args = parser.parse_args()
    names = args.names or sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))
    sections = []
    for name in names:
        module = importlib.import_module(f"bench.{name if name.startswith('bench_') else 'bench_' + name}")
        section = module.main(quick=args.quick)
        print(section, flush=True)
        sections.append(section)
    out = Path(__file__).parent / "out"
    out.mkdir(exist_ok=True)
    (out / "results.md").write_text("\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()
