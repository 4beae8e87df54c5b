"""Run benchmarks: ``python -m bench`` runs every one, ``python -m bench serving`` runs one.

A benchmark is a module of this package with a ``main() -> None`` that writes its results to
``bench/results/<module>.json``; adding one needs no change here.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

import bench


def available() -> list[str]:
    return sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")
    )


def main(argv: Sequence[str]) -> int:
    names = list(argv) or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; available: {available()}", file=sys.stderr)
        return 2
    for name in names:
        print(f"== bench {name}", file=sys.stderr)
        importlib.import_module(f"bench.{name}").main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
