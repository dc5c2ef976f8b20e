"""Measure the harness's performance figures (the tables in BENCHMARKS.md).

    python scripts/benchmark.py                 # the full run: about 25 minutes on 2 CPUs
    python scripts/benchmark.py --quick         # smoke run: about 3 minutes
    python scripts/benchmark.py --json bench.json
    python scripts/benchmark.py --gpu --json gpu.json   # on a GPU machine: about 5 minutes

Each figure is a ratio of two variants of the same work run alternately in this one run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

# scripts/search.py would shadow the `search` package: drop this folder from the import path;
# the benchmarks are not installed with the packages: import them from this clone.
HERE = Path(__file__).resolve().parent
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from search.usage import OneLineErrorParser, UsageError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the Markdown table (and write JSON); exit 2 on bad input."""
    parser = OneLineErrorParser(prog="benchmark.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with small budgets")
    parser.add_argument("--gpu", action="store_true", help="the GPU run only (needs a GPU)")
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--cache-dir", default="", help="pretrained-backbone cache")
    try:
        args = parser.parse_args(argv)
        if args.json and not Path(args.json).resolve().parent.is_dir():
            raise UsageError(f"--json {args.json}: its folder does not exist")
    except UsageError as error:
        print(f"benchmark.py: error: {error}", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.gpu:
        from benchmarks.gpu import NoGPU, format_gpu_markdown, gpu_name, run_gpu_benchmark

        try:
            gpu_name()
        except NoGPU as error:
            print(f"benchmark.py: error: {error}", file=sys.stderr)
            return 2
        with tempfile.TemporaryDirectory() as scratch:
            report = run_gpu_benchmark(Path(scratch), log=log)
        markdown = format_gpu_markdown(report)
    else:
        from benchmarks.suite import format_markdown, run_benchmark
        from trainable.config import default_cache_dir

        report = run_benchmark(args.quick, args.cache_dir or default_cache_dir(), log=log)
        markdown = format_markdown(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
