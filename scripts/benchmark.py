"""Measure the harness's performance figures (the tables in BENCHMARKS.md).

    python scripts/benchmark.py                 # the full run: about 25 minutes on 2 CPUs
    python scripts/benchmark.py --quick         # smoke run: about 3 minutes
    python scripts/benchmark.py --json bench.json
    python scripts/benchmark.py --gpu --json gpu.json   # on a GPU machine: about 5 minutes

Each figure is a ratio of two variants of the same work run alternately in this one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Python puts scripts/ first on the import path; drop it, as scripts/search.py explains.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from search.cli.benchmark import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
