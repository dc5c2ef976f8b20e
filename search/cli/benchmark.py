"""Measure the harness's performance figures (the tables in BENCHMARKS.md).

    transfer-tune benchmark                     # the full run: about 25 minutes on 2 CPUs
    transfer-tune benchmark --quick             # smoke run: about 3 minutes
    transfer-tune benchmark --json bench.json
    transfer-tune benchmark --gpu --json gpu.json   # on a GPU machine: about 5 minutes
    transfer-tune benchmark --rungs             # ASHA's rungs on few-shot data: ~15 minutes
    transfer-tune benchmark --quality           # the default's best val_acc, 3 seeds: ~20 min
    transfer-tune benchmark --backbones         # --backbones vs each family alone: ~17 min

scripts/benchmark.py is the same command. Each figure is a ratio of two variants of the same
work run alternately in this one run.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from search.config.usage import OneLineErrorParser, UsageError

CLONE = Path(__file__).resolve().parents[2]  # the clone, for an editable install


def _import_benchmarks() -> None:
    """Make the clone's benchmarks/ importable: it is not installed, nor shipped to a cluster's
    nodes. UsageError when this installation has no clone beside it."""
    if not (CLONE / "benchmarks" / "suite.py").is_file():
        raise UsageError(
            "the benchmarks live in a clone of transfer-tune (benchmarks/ is not installed): "
            "run it from a clone installed with pip install -e ."
        )
    if str(CLONE) not in sys.path:
        sys.path.insert(0, str(CLONE))


def main(argv: list[str] | None = None, prog: str = "benchmark.py") -> int:
    """Run the benchmark; print the Markdown table (and write JSON); exit 2 on bad input."""
    parser = OneLineErrorParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run with small budgets")
    parser.add_argument("--gpu", action="store_true", help="the GPU run only (needs a GPU)")
    parser.add_argument(
        "--quality",
        action="store_true",
        help="how good a model the default search finds: 3 seeds, from scratch, grid ceiling",
    )
    parser.add_argument(
        "--rungs",
        action="store_true",
        help="what ASHA's first rung decides on a few-shot image folder, 3 seeds x 2 weights",
    )
    parser.add_argument(
        "--backbones",
        action="store_true",
        help="--backbones over 3 families vs each alone at the same budget, digits and a folder",
    )
    parser.add_argument(
        "--work",
        default="",
        help="--rungs: keep its searches here (a rerun reuses them); default: a scratch folder",
    )
    parser.add_argument("--json", default="", help="also write the figures to this JSON file")
    parser.add_argument("--cache-dir", default="", help="pretrained-backbone cache")
    try:
        args = parser.parse_args(argv)
        if args.json and not Path(args.json).resolve().parent.is_dir():
            raise UsageError(f"--json {args.json}: its folder does not exist")
        _import_benchmarks()
    except UsageError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    if args.quality:
        from benchmarks.quality import format_markdown as quality_markdown
        from benchmarks.quality import run_quality

        report = run_quality(cache_dir=args.cache_dir or None, log=log)
        markdown = quality_markdown(report)
    elif args.backbones:
        from benchmarks.backbones import format_markdown as backbones_markdown
        from benchmarks.backbones import run_backbones

        report = run_backbones(cache_dir=args.cache_dir or None, log=log)
        markdown = backbones_markdown(report)
    elif args.rungs:
        from benchmarks.rungs import format_markdown as rungs_markdown
        from benchmarks.rungs import measure
        from trainable.config import default_cache_dir

        cache = args.cache_dir or default_cache_dir()
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(args.work or scratch)
            report = [measure(work, cache, [0, 1, 2], weights, say=log) for weights in
                      ("source", "none")]  # fmt: skip
        markdown = rungs_markdown(report)
    elif args.gpu:
        from benchmarks.gpu import NoGPU, format_gpu_markdown, gpu_name, run_gpu_benchmark

        try:
            gpu_name()
        except NoGPU as error:
            print(f"{prog}: error: {error}", file=sys.stderr)
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
