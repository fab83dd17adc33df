"""`python -m benchmarks` (or `make bench`): every benchmark at its default size, one after another.

Each prints its own table with ratios against the reference it is measured beside. Run one alone
with `python -m benchmarks.NAME --help` for its options (larger sizes, more images).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

# Every module here with a main() is a benchmark; synthetic_art and flat_art_data only make images for them.
BENCHMARKS = tuple(sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)])
                          if m.name not in ("synthetic_art", "flat_art_data", "__main__")))


def main(argv: list[str]) -> int:
    chosen = argv or list(BENCHMARKS)
    if not chosen:
        print("no benchmarks are installed in benchmarks/", file=sys.stderr)
        return 2
    for name in chosen:
        if name not in BENCHMARKS:
            print(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
    for name in chosen:
        print(f"\n=== benchmarks.{name} ===", flush=True)
        module = importlib.import_module(f"benchmarks.{name}")
        sys.argv = [f"benchmarks.{name}"]  # each runs at its defaults
        status = module.main([]) if inspect.signature(module.main).parameters else module.main()
        if status:
            return int(status)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
