"""Measure the harness's performance figures (the table in BENCHMARKS.md).

    python scripts/benchmark.py             # the full run: about 4 minutes on 2 CPUs
    python scripts/benchmark.py --quick     # smoke run: about 40 seconds
    python scripts/benchmark.py --json bench.json

Each figure is a ratio of two variants of the same work run alternately in this one run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# scripts/search.py would shadow the `search` package: drop this folder from the import path.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from search.benchmark import format_markdown, run_benchmark  # noqa: E402
from search.usage import OneLineErrorParser, UsageError  # noqa: E402
from trainable.config import default_cache_dir  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the Markdown table (and write JSON); exit 2 on bad input."""
    parser = OneLineErrorParser(prog="benchmark.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with small budgets")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--cache-dir", default="", help="pretrained-backbone cache")
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"benchmark.py: error: {error}", file=sys.stderr)
        return 2
    report = run_benchmark(
        args.quick,
        args.cache_dir or default_cache_dir(),
        log=lambda line: print(line, file=sys.stderr),
    )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(format_markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
